import path from 'node:path';
import type {ResolvedConfig} from '../config/load.js';
import type {Master} from '../config/schema.js';
import {ChecksFailed} from '../errors.js';
import {shellQuote} from '../remote/quote.js';
import {diagnoseSsh, failedHop, sshLogin, type Remote, type SshHop} from '../remote/ssh.js';
import type {CommandResult, Runner} from '../runner.js';
import type {StepContext, StepDefinition} from './types.js';

export type CheckLevel = 'pass' | 'warn' | 'fail';

/** One preflight finding on one master; every warn and fail carries its fix. */
export type CheckResult = {check: string; level: CheckLevel; detail: string; fix?: string};

/** The ports the control plane listens on: apiserver, kube-nginx, controller-manager, scheduler. */
export const controlPlanePorts: Record<number, string> = {6443: 'kube-apiserver', 8443: 'kube-nginx', 10257: 'kube-controller-manager', 10259: 'kube-scheduler'};

/** Processes that may hold those ports: an earlier install of this cluster (ss shows at most 15 characters). */
function ownProcesses(config: ResolvedConfig): Set<string> {
	return new Set(['kube-apiserver', 'nginx', 'kube-nginx', 'kube-controller', 'kube-controller-manager', 'kube-scheduler', path.basename(config.nginx.binary).slice(0, 15)]);
}

/** Clock offsets: beyond this a warning; beyond the certificates' backdating (5 min) nothing is valid. */
const skewWarnMs = 2000;
const skewFailMs = 60_000;

function etcdTargets(config: ResolvedConfig): Array<{host: string; port: string}> {
	return config.etcd.endpoints.map(endpoint => {
		const match = /^https:\/\/([^/:]+):(\d+)$/.exec(endpoint)!;
		return {host: match[1]!, port: match[2]!};
	});
}

/** One round trip that reads everything the checks need; every line is KEY=VALUE. */
export function factsScript(config: ResolvedConfig): string {
	const etcd = etcdTargets(config).map(({host, port}) => {
		const target = `${host}:${port}`;
		// bash's /dev/tcp makes the TCP connection; a host without bash says so instead of guessing.
		return `if command -v bash >/dev/null && command -v timeout >/dev/null; then if timeout 3 bash -c ${shellQuote(`exec 3<>/dev/tcp/${host}/${port}`)} 2>/dev/null; then echo ${shellQuote(`etcd=${target} open`)}; else echo ${shellQuote(`etcd=${target} closed`)}; fi; else echo ${shellQuote(`etcd=${target} untested`)}; fi`;
	});
	return [
		'echo "uid=$(id -u)"',
		'echo "arch=$(uname -m)"',
		'if [ -r /etc/os-release ]; then . /etc/os-release; fi; echo "os=${PRETTY_NAME:-unknown}"',
		'echo "systemd=$(systemctl --version 2>/dev/null | head -n 1)"',
		// machine-id alone is shared by cloned VMs, boot_id alone by containers on one kernel: both together name one machine.
		'echo "machine=$(cat /etc/machine-id 2>/dev/null)/$(cat /proc/sys/kernel/random/boot_id 2>/dev/null)"',
		'echo "time=$(date +%s%N)"',
		'ss -Hltnp 2>/dev/null | while read -r _ _ _ local _ users; do echo "listen=$local $users"; done',
		...etcd,
		...nginxFacts(config),
		'if command -v getenforce >/dev/null; then echo "selinux=$(getenforce)"; fi',
	].join('\n');
}

/** kube-nginx runs the master's own nginx: is it there, and can it proxy TCP (the stream module)? */
function nginxFacts(config: ResolvedConfig): string[] {
	const binary = shellQuote(config.nginx.binary);
	const stream = config.nginx.streamModule === 'builtin'
		? `if ${binary} -V 2>&1 | grep -q -- --with-stream; then echo nginxstream=builtin; else echo nginxstream=missing; fi`
		: `if [ -f ${shellQuote(config.nginx.streamModule)} ]; then echo nginxstream=module; else echo nginxstream=missing; fi`;
	return [`if [ -x ${binary} ]; then echo "nginx=$(${binary} -v 2>&1 | head -n 1)"; ${stream}; else echo nginx=missing; fi`];
}

export type HostFacts = {selinux?: string; uid?: string; arch?: string; os?: string; systemd?: string; machine?: string; timeNs?: bigint; nginx?: string; nginxstream?: string; listening: Array<{port: number; process: string}>; etcd: Array<{target: string; state: string}>};

export function parseFacts(output: string): HostFacts {
	const facts: HostFacts = {listening: [], etcd: []};
	for (const line of output.split('\n')) {
		const [key, ...rest] = line.split('=');
		const value = rest.join('=');
		switch (key) {
			case 'uid': case 'arch': case 'os': case 'systemd': case 'machine': case 'nginx': case 'nginxstream': case 'selinux': {
				facts[key] = value;
				break;
			}

			case 'time': {
				facts.timeNs = /^\d+$/.test(value) ? BigInt(value) : undefined;
				break;
			}

			case 'listen': {
				const port = Number(/:(\d+) /.exec(`${value} `)?.[1]);
				const process = /\(\("([^"]+)"/.exec(value)?.[1] ?? 'unknown process';
				facts.listening.push({port, process});
				break;
			}

			case 'etcd': {
				const [target = '', state = ''] = value.split(' ');
				facts.etcd.push({target, state});
				break;
			}

			default: {
				break;
			}
		}
	}

	return facts;
}

function nginxCheck(config: ResolvedConfig, facts: HostFacts): CheckResult {
	const install = 'install nginx with the stream module (Debian/Ubuntu: apt install nginx libnginx-mod-stream; RHEL: dnf install nginx nginx-mod-stream, then set nginx.streamModule: /usr/lib64/nginx/modules/ngx_stream_module.so)';
	if (facts.nginx === undefined || facts.nginx === 'missing') {
		return {check: 'nginx', level: 'fail', detail: `${config.nginx.binary} not found (kube-nginx runs it)`, fix: `${install}, or set nginx.binary`};
	}

	if (facts.nginxstream !== 'module' && facts.nginxstream !== 'builtin') {
		return {check: 'nginx', level: 'fail', detail: config.nginx.streamModule === 'builtin' ? `${config.nginx.binary} is not built --with-stream` : `${config.nginx.streamModule} not found`, fix: install};
	}

	return {check: 'nginx', level: 'pass', detail: `${facts.nginx.replace(/^nginx version: /, '')}, stream ${facts.nginxstream === 'builtin' ? 'built in' : 'module'}`};
}

/** Judges one master's facts; the clock offset is remote time minus the workstation's at the midpoint. */
export function judgeFacts(config: ResolvedConfig, facts: HostFacts, clockOffsetMs: number | undefined): CheckResult[] {
	const results: CheckResult[] = [];
	const user = config.ssh.user ?? 'the user of your ssh config';
	const as = config.ssh.sudo ? `${user} with sudo` : user;
	results.push(facts.uid === '0'
		? {check: 'root', level: 'pass', detail: `runs as root (${as})`}
		: {check: 'root', level: 'fail', detail: `runs as uid ${facts.uid ?? '?'} (${as})`, fix: 'connect as root, or set ssh.sudo: true for a user with passwordless sudo'});
	results.push(facts.arch === 'x86_64'
		? {check: 'arch', level: 'pass', detail: `${facts.arch}, ${facts.os ?? 'unknown OS'}`}
		: {check: 'arch', level: 'fail', detail: `${facts.arch ?? 'unknown'} (${facts.os ?? 'unknown OS'})`, fix: 'the server tarball holds linux-amd64 binaries: use x86_64 masters, or the tarball of their architecture'});
	results.push(nginxCheck(config, facts));
	if (facts.selinux === 'Enforcing') {
		// Not tested on such a host: the distribution's nginx runs confined as httpd_t under systemd.
		results.push({check: 'selinux', level: 'warn', detail: 'Enforcing: the distribution\'s nginx may not connect to 6443 or write its logs', fix: `setsebool -P httpd_can_network_connect 1; semanage fcontext -a -t httpd_log_t '${config.paths.nginxDir}/logs(/.*)?' && restorecon -R ${config.paths.nginxDir}`});
	}

	results.push(facts.systemd?.startsWith('systemd ')
		? {check: 'systemd', level: 'pass', detail: facts.systemd}
		: {check: 'systemd', level: 'fail', detail: 'systemctl not found', fix: 'the apiserver runs as a systemd unit: use a master that boots with systemd'});
	for (const [port, component] of Object.entries(controlPlanePorts)) {
		const holders = facts.listening.filter(entry => entry.port === Number(port));
		const foreign = holders.filter(entry => !ownProcesses(config).has(entry.process));
		results.push(foreign.length === 0
			? {check: `port ${port}`, level: 'pass', detail: holders.length > 0 ? `held by ${holders[0]!.process} (this cluster)` : 'free'}
			: {check: `port ${port}`, level: 'fail', detail: `in use by ${foreign.map(entry => entry.process).join(', ')}`, fix: `stop what listens on ${port} (ss -ltnp 'sport = :${port}'); ${component} needs it`});
	}

	if (clockOffsetMs === undefined) {
		results.push({check: 'clock', level: 'warn', detail: 'could not read the time', fix: 'check that date works on the master'});
	} else {
		const offset = `${clockOffsetMs >= 0 ? '+' : ''}${(clockOffsetMs / 1000).toFixed(1)} s`;
		const level: CheckLevel = Math.abs(clockOffsetMs) > skewFailMs ? 'fail' : Math.abs(clockOffsetMs) > skewWarnMs ? 'warn' : 'pass';
		results.push({check: 'clock', level, detail: `${offset} from this workstation`, fix: level === 'pass' ? undefined : 'synchronise the clocks (chrony or systemd-timesyncd); certificates and etcd leases need agreeing clocks'});
	}

	// etcd keeps serving with a majority of its members: one member down is worth a warning, not a stop.
	const closed = facts.etcd.filter(entry => entry.state === 'closed').length;
	const quorumReachable = facts.etcd.length - closed > facts.etcd.length / 2;
	for (const {target, state} of facts.etcd) {
		results.push(state === 'open'
			? {check: `etcd ${target}`, level: 'pass', detail: 'reachable'}
			: state === 'untested'
				? {check: `etcd ${target}`, level: 'warn', detail: 'not tested (no bash or timeout on the master)', fix: 'check by hand that the master reaches etcd'}
				: {
					check: `etcd ${target}`,
					level: quorumReachable ? 'warn' : 'fail',
					detail: `not reachable from this master${quorumReachable ? `; ${facts.etcd.length - closed} of ${facts.etcd.length} are, enough for etcd to serve` : `; only ${facts.etcd.length - closed} of ${facts.etcd.length} are, less than a majority`}`,
					fix: `check etcd.endpoints, that etcd runs, and the network or firewall between the master and ${target}`,
				});
	}

	return results;
}

/** Why ssh could not log in to the hop that refused: which key, whether an agent holds keys, whether the key needs a passphrase. */
export async function diagnoseAuthentication(runner: Runner, config: ResolvedConfig, hop: SshHop = 'master'): Promise<string> {
	const parts: string[] = [];
	const identity = config.ssh.identityFile;
	const refusing = hop === 'bastion' ? `the bastion ${config.bastion?.host ?? ''}` : 'the master';
	const user = (hop === 'bastion' ? config.bastion?.user : config.ssh.user) ?? 'USER';
	if (hop === 'bastion') {
		parts.push(`${refusing} refused the login${config.bastion?.user === undefined ? '' : ` as ${config.bastion.user}`} (the masters were not tried): check ssh.bastion and your access to it`);
	}

	if (identity) {
		const probe = await runner.run({command: 'ssh-keygen', args: ['-y', '-P', '', '-f', identity], display: `ssh-keygen -y -P '' -f ${identity}`, timeoutMs: 10_000});
		parts.push(probe.exitCode === 0
			? `${identity} has no passphrase, so ${refusing} refused it: add its public key (ssh-keygen -y -f ${identity}) to ~${user}/.ssh/authorized_keys on ${refusing}`
			: /passphrase/i.test(probe.stderr)
				? `${identity} is protected by a passphrase and ssh runs in batch mode: load it into ssh-agent first (ssh-add ${identity})`
				: `${identity} could not be read as a private key (${probe.stderr.trim().split('\n').at(-1) ?? 'ssh-keygen failed'})`);
	} else {
		parts.push('no ssh.identityFile is set: ssh tries your agent and default keys (~/.ssh/id_ed25519, id_rsa, ...)');
	}

	if (process.env.SSH_AUTH_SOCK) {
		const agent = await runner.run({command: 'ssh-add', args: ['-l'], timeoutMs: 10_000});
		parts.push(agent.exitCode === 0 ? `ssh-agent holds ${agent.stdout.trim().split('\n').length} key(s)` : 'ssh-agent holds no key');
	} else {
		parts.push('no ssh-agent (SSH_AUTH_SOCK is not set)');
	}

	return parts.join('; ');
}

type FactsReading = {result: CommandResult; sent: number; received: number};

async function readFacts(remote: Remote, config: ResolvedConfig, master: Master): Promise<FactsReading> {
	const sent = Date.now();
	const result = await remote.run(master, factsScript(config), {step: 'preflight', display: 'read user, architecture, OS, listening ports, clock and etcd reachability', timeoutMs: 30_000});
	return {result, sent, received: Date.now()};
}

/** Readings started early, per connection: each is used once by the preflight that follows. */
const earlyReadings = new WeakMap<Remote, Map<string, Promise<FactsReading>>>();

/**
 * Starts reading every master's facts (read-only) while the workstation is busy with its own work
 * (key pairs, unpacking): the ssh connections are then up, and the answers in, when preflight runs.
 */
export function readFactsEarly(remote: Remote, config: ResolvedConfig, masters: Master[]): void {
	earlyReadings.set(remote, new Map(masters.map(master => [master.name, readFacts(remote, config, master)])));
}

/** Connects, reads the facts and judges them; an ssh failure becomes one failed check with its diagnosis. */
export async function preflightHost(context: StepContext, master: Master): Promise<{results: CheckResult[]; machineId?: string}> {
	const early = earlyReadings.get(context.remote)?.get(master.name);
	earlyReadings.get(context.remote)?.delete(master.name);
	const {result, sent, received} = await (early ?? readFacts(context.remote, context.config, master));
	if (result.exitCode !== 0) {
		const stderr = result.stderr.trim();
		// Through a bastion, the check is named for the hop that failed: the bastion's failure is no fault of the master.
		const hop = result.exitCode === 255 ? failedHop(stderr, context.config) : 'master';
		const authentication = /Permission denied|no supported methods remain|Too many authentication failures/.test(stderr);
		const fix = authentication ? await diagnoseAuthentication(context.runner, context.config, hop) : diagnoseSsh(stderr, context.config, master);
		return {results: [{check: hop === 'bastion' ? `ssh to the bastion ${context.config.bastion!.host}` : 'ssh', level: 'fail', detail: stderr.split('\n').at(-1) ?? `exit ${result.exitCode}`, fix}]};
	}

	const facts = parseFacts(result.stdout);
	const offset = facts.timeNs === undefined ? undefined : Number(facts.timeNs / 1_000_000n) - ((sent + received) / 2);
	return {
		results: [{check: 'ssh', level: 'pass', detail: `${sshLogin(context.config, master)}, host key${context.config.bastion ? 's' : ''} checked`}, ...judgeFacts(context.config, facts, offset)],
		machineId: facts.machine || undefined,
	};
}

/** Masters that turned out to be the same machine (one machine-id), found after every host answered. */
export function duplicateMachines(machineIds: Map<string, string>): string[][] {
	const byId = new Map<string, string[]>();
	for (const [host, id] of machineIds) {
		byId.set(id, [...byId.get(id) ?? [], host]);
	}

	return [...byId.values()].filter(hosts => hosts.length > 1);
}

/** The machine-id each master reported during one preflight, for the cross-master check that follows it. */
const machineIdsSeen = new WeakMap<StepContext, Map<string, string>>();

/** The first master of this run: a cluster step that goes through none in particular (another would answer the same). */
export function firstMaster(context: StepContext): Master[] {
	return context.config.masters.filter(master => !context.skipped.has(master.name)).slice(0, 1);
}

export const preflight: StepDefinition = {
	id: 'preflight',
	readsOnly: true,
	title: 'Preflight checks',
	needs: [],
	scope: 'each-master',
	plan: context => [{kind: 'check', description: `ssh${context.config.ssh.user === undefined ? '' : ` as ${context.config.ssh.user}`}${context.config.bastion ? ` through the bastion ${context.config.bastion.host}` : ''} with host keys checked; root or sudo; x86_64; systemd; ports ${Object.keys(controlPlanePorts).join(', ')} free; clock within ${skewWarnMs / 1000} s; etcd ${context.config.etcd.endpoints.join(', ')} reachable`}],
	// Checks are cheap and the world changes between runs: they always run again.
	verify: async () => ({done: false}),
	async run(context, master) {
		const {results, machineId} = await preflightHost(context, master);
		if (machineId) {
			machineIdsSeen.set(context, (machineIdsSeen.get(context) ?? new Map<string, string>()).set(master.name, machineId));
		}

		for (const result of results) {
			context.check('preflight', master.name, result);
		}

		const failed = results.filter(result => result.level === 'fail');
		if (failed.length > 0) {
			throw new ChecksFailed({
				step: 'preflight',
				host: master.name,
				message: failed.map(result => `${result.check}: ${result.detail}`).join('; '),
				fix: failed.map(result => result.fix).filter(Boolean).join('; '),
			});
		}

		const warned = results.filter(result => result.level === 'warn').length;
		return `${results.length} checks passed${warned > 0 ? `, ${warned} with a warning` : ''}`;
	},
};

/** Across masters, once every master passed preflight: two addresses of one machine would make a control plane of fewer masters than listed. */
export const distinctMachines: StepDefinition = {
	id: 'distinct-machines',
	readsOnly: true,
	title: 'Check that no two masters are one machine',
	needs: ['preflight'],
	scope: 'cluster',
	hosts: firstMaster,
	plan: () => [{kind: 'check', description: 'the machine-id and boot id preflight read differ from master to master'}],
	verify: async () => ({done: false}),
	async run(context) {
		const seen = machineIdsSeen.get(context) ?? new Map<string, string>();
		machineIdsSeen.delete(context);
		const duplicates = duplicateMachines(seen);
		if (duplicates.length > 0) {
			const detail = `${duplicates.map(hosts => hosts.join(' and ')).join('; ')} are the same machine (same machine-id and boot id)`;
			const fix = 'list every master once, each with its own address';
			// Only a failure is reported: a passing check would add a cluster column to the masters' grid.
			context.check('distinct-machines', 'cluster', {check: 'distinct machines', level: 'fail', detail, fix});
			throw new ChecksFailed({step: 'distinct-machines', host: duplicates.flat().join(', '), message: detail, fix});
		}

		return `${seen.size} machines, one per master`;
	},
};
