// The tool against the tutorial's own procedure, on the lab's three masters (issue 7).
// Run as root with `npm run bench`: brings the lab up, measures, writes bench/RESULTS.md, takes the
// lab down. Every number is a wall-clock time on this machine; medians of at least three runs.
import {execFileSync, spawn} from 'node:child_process';
import {cpus, totalmem, release} from 'node:os';
import {mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync} from 'node:fs';
import {tmpdir} from 'node:os';
import path from 'node:path';
import {fileURLToPath} from 'node:url';
import YAML from 'yaml';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const labDir = process.env.LAB_DIR ?? '/run/k8smi-lab';
const labScript = path.join(root, 'test/lab/lab.sh');
const bin = path.join(root, 'bin/k8s-master-install.js');
const runs = Number(process.env.BENCH_RUNS ?? 3);
const remoteRuns = Number(process.env.BENCH_REMOTE_RUNS ?? 2);
const version = 'v1.14.2';
const units = ['kube-scheduler', 'kube-controller-manager', 'kube-nginx', 'kube-apiserver'];

/** Folders the bench makes (state folders hold keys): all removed when it ends. */
const made = [];
function tempDir(prefix) {
	const dir = mkdtempSync(path.join(tmpdir(), prefix));
	made.push(dir);
	return dir;
}

const lab = (...args) => execFileSync('bash', [labScript, ...args], {stdio: ['ignore', 'pipe', 'inherit'], env: {...process.env, LAB_DIR: labDir}, encoding: 'utf8'});
const seconds = ms => (ms / 1000).toFixed(2);
const median = values => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];

/** Runs a command, returns its wall time (ms), peak RSS of the process itself (KiB, via GNU time) and output. */
async function timed(command, args, {onLine, env, cwd} = {}) {
	const rssFile = path.join(tempDir('k8smi-bench-'), 'rss');
	const started = performance.now();
	return new Promise(resolve => {
		const child = spawn('/usr/bin/time', ['-f', '%M', '-o', rssFile, command, ...args], {stdio: ['ignore', 'pipe', 'pipe'], env: env ?? process.env, cwd});
		let stdout = '';
		let stderr = '';
		let pending = '';
		child.stdout.on('data', chunk => {
			stdout += chunk;
			pending += chunk;
			const lines = pending.split('\n');
			pending = lines.pop();
			for (const line of lines) {
				onLine?.(line, () => child.kill('SIGKILL'), child);
			}
		});
		child.stderr.on('data', chunk => {
			stderr += chunk;
		});
		child.on('close', (code, signal) => {
			let rssKiB = 0;
			try {
				rssKiB = Number(readFileSync(rssFile, 'utf8').trim().split('\n').at(-1)) || 0;
			} catch {}

			resolve({ms: performance.now() - started, code, signal, stdout, stderr, rssKiB});
		});
	});
}

function must(result, what) {
	if (result.code !== 0) {
		throw new Error(`${what} failed (exit ${result.code} ${result.signal ?? ''}):\n${result.stdout.slice(-3000)}\n${result.stderr.slice(-3000)}`);
	}

	return result;
}

function labInfo() {
	return JSON.parse(readFileSync(path.join(labDir, 'lab.json'), 'utf8'));
}

/** Removes everything either installer put on the masters, and what the apiservers wrote to etcd. */
function resetLab(info) {
	for (const host of info.hosts) {
		lab('ssh', host.name, `systemctl disable --now ${units.join(' ')} 2>/dev/null; ${units.map(unit => `rm -f /etc/systemd/system/${unit}.service;`).join(' ')} systemctl daemon-reload; systemctl reset-failed 2>/dev/null; rm -rf /etc/kubernetes /data/k8s/k8s /opt/k8s/kube-nginx /opt/k8s/bin/*; true`);
	}

	execFileSync('etcdctl', [`--endpoints=${info.etcd.endpoints.join(',')}`, `--cacert=${info.etcd.caFile}`, `--cert=${info.etcd.certFile}`, `--key=${info.etcd.keyFile}`, 'del', '/registry/', '--prefix'], {env: {...process.env, ETCDCTL_API: '3'}, stdio: 'ignore'});
}

/** A cluster config for the lab, as an operator would write it; `masters` may name more hosts for plan. */
function writeConfig(info, extra = {}) {
	const dir = tempDir('k8smi-bench-');
	const config = {
		version,
		binaries: {tarball: info.tarballs[version]},
		masters: info.hosts,
		ssh: {user: info.ssh.user, port: info.ssh.port, identityFile: info.ssh.identityFile, knownHostsFile: info.ssh.knownHostsFile},
		etcd: {endpoints: info.etcd.endpoints},
		network: {serviceCidr: '10.254.0.0/16', nodePortRange: '30000-32767'},
		paths: {k8sDir: '/data/k8s/k8s'},
		ca: info.ca,
		// The tutorial signs service-account tokens with the CA key: the same work on both sides.
		serviceAccount: {signingKey: 'ca'},
		...extra,
	};
	writeFileSync(path.join(dir, 'cluster.yaml'), YAML.stringify(config));
	return {dir, configFile: path.join(dir, 'cluster.yaml'), stateDir: path.join(dir, 'state')};
}

const apply = (config, options) => timed(process.execPath, [bin, 'apply', '--config', config.configFile, '--state-dir', config.stateDir, '--yes'], options);

async function benchTutorial(info, tarball = info.tarballs[version], count = runs) {
	const times = [];
	for (let run = 0; run < count; run++) {
		resetLab(info);
		const work = tempDir('k8smi-tutorial-');
		try {
			const result = must(await timed('bash', [path.join(root, 'bench/tutorial/install-apiserver.sh'), path.join(labDir, 'lab.json'), tarball, work]), 'the tutorial procedure');
			times.push(result.ms);
		} finally {
			rmSync(work, {recursive: true, force: true});
		}
	}

	return times;
}

async function benchApply(info, tarball = info.tarballs[version], count = runs, transfer = 'auto') {
	const full = [];
	const again = [];
	let rssKiB = 0;
	for (let run = 0; run < count; run++) {
		resetLab(info);
		const config = writeConfig(info, {binaries: {tarball, transfer}});
		const first = must(await apply(config), 'apply');
		full.push(first.ms);
		const second = must(await apply(config), 'the unchanged re-apply');
		if (/[1-9]\d* written/.test(second.stdout)) {
			throw new Error(`the unchanged re-apply wrote files:\n${second.stdout}`);
		}

		again.push(second.ms);
		rssKiB = Math.max(rssKiB, first.rssKiB, second.rssKiB);
	}

	return {full, again, rssKiB};
}

async function benchResume(info) {
	const times = [];
	for (let run = 0; run < runs; run++) {
		resetLab(info);
		const config = writeConfig(info);
		const killed = await apply(config, {onLine(line, kill) {
			if (/^== Start the control plane/.test(line)) {
				kill();
			}
		}});
		if (killed.code === 0) {
			throw new Error('apply was not killed during start');
		}

		times.push(must(await apply(config), 'the resume').ms);
	}

	return times;
}

/**
 * A change on a running cluster at real size: one apiserver flag added, then a patch upgrade
 * (v1.28.6 -> v1.28.7); the seconds each master spent in start, its restart included (issue 14: ≤ 15 s).
 */
async function benchRollingChange(info) {
	const perMaster = [];
	for (let run = 0; run < runs; run++) {
		resetLab(info);
		const installed = writeConfig(info, {version: 'v1.28.6', binaries: {tarball: info.tarballs['v1.28.6-real-size']}, serviceAccount: undefined});
		must(await apply(installed), 'apply v1.28.6');
		const flagged = {...installed, ...writeConfig(info, {version: 'v1.28.6', binaries: {tarball: info.tarballs['v1.28.6-real-size']}, serviceAccount: undefined, extraFlags: {'kube-apiserver': ['--event-ttl=170h']}}), stateDir: installed.stateDir};
		const upgraded = {...installed, ...writeConfig(info, {version: 'v1.28.7', binaries: {tarball: info.tarballs['v1.28.7-real-size']}, serviceAccount: undefined, extraFlags: {'kube-apiserver': ['--event-ttl=170h']}}), stateDir: installed.stateDir};
		for (const config of [flagged, upgraded]) {
			const run = must(await apply(config), 'a rolling change');
			// A master's start line sits under the step's heading, or is tagged [start] while the binaries go beside it.
			let section = '';
			for (const line of run.stdout.split('\n')) {
				section = /^== .* \[(\S+)\]$/.exec(line)?.[1] ?? section;
				const done = /✔ \S+(?: \[(\S+)\])? done in ([\d.]+) (ms|s)/.exec(line);
				if (done && (done[1] ?? section) === 'start') {
					perMaster.push(Number(done[2]) * (done[3] === 'ms' ? 1 : 1000));
				}
			}
		}
	}

	return perMaster;
}

/** The same certificate set both ways: CA, kubernetes, proxy-client, admin, controller-manager, scheduler. */
async function benchCertificates(info) {
	const tool = [];
	const cfssl = [];
	let rssKiB = 0;
	for (let run = 0; run < runs; run++) {
		const config = writeConfig(info, {ca: undefined});
		const render = must(await timed(process.execPath, [bin, 'render', '--config', config.configFile, '--state-dir', config.stateDir, '--out', path.join(config.dir, 'out')]), 'render');
		tool.push(render.ms);
		rssKiB = Math.max(rssKiB, render.rssKiB);
		const work = tempDir('k8smi-cfssl-');
		cfssl.push(must(await timed('bash', [path.join(root, 'bench/cfssl-set.sh'), work, info.hosts.map(host => host.ip).join(',')]), 'cfssl').ms);
	}

	return {tool, cfssl, rssKiB};
}

/** Cold start to the first frame the terminal UI draws, and to the plan on screen, in a real pty. */
async function benchFirstFrame(info) {
	const first = [];
	const plan = [];
	for (let run = 0; run < Math.max(runs, 5); run++) {
		const config = writeConfig(info);
		const started = performance.now();
		const times = await new Promise(resolve => {
			const child = spawn('script', ['-qfec', `${process.execPath} ${bin} --config ${config.configFile} --state-dir ${config.stateDir}`, '/dev/null'], {env: {...process.env, TERM: 'xterm-256color'}});
			let text = '';
			let frame;
			child.stdout.on('data', chunk => {
				text += chunk.toString();
				const visible = text.replaceAll(/\u001B\[[\d;?]*[A-Za-z]/g, '').replaceAll(/\s/g, '');
				frame ??= visible.length > 0 ? performance.now() - started : undefined;
				if (visible.includes('Starttheinstall')) {
					child.kill('SIGKILL');
					resolve({frame, plan: performance.now() - started});
				}
			});
			setTimeout(() => {
				child.kill('SIGKILL');
				resolve({frame, plan: Number.NaN});
			}, 30_000);
		});
		first.push(times.frame);
		plan.push(times.plan);
	}

	return {first, plan};
}

async function benchPlan(info) {
	const result = {};
	let rssKiB = 0;
	for (const count of [3, 7]) {
		// Seven masters for plan only: 172.24.8.74-77 are in the lab's subnet and are never contacted.
		const masters = Array.from({length: count}, (_, index) => info.hosts[index] ?? {name: `k8smaster0${index + 1}`, ip: `172.24.8.${71 + index}`});
		const times = [];
		for (let run = 0; run < runs; run++) {
			const config = writeConfig(info, {masters});
			const plan = must(await timed(process.execPath, [bin, 'plan', '--config', config.configFile, '--state-dir', config.stateDir]), 'plan');
			times.push(plan.ms);
			rssKiB = Math.max(rssKiB, plan.rssKiB);
		}

		result[count] = times;
	}

	return {times: result, rssKiB};
}

/** Cold offline `npx ./k8s-master-install-<version>.tgz --help`: the packed tarball, an empty npm cache each run, no network. */
async function benchNpx() {
	const dir = tempDir('k8smi-bench-npx-');
	try {
		// dist/ was just built (npm run bench).
		execFileSync('npm', ['pack', '--ignore-scripts', '--silent', '--pack-destination', dir], {cwd: root, stdio: ['ignore', 'ignore', 'inherit']});
		const tarball = readdirSync(dir).find(name => name.endsWith('.tgz'));
		// npm run's variables (the checkout as local prefix) would not be there on an operator's machine.
		const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !/^npm_/i.test(name)));
		const times = [];
		let installed = [];
		for (let run = 0; run < Math.max(runs, 5); run++) {
			const cache = mkdtempSync(path.join(dir, 'cache-'));
			times.push(must(await timed('npx', ['--yes', '--offline', '--cache', cache, `./${tarball}`, '--help'], {env, cwd: dir}), 'npx --help').ms);
			installed = readdirSync(path.join(cache, '_npx')).flatMap(folder => readdirSync(path.join(cache, '_npx', folder, 'node_modules')).filter(name => !name.startsWith('.')));
		}

		return {tarball, times, installed, bytes: statSync(path.join(dir, tarball)).size};
	} finally {
		rmSync(dir, {recursive: true, force: true});
	}
}

function machine() {
	const cpu = cpus();
	return `${cpu.length} × ${cpu[0]?.model ?? 'cpu'}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Linux ${release()}, Node ${process.version}`;
}

async function main() {
	if (process.getuid?.() !== 0) {
		console.error('bench: needs root (the lab: network namespaces, systemd-nspawn)');
		process.exit(2);
	}

	// Before the lab is up: the machine is quiet.
	const npx = await benchNpx();
	lab('deps');
	execFileSync('bash', [path.join(root, 'bench/tutorial/deps.sh')], {stdio: 'inherit'});
	lab('up');
	try {
		const info = labInfo();
		const tutorial = await benchTutorial(info);
		const {full, again, rssKiB: applyRss} = await benchApply(info);
		const resume = await benchResume(info);
		// At real size (559 MB of binaries), on the lab's own links, then as if the workstation were
		// remote (100 Mbit/s from here to the masters): fewer runs there, each takes minutes.
		const realSize = info.tarballs[`${version}-real-size`];
		const tutorialReal = await benchTutorial(info, realSize);
		const applyReal = await benchApply(info, realSize);
		lab('link', '100mbit');
		let tutorialRemote;
		let applyRemote;
		try {
			tutorialRemote = await benchTutorial(info, realSize, remoteRuns);
			// A remote workstation is on none of the masters' networks, so auto sends compressed; the lab's
			// masters stay on this machine's bridge (only shaped), so that is said here.
			applyRemote = await benchApply(info, realSize, remoteRuns, 'compressed');
		} finally {
			lab('link', 'off');
		}

		const rolling = await benchRollingChange(info);
		resetLab(info);
		const certificates = await benchCertificates(info);
		const frames = await benchFirstFrame(info);
		const plans = await benchPlan(info);
		const peakRssMiB = Math.max(applyRss, certificates.rssKiB, plans.rssKiB) / 1024;

		const ratio = {
			'apply/tutorial': median(full) / median(tutorial),
			'reapply/apply': median(again) / median(full),
			'resume/apply': median(resume) / median(full),
			'certificates/cfssl': median(certificates.tool) / median(certificates.cfssl),
			'apply/tutorial real-size': median(applyReal.full) / median(tutorialReal),
			'apply/tutorial remote-link': median(applyRemote.full) / median(tutorialRemote),
			'reapply/apply real-size': median(applyReal.again) / median(applyReal.full),
		};
		const row = (what, values, target = '') => `| ${what} | ${values.map(value => seconds(value)).join(', ')} | ${seconds(median(values))} | ${target} |`;
		const lines = [
			'# Benchmarks',
			'',
			`${new Date().toISOString().slice(0, 10)} on ${machine()}. \`npm run bench\` (bench/bench.mjs), the lab's three masters, ${version} (the tutorial's release; its stand-in kube-apiserver accepts the tutorial's flags).`,
			'',
			'The tutorial procedure (bench/tutorial/install-apiserver.sh, its adaptations listed in its header) installs kube-apiserver only, never waits for it to be ready and stops on nothing; it ends with `systemctl is-active` on every master after a 2 s wait (in its time), so that a run that did not install counts as a failure. `apply` installs all four components (kube-apiserver, kube-nginx, kube-controller-manager, kube-scheduler), waits until each answers on every master, then runs the etcd check, the RBAC binding and verify.',
			'',
			'| measurement | runs (s) | median (s) | target |',
			'|---|---|---|---|',
			row('tutorial procedure, full apiserver install', tutorial),
			row('`apply`, full install from an empty lab', full, '≤ 0.4 × tutorial'),
			row('`apply` again, nothing changed', again, '≤ 0.1 × full install'),
			row('`apply` resumed after a SIGKILL during start', resume),
			row('real size: tutorial procedure', tutorialReal),
			row('real size: `apply`, full install', applyReal.full, '≤ 0.5 × tutorial'),
			row('real size: `apply` again, nothing changed', applyReal.again, '≤ 0.1 × full install'),
			row('remote link (100 Mbit/s): tutorial procedure', tutorialRemote),
			row('remote link (100 Mbit/s): `apply`, full install', applyRemote.full, '≤ 0.35 × tutorial'),
			row('real size: a rolling change (one flag; a patch upgrade), start per master', rolling, '≤ 15 s'),
			row('`render`: CA + 5 certificates with keys', certificates.tool, '≤ 1.0 × cfssl'),
			row('`cfssl gencert` for the same set (Debian golang-cfssl)', certificates.cfssl),
			row('terminal UI: cold start to the first frame', frames.first, '≤ 0.4 s'),
			row('terminal UI: cold start to the plan on screen', frames.plan),
			row('`plan`, 3 masters (cold: keys made in memory)', plans.times[3]),
			row('`plan`, 7 masters', plans.times[7]),
			row(`cold offline \`npx ./${npx.tarball} --help\` (empty npm cache)`, npx.times, '≤ 2 s'),
			'',
			`The packed tarball: ${(npx.bytes / 1024).toFixed(0)} KiB; npx installed ${npx.installed.length} package(s): ${npx.installed.join(', ')}.`,
			'',
			`Peak RSS of the tool (any run above): ${peakRssMiB.toFixed(0)} MiB (target ≤ 150 MiB).`,
			'',
			...Object.entries(ratio).map(([name, value]) => `ratio ${name}: ${value.toFixed(2)}`),
			`seconds rolling change per master: ${seconds(Math.max(...rolling))}`,
		];
		writeFileSync(path.join(root, 'bench/RESULTS.md'), `${lines.join('\n')}\n`);
		console.log(lines.join('\n'));
	} finally {
		lab('down');
		for (const dir of made) {
			rmSync(dir, {recursive: true, force: true});
		}
	}
}

await main();
