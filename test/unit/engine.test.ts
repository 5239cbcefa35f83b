import {execFileSync} from 'node:child_process';
import {createHash} from 'node:crypto';
import {existsSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync} from 'node:fs';
import path from 'node:path';
import {describe, expect, test, vi} from 'vitest';
import YAML from 'yaml';
import {loadConfig} from '../../source/config/load.js';
import {ApplyFailed, Engine, StopRequested} from '../../source/engine/engine.js';
import type {EngineEvent} from '../../source/engine/events.js';
import {headlessPrompter} from '../../source/engine/prompts.js';
import {PromptRefused} from '../../source/errors.js';
import {readCertificate} from '../../source/pki/certs.js';
import {stageEncryptionKey} from '../../source/pki/material.js';
import {formatCheckGrid, formatPlan, formatStatus} from '../../source/reporters/format.js';
import {planChanges} from '../../source/reporters/diff-format.js';
import {planExitCode} from '../../source/commands.js';
import {Runner, type CommandSpec} from '../../source/runner.js';
import {transferForm} from '../../source/steps/binaries.js';
import {Workspace} from '../../source/workspace.js';
import {FakeCluster} from '../helpers/fake-hosts.js';
import {baseConfig, binaryNames, elfExecutable, makeFixture, writeConfig} from '../helpers/fixture.js';
import {fakeEngine} from '../helpers/engine.js';

const ips = ['172.24.8.71', '172.24.8.72', '172.24.8.73'];

function setup(version = 'v1.28.7', change: (raw: Record<string, any>) => void = () => undefined) {
	const fixture = makeFixture(version);
	const raw = baseConfig(fixture.tarball, version);
	change(raw);
	const configFile = writeConfig(fixture.dir, raw);
	const cluster = new FakeCluster(ips);
	const logFile = path.join(fixture.dir, 'apply.jsonl');
	const engine = async (options: {yes?: boolean; overwrite?: boolean} = {}) => {
		const config = await loadConfig(configFile);
		const events: EngineEvent[] = [];
		const instance = fakeEngine(cluster, config, fixture.stateDir, {runner: new Runner({executor: cluster.executor, logFile}), prompter: headlessPrompter({yes: options.yes ?? true, overwrite: options.overwrite ?? false})});
		instance.subscribe(event => events.push(event));
		return {engine: instance, events};
	};

	return {...fixture, configFile, cluster, engine, logFile};
}

const hostFile = (cluster: FakeCluster, ip: string, file: string) => cluster.hosts.get(ip)!.files.get(file);

describe('apply', () => {
	test('installs every step on every master', async () => {
		const {cluster, engine} = setup();
		const {engine: instance, events} = await engine();
		await instance.apply({confirm: true});
		for (const ip of ips) {
			const host = cluster.hosts.get(ip)!;
			expect(host.active).toBe(true);
			expect(hostFile(cluster, ip, '/opt/k8s/bin/v1.28.7/kube-apiserver')?.mode).toBe(0o755);
			expect(hostFile(cluster, ip, '/opt/k8s/bin/kube-apiserver')?.link).toBe('v1.28.7/kube-apiserver');
			expect(hostFile(cluster, ip, '/etc/kubernetes/cert/kubernetes-key.pem')?.mode).toBe(0o600);
			expect(hostFile(cluster, ip, '/etc/kubernetes/encryption-config.yaml')?.mode).toBe(0o600);
			expect(hostFile(cluster, ip, '/etc/systemd/system/kube-apiserver.service')?.content.toString()).toContain(`--advertise-address=${ip}`);
			expect(cluster.running(ip)).toEqual(['kube-apiserver', 'kube-controller-manager', 'kube-nginx', 'kube-scheduler']);
			expect(hostFile(cluster, ip, '/etc/kubernetes/kube-controller-manager.kubeconfig')?.mode).toBe(0o600);
			expect(hostFile(cluster, ip, '/etc/kubernetes/cert/ca-key.pem')?.mode).toBe(0o600);
			expect(hostFile(cluster, ip, '/opt/k8s/kube-nginx/conf/kube-nginx.conf')?.content.toString()).toContain('listen 127.0.0.1:8443;');
		}

		// verify wrote a test secret, found it encrypted in etcd, and deleted it.
		expect(cluster.secrets.size).toBe(0);
		const verified = events.filter(event => event.type === 'check' && ['verify', 'verify-cluster'].includes(event.step));
		expect(verified.length).toBeGreaterThanOrEqual(ips.length * 6 + 4);
		expect(verified.filter(event => event.type === 'check' && event.level === 'fail')).toEqual([]);

		expect(cluster.bindings.has('kube-apiserver:kubelet-apis')).toBe(true);
		const stepsDone = events.filter(event => event.type === 'step-done').map(event => event.type === 'step-done' && `${event.step}:${event.outcome}`);
		// The files steps run side by side and finish in any order (binaries switches its links after its uploads);
		// on a new cluster (nothing enabled before start) the units beside the binaries they name; verify and its cluster checks side by side.
		// A first install takes no etcd snapshot (nothing of it is in etcd yet). No master leaves on a first install: the leave step has nothing to do, and the files steps wait for it.
		// The controller-managers' and schedulers' binaries and units go while the apiservers start, then their start beside the checks that need only the apiservers.
		expect([...stepsDone.slice(0, 4), new Set(stepsDone.slice(4, 9)), new Set(stepsDone.slice(9, 12)), new Set(stepsDone.slice(12, 14)), new Set(stepsDone.slice(14))]).toEqual(['preflight:done', 'distinct-machines:done', 'snapshot:skipped', 'leave:skipped', new Set(['binaries:done', 'certs:done', 'encryption:done', 'audit:done', 'units:done']), new Set(['start:done', 'controller-binaries:done', 'controller-units:done']), new Set(['start-controllers:done', 'rbac:done']), new Set(['etcd-check:done', 'verify-cluster:done', 'verify:done'])]);
		expect(instance.state.snapshot.run?.status).toBe('done');
		// The files of the five files steps are read in one round trip per master, beside preflight, and what
		// verify read is what run uses. The units' state is not read on fresh masters (every unit starts whatever it is).
		const remoteScripts = (ip: string) => cluster.calls.filter(call => call.command === 'ssh' && call.args.includes(ip)).map(call => call.args.at(-1) ?? '');
		for (const ip of ips) {
			const fileReads = remoteScripts(ip).filter(script => script.includes('k8smi_stats='));
			expect(fileReads).toHaveLength(1);
			for (const file of ['/opt/k8s/bin/v1.28.7/kube-apiserver', '/opt/k8s/bin/kube-apiserver', '/etc/kubernetes/cert/ca.pem', '/etc/kubernetes/encryption-config.yaml', '/etc/kubernetes/audit-policy.yaml', '/etc/systemd/system/kube-scheduler.service']) {
				expect(fileReads[0]).toContain(` ${file} `);
			}

			expect(remoteScripts(ip).filter(script => script.includes('-p ActiveState'))).toHaveLength(0);
		}

		// The controller-manager and the scheduler start once their master's apiserver answers (the first leader election then succeeds).
		expect(cluster.clientStarts).toHaveLength(6);
		expect(cluster.clientStarts.filter(start => !start.apiserverUp)).toEqual([]);

		// On a finished cluster, the units' state and the services' answers come in one round trip per master, read ahead beside preflight.
		const before = cluster.calls.length;
		await (await engine()).engine.apply({confirm: true});
		for (const ip of ips) {
			const startReads = cluster.calls.slice(before).filter(call => call.command === 'ssh' && call.args.includes(ip) && (call.args.at(-1) ?? '').includes('NeedDaemonReload'));
			expect(startReads.map(call => call.step)).toEqual(['preflight']);
			expect(startReads).toHaveLength(1);
			// The probes are started first, in the background; verify's read of the master rides along.
			expect(startReads[0]!.args.at(-1)).toMatch(/127\.0\.0\.1:8443[\s\S]*NeedDaemonReload[\s\S]*ss -Hltn[\s\S]*##k8smi## probes/);
		}
	});

	test('a second apply on a finished cluster writes nothing and restarts nothing', async () => {
		const {cluster, engine} = setup();
		await (await engine()).engine.apply({confirm: true});
		const uploads = cluster.uploads().length;
		const restarts = ips.map(ip => cluster.hosts.get(ip)!.restarts);
		const unitRestarts = ips.map(ip => JSON.stringify([...cluster.hosts.get(ip)!.unitRestarts]));
		const {engine: again, events} = await engine();
		await again.apply({confirm: true});
		expect(cluster.uploads()).toHaveLength(uploads);
		expect(ips.map(ip => cluster.hosts.get(ip)!.restarts)).toEqual(restarts);
		expect(ips.map(ip => JSON.stringify([...cluster.hosts.get(ip)!.unitRestarts]))).toEqual(unitRestarts);
		// Preflight, the etcd check and verify are checks: they run every time and change nothing.
		const outcomes = events.filter(event => event.type === 'host-done' && !['etcd-check', 'preflight', 'distinct-machines', 'verify', 'verify-cluster'].includes(event.step)).map(event => event.type === 'host-done' && event.outcome);
		expect(new Set(outcomes)).toEqual(new Set(['skipped']));
	});

	test('the files read ahead serve each step while recent; once older than 10 s, each step reads its files again', async () => {
		const {cluster, engine} = setup();
		await (await engine()).engine.apply({confirm: true});
		const fileReads = (from: number) => ips.map(ip => cluster.calls.slice(from).filter(call => call.args.includes(ip) && (call.args.at(-1) ?? '').includes('k8smi_stats=')).length);

		let from = cluster.calls.length;
		await (await engine()).engine.apply({confirm: true});
		expect(fileReads(from)).toEqual([1, 1, 1]);

		// A long run (a slow preflight, a question to the operator): the clock passes 10 s before the files steps take their facts.
		const now = Date.now.bind(Date);
		let shift = 0;
		const clock = vi.spyOn(Date, 'now').mockImplementation(() => now() + shift);
		try {
			from = cluster.calls.length;
			const slow = await engine();
			slow.engine.subscribe(event => {
				if (event.type === 'step-start' && event.step === 'binaries') {
					shift = 11_000;
				}
			});
			await slow.engine.apply({confirm: true});
			// The one read ahead, then one per files step: binaries, certs, encryption, audit, units, controller-binaries, controller-units.
			expect(fileReads(from)).toEqual([8, 8, 8]);
		} finally {
			clock.mockRestore();
		}
	});

	test('a file whose identity (inode, size, mtime, ctime) is unchanged since it was written is not hashed again; a changed one is', async () => {
		const {cluster, engine} = setup();
		await (await engine()).engine.apply({confirm: true});
		cluster.hashedFiles.length = 0;
		await (await engine()).engine.apply({confirm: true});
		expect(cluster.hashedFiles).toEqual([]);

		// An identity in whole seconds (another stat, an old file system) is not trusted: those files are hashed.
		const coarse = (await engine()).engine;
		coarse.state.update(state => {
			for (const seen of ['install/binaries', 'install/controller-binaries'].flatMap(key => Object.values(state.steps[key]!.hosts.k8smaster01!.stats!))) {
				seen.stat = seen.stat.replaceAll(/\.\d{9}/g, '');
			}
		});
		await coarse.apply({confirm: true});
		expect(new Set(cluster.hashedFiles.map(entry => entry.split(' ')[0]))).toEqual(new Set([ips[0]]));
		// The four binaries, and the four links to them (each link's target is hashed through it).
		expect(cluster.hashedFiles.filter(entry => entry.includes('/opt/k8s/bin/'))).toHaveLength(8);
		cluster.hashedFiles.length = 0;

		// Changed by hand: its identity changes with it, so it is hashed, found foreign, and left alone (no --overwrite).
		const edited = cluster.hosts.get(ips[1]!)!.files.get('/etc/kubernetes/audit-policy.yaml')!;
		edited.content = Buffer.from(`${edited.content.toString()}# local change\n`);
		const failure = await (await engine({overwrite: false})).engine.apply({confirm: true}).catch((error: unknown) => error);
		expect(cluster.hashedFiles).toContain(`${ips[1]} /etc/kubernetes/audit-policy.yaml`);
		expect(cluster.hashedFiles.filter(entry => entry !== `${ips[1]} /etc/kubernetes/audit-policy.yaml`)).toEqual([]);
		expect(String(failure)).toMatch(/audit-policy\.yaml on k8smaster02 differs from what this install wrote there/);
	});

	/** Stops the first apply where shouldStop says, resumes, and checks that the resume ends with the same cluster. */
	async function stopThenResume(shouldStop: (spec: CommandSpec, index: number) => boolean) {
		const {cluster, engine, stateDir} = setup();
		const first = await engine();
		cluster.beforeCommand = (spec, index) => {
			if (shouldStop(spec, index)) {
				first.engine.requestStop();
			}
		};
		await expect(first.engine.apply({confirm: true})).rejects.toBeInstanceOf(StopRequested);
		const stoppedRun = first.engine.state.snapshot.run!;
		expect(stoppedRun.status).toBe('stopped');
		// Every master that stopped is named, not only the last one to start an action (none before the first step).
		if (stoppedRun.step) {
			const stoppedHosts = stoppedRun.host!.split(', ');
			expect(stoppedHosts.length).toBeGreaterThan(0);
			expect(stoppedHosts.every(host => /^(k8smaster0[123]|cluster)$/.test(host))).toBe(true);
		}

		const caBefore = existsSync(path.join(stateDir, 'kubernetes', 'pki', 'ca.pem')) ? readFileSync(path.join(stateDir, 'kubernetes', 'pki', 'ca.pem'), 'utf8') : undefined;
		const keyBefore = existsSync(path.join(stateDir, 'kubernetes', 'pki', 'encryption.key')) ? readFileSync(path.join(stateDir, 'kubernetes', 'pki', 'encryption.key'), 'utf8') : undefined;
		const uploadsBefore = cluster.uploads().map(call => `${call.args.at(-2)} ${call.args.at(-1)}`);

		cluster.beforeCommand = () => undefined;
		await (await engine()).engine.apply({confirm: true});
		const ca = readFileSync(path.join(stateDir, 'kubernetes', 'pki', 'ca.pem'), 'utf8');
		const key = readFileSync(path.join(stateDir, 'kubernetes', 'pki', 'encryption.key'), 'utf8');
		expect(ca).toBe(caBefore ?? ca);
		expect(key).toBe(keyBefore ?? key);
		const configs = ips.map(ip => hostFile(cluster, ip, '/etc/kubernetes/encryption-config.yaml')?.content.toString());
		expect(new Set(configs).size).toBe(1);
		expect(configs[0]).toContain(key.trim());
		expect(ips.map(ip => hostFile(cluster, ip, '/etc/kubernetes/cert/ca.pem')?.content.toString())).toEqual([ca, ca, ca]);
		// What landed before the stop is verified on the host and not written again.
		const all = cluster.uploads().map(call => `${call.args.at(-2)} ${call.args.at(-1)}`);
		expect(all.length).toBe(new Set(all).size);
		expect(all.slice(0, uploadsBefore.length)).toEqual(uploadsBefore);
		expect(ips.map(ip => cluster.running(ip).length)).toEqual([4, 4, 4]);
	}

	test.each([5, 20, 28, 40])('stopped after command %i, then resumed: same CA, same key on every master, nothing written twice', async stopAt => {
		await stopThenResume((_, index) => index === stopAt);
	});

	// At every step's first command (its boundary) and at its third (inside it).
	test.each([
		...['preflight', 'binaries', 'certs', 'encryption', 'audit', 'units', 'start', 'etcd-check', 'rbac', 'verify'].map(step => [step, 1] as const),
		...['preflight', 'binaries', 'certs', 'encryption', 'audit', 'units', 'start', 'verify'].map(step => [step, 3] as const),
		// rbac asks twice on a fresh install (is it there? create it): stopped at the second.
		['rbac', 2] as const,
	])('stopped at %s command %i, then resumed: the same cluster', async (step, nth) => {
		let seen = 0;
		await stopThenResume(spec => spec.step === step && ++seen === nth);
	});

	test('a master that cannot be reached: the error names it, the others keep their work, a retry completes', async () => {
		const {cluster, engine} = setup();
		const heal = cluster.cutDuring('binaries', '172.24.8.72');
		const first = await engine();
		const failure = await first.engine.apply({confirm: true}).catch((error: unknown) => error);
		expect(failure).toBeInstanceOf(ApplyFailed);
		// The files steps run side by side: each of them failed on k8smaster02 alone; binaries is named first.
		expect(new Set((failure as ApplyFailed).failures.map(each => each.host))).toEqual(new Set(['k8smaster02']));
		expect((failure as ApplyFailed).failures[0]!.step).toBe('binaries');
		expect((failure as ApplyFailed).failures[0]!.fix).toMatch(/k8smaster02 \(172\.24\.8\.72\) is not reachable/);
		expect(first.engine.state.snapshot.run).toMatchObject({status: 'failed', step: 'binaries', host: 'k8smaster02'});
		const uploads71 = cluster.uploads('172.24.8.71').length;
		expect(uploads71).toBeGreaterThan(0);

		heal();
		await (await engine()).engine.apply({confirm: true});
		expect(ips.every(ip => cluster.hosts.get(ip)!.active)).toBe(true);
		// k8smaster01's binaries were verified, not copied again: the uploads are the first run's, two in each of the two binaries steps' streams.
		const binaryUploads71 = cluster.uploads('172.24.8.71').filter(call => (call.args.at(-1) ?? '').includes('/opt/k8s/bin/'));
		expect(binaryUploads71).toHaveLength(2);
		expect(binaryUploads71.map(upload => upload.args.at(-1)!.match(/; mv -f /g)?.length)).toEqual([2, 2]);
	});

	test('an upload cut short never replaces the file: the host discards it and the step fails', async () => {
		const {cluster, engine} = setup();
		cluster.truncateUploads = true;
		const failure = await (await engine()).engine.apply({confirm: true}).catch((error: unknown) => error);
		expect(failure).toBeInstanceOf(ApplyFailed);
		// A file checked against its sha256, or a compressed binary whose stream ends early: nothing lands either way.
		expect((failure as ApplyFailed).failures[0]!.message).toMatch(/incomplete upload discarded|gzip: stdin: unexpected end of file/);
		expect(ips.every(ip => cluster.hosts.get(ip)!.files.size === 0)).toBe(true);
		cluster.truncateUploads = false;
		await (await engine()).engine.apply({confirm: true});
		expect(ips.every(ip => cluster.hosts.get(ip)!.active)).toBe(true);
	});

	test('a file changed on a master since this install wrote it is not overwritten without asking', async () => {
		const {cluster, engine} = setup();
		await (await engine()).engine.apply({confirm: true});
		const host = cluster.hosts.get('172.24.8.73')!;
		host.files.set('/etc/kubernetes/audit-policy.yaml', {content: Buffer.from('edited by hand\n'), mode: 0o644, owner: 'root'});
		await expect((await engine({overwrite: false})).engine.apply({confirm: true})).rejects.toThrow(/--overwrite|differs/);
		expect(host.files.get('/etc/kubernetes/audit-policy.yaml')?.content.toString()).toBe('edited by hand\n');
		await (await engine({overwrite: true})).engine.apply({confirm: true});
		expect(host.files.get('/etc/kubernetes/audit-policy.yaml')?.content.toString()).toContain('kind: Policy');
		expect(cluster.calls.some(call => (call.args.at(-1) ?? '').includes('k8smi-backup-'))).toBe(true);
	});

	test('without --yes and without a terminal, apply refuses naming the option, and records nothing', async () => {
		const {engine, stateDir} = setup();
		const {engine: instance} = await engine({yes: false});
		const error = await instance.apply({confirm: true}).catch((caught: unknown) => caught);
		expect(error).toBeInstanceOf(PromptRefused);
		expect((error as PromptRefused).option).toBe('--yes');
		expect(instance.state.snapshot.run).toBeUndefined();
		expect(existsSync(stateDir)).toBe(false);
	});

	test('a changed certificate input re-runs certs and restarts the apiservers, nothing else', async () => {
		const {cluster, engine, configFile, tarball} = setup();
		await (await engine()).engine.apply({confirm: true});
		const before = cluster.uploads().length;
		writeConfig(path.dirname(configFile), {...baseConfig(tarball), certificates: {extraSans: ['203.0.113.10']}});
		const {engine: again, events} = await engine();
		await again.apply({confirm: true});
		const written = cluster.uploads().slice(before).map(call => call.args.at(-1) ?? '');
		expect(written).toHaveLength(3);
		expect(written.every(script => script.includes('/etc/kubernetes/cert/kubernetes.pem'))).toBe(true);
		expect(ips.map(ip => cluster.hosts.get(ip)!.restarts)).toEqual([2, 2, 2]);
		// The other services do not read the apiserver's certificate.
		expect(ips.map(ip => [...cluster.hosts.get(ip)!.unitRestarts.values()])).toEqual([[1, 1, 1], [1, 1, 1], [1, 1, 1]]);
		expect(events.some(event => event.type === 'material' && event.changes.some(change => change.item === 'kubernetes certificate' && change.action === 'reissued'))).toBe(true);
	});

	test('a change only the scheduler reads restarts only the schedulers', async () => {
		const {cluster, engine, configFile, tarball} = setup();
		await (await engine()).engine.apply({confirm: true});
		writeConfig(path.dirname(configFile), {...baseConfig(tarball), extraFlags: {'kube-scheduler': ['--v=4']}});
		const {engine: again, events} = await engine();
		await again.apply({confirm: true});
		expect(ips.map(ip => cluster.hosts.get(ip)!.restarts)).toEqual([1, 1, 1]);
		expect(ips.map(ip => Object.fromEntries(cluster.hosts.get(ip)!.unitRestarts))).toEqual(ips.map(() => ({'kube-nginx': 1, 'kube-controller-manager': 1, 'kube-scheduler': 2})));
		expect(hostFile(cluster, ips[0]!, '/etc/systemd/system/kube-scheduler.service')?.content.toString()).toMatch(/--v=4$/m);
		expect(events.some(event => event.type === 'host-done' && event.step === 'start-controllers' && event.detail === 'restarted kube-scheduler; all ready')).toBe(true);
	});

	test('a unit that stopped on a master is started again by the next apply, the others are left running', async () => {
		const {cluster, engine} = setup();
		await (await engine()).engine.apply({confirm: true});
		cluster.hosts.get('172.24.8.72')!.units.delete('kube-controller-manager');
		await (await engine()).engine.apply({confirm: true});
		expect(cluster.running('172.24.8.72')).toContain('kube-controller-manager');
		expect(ips.map(ip => cluster.hosts.get(ip)!.unitRestarts.get('kube-controller-manager'))).toEqual([1, 2, 1]);
		expect(ips.map(ip => cluster.hosts.get(ip)!.restarts)).toEqual([1, 1, 1]);
	});
});

describe('restarts', () => {
	test('a unit that fails to start once while systemd starts it again (Restart=) is waited for, not reported failed', async () => {
		const {cluster, engine, logFile} = setup();
		cluster.transientStartFailure.add('172.24.8.72 kube-nginx');
		await (await engine()).engine.apply({confirm: true});
		expect(ips.map(ip => cluster.hosts.get(ip)!.units.has('kube-nginx'))).toEqual([true, true, true]);
		expect(readFileSync(logFile, 'utf8')).toMatch(/"event":"restart-retried","host":"k8smaster02"/);
	});

	test('on a running cluster the apiservers restart one at a time; after a failure the rest keep serving', async () => {
		const {cluster, engine, configFile, tarball} = setup();
		await (await engine()).engine.apply({confirm: true});
		cluster.restartOrder.length = 0;
		writeConfig(path.dirname(configFile), {...baseConfig(tarball), certificates: {extraSans: ['203.0.113.10']}});
		cluster.failRestart.add('172.24.8.72');
		const failure = await (await engine()).engine.apply({confirm: true}).catch((error: unknown) => error);
		expect((failure as ApplyFailed).failures.map(each => each.host)).toEqual(['k8smaster02']);
		expect(cluster.restartOrder).toEqual(['172.24.8.71', '172.24.8.72']);
		expect(cluster.hosts.get('172.24.8.73')!.active).toBe(true);
		cluster.failRestart.clear();
		await (await engine()).engine.apply({confirm: true});
		expect(cluster.restartOrder).toEqual(['172.24.8.71', '172.24.8.72', '172.24.8.72', '172.24.8.73']);
	});

	test('on a running cluster a restarting apiserver is out of kube-nginx on every master until it is ready; one that fails stays out', async () => {
		const {cluster, engine, configFile, tarball} = setup();
		await (await engine()).engine.apply({confirm: true});
		// A fresh install has no other apiserver to send to: nothing is taken out.
		expect(cluster.drainTimeline.filter(entry => entry.includes('nginx'))).toEqual([]);
		const installed = cluster.drainTimeline.length;
		writeConfig(path.dirname(configFile), {...baseConfig(tarball), certificates: {extraSans: ['203.0.113.10']}});
		cluster.failRestart.add('172.24.8.72');
		await (await engine()).engine.apply({confirm: true}).catch(() => undefined);
		const everywhere = (down: string) => ips.map(ip => `${ip} nginx down=${down}`);
		const unordered = (entries: string[]) => entries.join('\n').split('\n').sort();
		const [first, second] = [cluster.drainTimeline.slice(installed, installed + 7), cluster.drainTimeline.slice(installed + 7)];
		expect(unordered(first.slice(0, 3))).toEqual(everywhere('172.24.8.71'));
		expect(first[3]).toBe('172.24.8.71 restart kube-apiserver');
		expect(unordered(first.slice(4))).toEqual(everywhere('-'));
		expect(unordered(second.slice(0, 3))).toEqual(everywhere('172.24.8.72'));
		expect(second.slice(3)).toEqual(['172.24.8.72 restart kube-apiserver']);
		// What it wrote is its own: the next apply puts the config back without asking.
		cluster.failRestart.clear();
		await (await engine({overwrite: false})).engine.apply({confirm: true});
		expect(ips.map(ip => cluster.hosts.get(ip)!.files.get('/opt/k8s/kube-nginx/conf/kube-nginx.conf')!.content.toString())).toEqual(ips.map(() => expect.not.stringContaining(' down;')));
	});

	test('a file put back with --overwrite restarts that master\'s apiserver, and only that one', async () => {
		const {cluster, engine} = setup();
		await (await engine()).engine.apply({confirm: true});
		cluster.restartOrder.length = 0;
		cluster.hosts.get('172.24.8.73')!.files.set('/etc/kubernetes/encryption-config.yaml', {content: Buffer.from('edited'), mode: 0o600, owner: 'root'});
		await (await engine({overwrite: true})).engine.apply({confirm: true});
		expect(cluster.restartOrder).toEqual(['172.24.8.73']);
	});

	test('after "start over", files verified in place count as this install\'s: a later change is not taken for a hand edit', async () => {
		const {engine, configFile, tarball} = setup();
		await (await engine()).engine.apply({confirm: true});
		const {engine: fresh} = await engine();
		fresh.state.clearProgress();
		await fresh.apply({confirm: true});
		writeConfig(path.dirname(configFile), {...baseConfig(tarball), certificates: {extraSans: ['198.51.100.7']}});
		await (await engine({overwrite: false})).engine.apply({confirm: true});
	});
});

describe('verify', () => {
	test('the cluster-wide checks run beside the masters\' own, in apply and in the verify command', async () => {
		const {cluster, engine, configFile, stateDir} = setup();
		await (await engine()).engine.apply({confirm: true});
		// Each master's verify read held for a while: run one after the other, the cluster would be asked only once every read came back.
		const timeline: string[] = [];
		const executor = async (spec: CommandSpec) => {
			const masterRead = spec.step === 'verify' && (spec.args.at(-1) ?? '').includes('ss -Hltn');
			if (masterRead) {
				await new Promise(resolve => setTimeout(resolve, 300));
				timeline.push(`read ${spec.args.at(-2)}`);
			}

			return cluster.executor(spec);
		};
		const api: typeof cluster.api = async (ip, port, request, ...rest) => {
			if (request.path.endsWith('/selfsubjectaccessreviews')) {
				timeline.push('cluster asked');
			}

			return cluster.api(ip, port, request, ...rest);
		};
		const config = await loadConfig(configFile);
		const instance = () => fakeEngine(cluster, config, stateDir, {runner: new Runner({executor}), api});
		await instance().apply({confirm: true});
		// Nothing restarted: verify took each master's read from the start step's check, no round trip of its own.
		expect(timeline).toEqual(['cluster asked']);

		timeline.length = 0;
		expect(await instance().verify()).toBe(true);
		expect(timeline[0]).toBe('cluster asked');
		expect(timeline.slice(1).sort()).toEqual(ips.map(ip => `read ${ip}`));
	});

	test('the verify command with no apiserver answering: the masters\' failures, and the cluster\'s in its column', async () => {
		const {cluster, engine} = setup();
		await (await engine()).engine.apply({confirm: true});
		for (const host of cluster.hosts.values()) {
			host.active = false;
		}

		const {engine: instance, events} = await engine();
		expect(await instance.verify()).toBe(false);
		const grid = formatCheckGrid(events.flatMap(event => (event.type === 'check' ? [event] : []))).join('\n');
		expect(grid).toMatch(/^apiserver ready +- +FAIL +FAIL +FAIL$/m);
		expect(grid).toMatch(/^cluster checks +FAIL +- +- +-$/m);
		expect(grid).toContain('FAIL cluster cluster checks: no apiserver answers: the cluster-wide checks cannot run\n     fix: run k8s-master-install status, then apply');
	});
});

describe('control-plane access', () => {
	const adminKubeconfig = (stateDir: string) => YAML.parse(readFileSync(path.join(stateDir, 'kubernetes', 'rendered', 'admin.kubeconfig'), 'utf8'));

	test('without controlPlaneEndpoint, apply says where the admin kubeconfig is and that it holds one context per master', async () => {
		const {engine, stateDir} = setup();
		const {engine: instance, events} = await engine();
		await instance.apply({confirm: true});
		const file = path.join(stateDir, 'kubernetes', 'rendered', 'admin.kubeconfig');
		expect(events.filter(event => event.type === 'admin-kubeconfig')).toEqual([{
			type: 'admin-kubeconfig',
			file,
			contexts: ips.map((ip, index) => ({context: `k8smaster0${index + 1}`, cluster: `kubernetes-k8smaster0${index + 1}`, server: `https://${ip}:6443`})),
			endpoint: undefined,
		}]);
		expect(adminKubeconfig(stateDir)['current-context']).toBe('k8smaster01');
		// verify has nothing to ask beyond the masters.
		expect(events.some(event => event.type === 'check' && event.check === 'via controlPlaneEndpoint')).toBe(false);
	});

	test('controlPlaneEndpoint: in the apiserver certificate and the admin kubeconfig, asked by verify; a new one re-issues the certificate with the same key and restarts the apiservers one at a time', async () => {
		const {cluster, engine, configFile, tarball, stateDir} = setup();
		writeConfig(path.dirname(configFile), {...baseConfig(tarball), controlPlaneEndpoint: '172.24.8.70'});
		cluster.loadBalancer = '172.24.8.70:6443';
		const {engine: first, events} = await engine();
		await first.apply({confirm: true});
		expect(events.find(event => event.type === 'admin-kubeconfig')).toMatchObject({endpoint: '172.24.8.70:6443', contexts: [{context: 'admin@kubernetes', server: 'https://172.24.8.70:6443'}]});
		expect(events.filter(event => event.type === 'check' && event.check === 'via controlPlaneEndpoint')).toMatchObject([{host: 'cluster', level: 'pass', detail: '172.24.8.70:6443/readyz: ok'}]);
		const certificate = () => readCertificate(hostFile(cluster, ips[0]!, '/etc/kubernetes/cert/kubernetes.pem')!.content.toString());
		expect(certificate().ipSans).toContain('172.24.8.70');
		const key = hostFile(cluster, ips[0]!, '/etc/kubernetes/cert/kubernetes-key.pem')!.content.toString();

		writeConfig(path.dirname(configFile), {...baseConfig(tarball), controlPlaneEndpoint: 'k8s-api.example.com:8443'});
		cluster.loadBalancer = 'k8s-api.example.com:8443';
		cluster.restartOrder.length = 0;
		const {engine: second, events: later} = await engine();
		await second.apply({confirm: true});
		expect(later.some(event => event.type === 'material' && event.changes.some(change => change.item === 'kubernetes certificate' && change.action === 'reissued'))).toBe(true);
		expect(certificate().dnsSans).toContain('k8s-api.example.com');
		expect(certificate().ipSans).not.toContain('172.24.8.70');
		expect(hostFile(cluster, ips[0]!, '/etc/kubernetes/cert/kubernetes-key.pem')!.content.toString()).toBe(key);
		expect(cluster.restartOrder).toEqual(ips);
		expect(adminKubeconfig(stateDir).clusters.map((entry: {cluster: {server: string}}) => entry.cluster.server)).toEqual(['https://k8s-api.example.com:8443']);
		expect(later.find(event => event.type === 'check' && event.check === 'via controlPlaneEndpoint')).toMatchObject({level: 'pass'});
	});

	test('verify names an endpoint that does not answer, and one whose certificate lacks its name, each with its fix', async () => {
		const {cluster, engine, configFile, tarball, stateDir} = setup();
		writeConfig(path.dirname(configFile), {...baseConfig(tarball), controlPlaneEndpoint: '172.24.8.70'});
		// Installed, then verify finds the endpoint silent: no load balancer is in front of the masters.
		await expect((await engine()).engine.apply({confirm: true})).rejects.toThrow(/verify-cluster failed on cluster/);
		const {engine: unanswered, events} = await engine();
		expect(await unanswered.verify()).toBe(false);
		expect(events.find(event => event.type === 'check' && event.check === 'via controlPlaneEndpoint')).toMatchObject({
			host: 'cluster', level: 'fail', detail: '172.24.8.70:6443/readyz: connect ECONNREFUSED', fix: expect.stringMatching(/reaches 172\.24\.8\.70:6443 and that it forwards TCP \(TLS passed through\) to port 6443 of every master \(172\.24\.8\.71, 172\.24\.8\.72, 172\.24\.8\.73\)/),
		});

		const config = await loadConfig(configFile);
		const misnamed = new Engine({
			config, workspace: new Workspace(stateDir, config.name), runner: new Runner({executor: cluster.executor}), prompter: headlessPrompter({yes: true, overwrite: false}), api: cluster.api,
			probe: async (host, port, pathName) => (host === '172.24.8.70' ? {ok: false, status: 0, body: '', error: 'Hostname/IP does not match certificate\'s altnames: IP: 172.24.8.70 is not in the cert\'s list'} : cluster.probe(host, port, pathName)),
		});
		const checks: EngineEvent[] = [];
		misnamed.subscribe(event => checks.push(event));
		expect(await misnamed.verify()).toBe(false);
		expect(checks.find(event => event.type === 'check' && event.check === 'via controlPlaneEndpoint')).toMatchObject({fix: expect.stringMatching(/^run apply: it issues the apiserver certificate again with 172\.24\.8\.70 among its names/)});
	});
});

describe('material and concurrency', () => {
	test('without a bastion, every apiserver call goes straight to its address: no forward, no extra command', async () => {
		const {cluster, engine} = setup();
		const {engine: instance} = await engine();
		await instance.apply({confirm: true});
		expect(cluster.apiRoutes.length).toBeGreaterThan(0);
		expect(cluster.apiRoutes.filter(route => route.via !== undefined)).toEqual([]);
		expect(cluster.calls.filter(call => call.command === 'ssh' && (call.args.includes('forward') || call.args.includes('check')))).toEqual([]);
		expect(cluster.calls.filter(call => call.command === 'ssh').every(call => call.args.includes('-l') && !call.args.join(' ').includes('ProxyCommand'))).toBe(true);
	});

	test('through a bastion: every command goes through it, sshHost is the destination, and every apiserver call goes over a forward', async () => {
		const {cluster, engine} = setup('v1.28.7', raw => {
			raw.ssh = {bastion: 'jump@bastion.example.com:2222'};
			raw.masters[1].sshHost = 'cp2';
		});
		cluster.sshHosts.set('cp2', ips[1]!);
		const {engine: instance, events} = await engine();
		await instance.apply({confirm: true});
		expect(instance.state.snapshot.run?.status).toBe('done');
		const sessions = cluster.calls.filter(call => call.command === 'ssh');
		expect(sessions.every(call => call.args.some(arg => /^ProxyCommand=ssh .* -p 2222 -l jump -W %h:%p bastion\.example\.com$/.test(arg)))).toBe(true);
		expect(sessions.some(call => call.args.includes('-l') || call.args.includes('-p'))).toBe(false);
		expect(sessions.filter(call => call.host === 'k8smaster02').every(call => call.args.includes('cp2') && !call.args.includes(ips[1]!))).toBe(true);
		// RBAC, the readiness waits and verify's checks all went over sockets forwarded through the masters.
		expect(cluster.apiRoutes.length).toBeGreaterThan(0);
		expect(cluster.apiRoutes.filter(route => route.via === undefined)).toEqual([]);
		const forwards = sessions.filter(call => call.args.includes('forward'));
		expect(forwards.length).toBeGreaterThan(0);
		expect(forwards.length).toBeLessThanOrEqual(new Set(cluster.apiRoutes.map(route => `${route.ip}:${route.port}`)).size);
		expect(cluster.bindings.has('kube-apiserver:kubelet-apis')).toBe(true);
		const sshCheck = events.find(event => event.type === 'check' && event.step === 'preflight' && event.host === 'k8smaster02' && event.check === 'ssh');
		expect(sshCheck).toMatchObject({level: 'pass', detail: 'cp2 through the bastion bastion.example.com, host keys checked'});
	});

	test('a failing preflight or a wrong tarball leaves no key material; material counts as in use once on a master', async () => {
		const {cluster, engine, stateDir} = setup();
		cluster.hosts.get('172.24.8.73')!.listening.push({port: 6443, process: 'haproxy'});
		await expect((await engine()).engine.apply({confirm: true})).rejects.toThrow(/preflight failed/);
		expect(existsSync(path.join(stateDir, 'kubernetes', 'pki'))).toBe(false);
		cluster.hosts.get('172.24.8.73')!.listening = [];
		const {engine: instance} = await engine();
		await instance.apply({confirm: true});
		expect(instance.state.snapshot.material?.encryptionKeys).toEqual([{name: 'key1', sha256: expect.stringMatching(/^[a-f\d]{64}$/)}]);
	});

	test('two runs on one state folder at once: the second is refused and nothing is replaced', async () => {
		const {engine, stateDir} = setup();
		const first = await engine();
		const second = await engine();
		const results = await Promise.allSettled([first.engine.apply({confirm: true}), second.engine.apply({confirm: true})]);
		expect(results.map(result => result.status).sort()).toEqual(['fulfilled', 'rejected']);
		const refused = results.find(result => result.status === 'rejected') as PromiseRejectedResult;
		expect(String(refused.reason)).toMatch(/--state-dir: is in use by another run of k8s-master-install/);
		expect(existsSync(path.join(stateDir, 'kubernetes', 'lock'))).toBe(false);
	});
});

describe('binaries', () => {
	test('the masters get the four binaries they run, more on request; a tarball without kube-apiserver is refused naming the field', async () => {
		const {dir, tarball, stateDir} = makeFixture('v1.28.7', binaryNames.filter(name => name !== 'cloud-controller-manager'));
		const config = await loadConfig(writeConfig(dir, baseConfig(tarball)));
		const cluster = new FakeCluster(ips);
		const engine = () => fakeEngine(cluster, config, stateDir);
		await engine().apply({confirm: true});
		const binaries = () => [...cluster.hosts.get('172.24.8.71')!.files.keys()].filter(file => file.startsWith('/opt/k8s/bin/v1.28.7/')).sort();
		expect(binaries()).toEqual(['kube-apiserver', 'kube-controller-manager', 'kube-scheduler', 'kubectl'].map(name => `/opt/k8s/bin/v1.28.7/${name}`));
		const withKubelet = await loadConfig(writeConfig(dir, {...baseConfig(tarball), binaries: {tarball, include: ['kubelet', 'kube-proxy']}}));
		await fakeEngine(cluster, withKubelet, stateDir).apply({confirm: true});
		expect(binaries()).toEqual(['kube-apiserver', 'kube-controller-manager', 'kube-proxy', 'kube-scheduler', 'kubectl', 'kubelet'].map(name => `/opt/k8s/bin/v1.28.7/${name}`));
		expect(hostFile(cluster, '172.24.8.71', '/opt/k8s/bin/kubelet')?.link).toBe('v1.28.7/kubelet');

		const broken = makeFixture('v1.28.7', binaryNames.filter(name => name !== 'kube-apiserver'));
		const brokenConfig = await loadConfig(writeConfig(broken.dir, baseConfig(broken.tarball)));
		const refused = fakeEngine(cluster, brokenConfig, broken.stateDir);
		await expect(refused.apply({confirm: true})).rejects.toThrow(/binaries\.tarball: lacks kubernetes\/server\/bin\/kube-apiserver/);
	});

	test('binaries.transfer: raw sends the binaries as they are (no gzip on the masters); a change of form reads the tarball again and sends nothing twice', async () => {
		const {cluster, engine, configFile, tarball, logFile} = setup();
		writeConfig(path.dirname(configFile), {...baseConfig(tarball), binaries: {tarball, transfer: 'raw'}});
		await (await engine()).engine.apply({confirm: true});
		const apiserverUploads = () => cluster.uploads('172.24.8.71').filter(call => call.args.at(-1)!.includes('/opt/k8s/bin/v1.28.7/kube-apiserver'));
		expect(apiserverUploads()).toHaveLength(1);
		expect(apiserverUploads()[0]!.args.at(-1)).not.toContain('gzip -dc');
		const [binary] = apiserverUploads()[0]!.inputParts!;
		expect(hostFile(cluster, '172.24.8.71', '/opt/k8s/bin/v1.28.7/kube-apiserver')!.content).toEqual(readFileSync((binary as {file: string}).file));
		expect(readFileSync(logFile, 'utf8')).toMatch(/"event":"unpack".*"transfer":"binaries.transfer: raw"/);

		writeConfig(path.dirname(configFile), {...baseConfig(tarball), binaries: {tarball, transfer: 'compressed'}});
		await (await engine()).engine.apply({confirm: true});
		expect(readFileSync(logFile, 'utf8').split('\n').filter(line => line.includes('"event":"unpack"'))).toHaveLength(2);
		expect(apiserverUploads()).toHaveLength(1);
	});

	test('binaries.transfer: auto sends as they are only when every master is on a network of this machine of 10 Gbit/s or more', async () => {
		const {dir, tarball} = makeFixture('v1.28.7');
		const config = async (masterIps: string[]) => loadConfig(writeConfig(dir, {...baseConfig(tarball), binaries: {tarball}, masters: masterIps.map((ip, index) => ({name: `k8smaster0${index + 1}`, ip}))}));
		const bridge = {name: 'br0', cidr: '172.24.8.1/24', mbits: 10_000};
		const lan = {name: 'eth0', cidr: '10.0.0.5/16', mbits: 1000};
		const wifi = {name: 'wlan0', cidr: '192.168.1.20/24', mbits: undefined};
		expect(transferForm(await config(['172.24.8.71', '172.24.8.72']), [lan, bridge])).toEqual({compressed: false, reason: 'every master is on a network of this machine of 10 Gbit/s or more: sent as they are'});
		expect(transferForm(await config(['172.24.8.71', '10.0.3.4']), [lan, bridge])).toEqual({compressed: true, reason: 'k8smaster02 (10.0.3.4) is reached through eth0 at 1000 Mbit/s: sent compressed (as they are from 10 Gbit/s)'});
		expect(transferForm(await config(['192.168.1.30']), [wifi]).reason).toBe('k8smaster01 (192.168.1.30) is reached through wlan0 at a speed it does not report: sent compressed (as they are from 10 Gbit/s)');
		expect(transferForm(await config(['172.24.8.71', '203.0.113.10']), [bridge])).toEqual({compressed: true, reason: 'k8smaster02 (203.0.113.10) is not on a network of this machine: sent compressed'});
		// This machine's own links, as read: a reason either way, never a throw.
		expect(transferForm(await config(['203.0.113.10'])).compressed).toBe(true);
	});

	test('the tarball is unpacked once; an unchanged one is not read again, one replaced in place is unpacked again', async () => {
		const {cluster, engine, tarball, logFile} = setup();
		await (await engine()).engine.apply({confirm: true});
		const unpacks = () => readFileSync(logFile, 'utf8').split('\n').filter(line => line.includes('"event":"unpack"')).length;
		expect(unpacks()).toBe(1);
		await (await engine()).engine.apply({confirm: true});
		expect(unpacks()).toBe(1);

		// Another build of the release at the same path: its kube-scheduler differs, and reaches the masters.
		const rebuilt = makeFixture('v1.28.7');
		writeFileSync(path.join(rebuilt.dir, 'src', 'kubernetes', 'server', 'bin', 'kube-scheduler'), elfExecutable('rebuilt\n'));
		execFileSync('tar', ['-czf', tarball, '-C', path.join(rebuilt.dir, 'src'), 'kubernetes']);
		await (await engine()).engine.apply({confirm: true});
		expect(unpacks()).toBe(2);
		expect(hostFile(cluster, ips[0]!, '/opt/k8s/bin/v1.28.7/kube-scheduler')?.content).toEqual(elfExecutable('rebuilt\n'));
	});
});

describe('plan', () => {
	test('lists every step on every master with commands and hashes, masks secrets and touches nothing', async () => {
		const {cluster, engine, stateDir} = setup();
		const {engine: instance} = await engine();
		const plan = await instance.plan();
		expect(plan.steps.map(step => step.id)).toEqual(['preflight', 'distinct-machines', 'snapshot', 'leave', 'binaries', 'certs', 'encryption', 'audit', 'units', 'start', 'controller-binaries', 'controller-units', 'start-controllers', 'rbac', 'etcd-check', 'verify', 'verify-cluster']);
		expect(plan.steps[4]!.hosts.map(host => host.host)).toEqual(['k8smaster01', 'k8smaster02', 'k8smaster03']);
		// The cluster-wide checks are steps of their own, planned once, not with every master's.
		expect(plan.steps.find(step => step.id === 'verify-cluster')!.hosts.map(host => host.host)).toEqual(['cluster (via k8smaster01)']);
		expect(JSON.stringify(plan.steps.find(step => step.id === 'verify')!.hosts)).not.toContain('SelfSubjectAccessReview');
		expect(cluster.calls).toHaveLength(0);
		expect(existsSync(stateDir)).toBe(false);
		const text = formatPlan(plan);
		expect(text).toContain('/etc/kubernetes/cert/kubernetes-key.pem  mode 0600');
		expect(text).toContain('systemctl restart kube-apiserver');
		expect(text).toContain('etcdctl');
		expect(text).not.toMatch(/PRIVATE KEY/);
	});

	test('after an apply, plan shows the binaries with hashes and the recorded progress, and holds no secret', async () => {
		const {engine, stateDir} = setup();
		await (await engine()).engine.apply({confirm: true});
		const text = formatPlan(await (await engine()).engine.plan());
		expect(text).toMatch(/write \/opt\/k8s\/bin\/v1\.28\.7\/kube-apiserver {2}mode 0755 .* sha256 [a-f\d]{16}/);
		expect(text).toContain('point /opt/k8s/bin/kube-apiserver, /opt/k8s/bin/kubectl at v1.28.7/ (ln -s, mv -T)');
		expect(text).toContain('point /opt/k8s/bin/kube-controller-manager, /opt/k8s/bin/kube-scheduler at v1.28.7/ (ln -s, mv -T)');
		expect(text).toContain('recorded done');
		const key = readFileSync(path.join(stateDir, 'kubernetes', 'pki', 'encryption.key'), 'utf8').trim();
		expect(text).not.toContain(key);
	});
});

describe('plan of a change', () => {
	test('an unchanged cluster: nothing to change (exit 0); a flag and a hand-edited kube-nginx.conf: diffs, restarts and reload, one read per master (exit 3), then applied', async () => {
		const {cluster, engine, configFile, tarball} = setup();
		await (await engine()).engine.apply({confirm: true});
		const unchanged = await (await engine()).engine.plan();
		expect(unchanged.run.title).toBe('Apply changes');
		expect(unchanged.changes?.read).toBe(true);
		expect(planChanges(unchanged)).toBe(false);
		expect(formatPlan(unchanged)).toContain('Restarts: none');
		// No step is said to run again: the snapshot's check now says "no release change" where the install's said "first install".
		expect(unchanged.steps.flatMap(step => step.hosts.filter(host => host.inputsChanged).map(host => `${step.id} ${host.host}`))).toEqual([]);
		expect(formatPlan(unchanged)).not.toContain('runs again');

		writeConfig(path.dirname(configFile), {...baseConfig(tarball), extraFlags: {'kube-apiserver': ['--event-ttl=170h']}});
		const nginx = '/opt/k8s/kube-nginx/conf/kube-nginx.conf';
		const edited = hostFile(cluster, ips[1]!, nginx)!.content.toString().replace(/^\s*server 172\.24\.8\.73:6443.*\n/m, '');
		cluster.hosts.get(ips[1]!)!.files.set(nginx, {content: Buffer.from(edited), mode: 0o600, owner: 'root'});
		const before = cluster.calls.length;
		const plan = await (await engine()).engine.plan();
		const reads = cluster.calls.slice(before).filter(call => call.command === 'ssh' && /for k8smi_file in /.test(call.args.at(-1) ?? ''));
		expect(reads).toHaveLength(3);
		expect(planChanges(plan)).toBe(true);
		const text = formatPlan(plan);
		expect(text).toMatch(/^Apply changes: plan for cluster kubernetes/);
		expect(text).toContain('+  --event-ttl=170h');
		expect(text).toMatch(/~ \/opt\/k8s\/kube-nginx\/conf\/kube-nginx\.conf {2}\[units\] {2}\(changed on the master by hand/);
		expect(text).toMatch(/\+\s*server 172\.24\.8\.73:6443/);
		expect(text).toContain('Restarts, one master at a time (k8smaster01, then k8smaster02, then k8smaster03; the others keep serving):');
		expect(text).toContain('restart kube-apiserver (a file it reads changed: /etc/systemd/system/kube-apiserver.service)');
		// The apiserver's unit is an input of start, not of the controller-managers' and schedulers' start.
		const changedSteps = (id: string) => plan.steps.find(step => step.id === id)!.hosts.filter(host => host.inputsChanged).map(host => host.host);
		expect(changedSteps('start')).toEqual(['k8smaster01', 'k8smaster02', 'k8smaster03']);
		expect(changedSteps('start-controllers')).toEqual([]);
		expect(text).toContain('reload kube-nginx (a file it reads differs on the master from what this install wrote: /opt/k8s/kube-nginx/conf/kube-nginx.conf)');
		expect(text).toMatch(/k8smaster01: expected about [\d.]+ m?s \(its last restart, of kube-apiserver, kube-nginx, kube-controller-manager, kube-scheduler/);
		// JSON carries the same: the diffs, the hashes, never a secret's content.
		const json = JSON.stringify(plan);
		expect(plan.changes!.hosts[1]!.files.map(file => file.path)).toEqual(['/etc/systemd/system/kube-apiserver.service', nginx]);
		expect(json).not.toMatch(/PRIVATE KEY/);

		const applied = await engine({overwrite: true});
		await applied.engine.apply({confirm: true});
		expect(applied.events.find(event => event.type === 'run-start')).toMatchObject({kind: 'apply-changes', title: 'Apply changes', masters: ['k8smaster01', 'k8smaster02', 'k8smaster03']});
		// The last line names the run for what it was, not as an install.
		expect(applied.events.find(event => event.type === 'finished')).toMatchObject({outcome: 'done', message: 'changes applied on 3 master(s)'});
		expect(planChanges(await (await engine()).engine.plan())).toBe(false);
		// Applied again, only the checks run: the last line says nothing changed.
		const again = await engine();
		await again.engine.apply({confirm: true});
		expect(again.events.find(event => event.type === 'finished')).toMatchObject({outcome: 'done', message: 'nothing to change: 3 master(s) already as configured, and ready'});
		// Nothing restarted: the controller-managers' and schedulers' readiness came with start's read of each master.
		const asked = (events: EngineEvent[], step: string) => events.filter(event => event.type === 'command-start' && event.step === step).map(event => (event as {host?: string}).host);
		expect(asked(again.events, 'start')).toEqual([]);
		expect(asked(again.events, 'start-controllers')).toEqual([]);
		// After an apiserver restart they are asked again: a restart anywhere may change what they answer.
		expect(asked(applied.events, 'start-controllers').sort()).toEqual(['k8smaster01', 'k8smaster02', 'k8smaster03']);
		// verify: one round trip per master, its readiness reads in it, after a restart; when nothing restarted, none:
		// start's read of each master carried what verify reads there.
		const verifyReads = (events: EngineEvent[]) => events.filter(event => event.type === 'command-start' && event.step === 'verify' && /^ssh \S+ read listening ports/.test(event.display)).map(event => (event as {display: string}).display);
		expect(verifyReads(applied.events)).toHaveLength(3);
		expect(verifyReads(applied.events).every(display => /read listening ports.*; GET 127\.0\.0\.1:8443\/readyz\?verbose, 127\.0\.0\.1:10257\/healthz, 127\.0\.0\.1:10259\/healthz on the master/.test(display))).toBe(true);
		expect(verifyReads(again.events)).toEqual([]);
		expect(again.events.filter(event => event.type === 'command-start' && event.step === 'preflight' && /NeedDaemonReload.*read listening ports/.test(event.display))).toHaveLength(3);
		expect(again.events.filter(event => event.type === 'check' && event.step === 'verify' && event.check === 'via kube-nginx').map(event => event.type === 'check' && event.detail)).toEqual(Array.from({length: 3}, () => expect.stringMatching(/^127\.0\.0\.1:8443\/readyz\?verbose: /)));
		expect(again.events.filter(event => event.type === 'check' && event.level === 'fail')).toEqual([]);
	});

	test('a master that cannot be read is shown unread with the reason, the others still read (--exit-code: 1); one given to skip is not contacted', async () => {
		const {cluster, engine} = setup();
		await (await engine()).engine.apply({confirm: true});
		cluster.hosts.get(ips[2]!)!.reachable = false;
		const plan = await (await engine()).engine.plan();
		expect(plan.changes!.hosts.map(host => host.unread === undefined)).toEqual([true, true, false]);
		expect(plan.changes!.hosts[2]!.unread).toMatch(/^172\.24\.8\.73: /);
		expect(formatPlan(plan)).toMatch(/^k8smaster03: not read \(172\.24\.8\.73: .*\): what apply would change there is not known$/m);
		expect(formatPlan(plan)).toContain('k8smaster01: no file differs');
		expect(planExitCode(plan)).toBe(1);

		cluster.hosts.get(ips[2]!)!.reachable = true;
		const before = cluster.calls.length;
		const skipped = await (await engine()).engine.plan(undefined, {skipHosts: ['k8smaster03']});
		expect(cluster.calls.slice(before).filter(call => call.args.includes(ips[2]!))).toEqual([]);
		expect(skipped.changes!.hosts[2]).toMatchObject({host: 'k8smaster03', unread: 'left out with --skip, not contacted'});
	});

	test('from a state folder without binaries/ (CI), the binaries are compared with the recorded hashes: no drift is exit 0; a replaced binary is named', async () => {
		const {cluster, engine, stateDir} = setup();
		await (await engine()).engine.apply({confirm: true});
		rmSync(path.join(stateDir, 'kubernetes', 'binaries'), {recursive: true, force: true});
		const unchanged = await (await engine()).engine.plan();
		// The units run the release's folder's binaries: the paths pending are those.
		expect(unchanged.changes!.binariesPending!.paths).toContain('/opt/k8s/bin/v1.28.7/kube-apiserver');
		expect(unchanged.changes!.hosts.map(host => [host.files, host.services])).toEqual(ips.map(() => [[], []]));
		expect(formatPlan(unchanged)).toContain('binaries: compared with the sha256 this install recorded on each master');
		expect(planExitCode(unchanged)).toBe(0);

		const scheduler = '/opt/k8s/bin/v1.28.7/kube-scheduler';
		cluster.hosts.get(ips[0]!)!.files.set(scheduler, {content: elfExecutable('replaced\n'), mode: 0o755, owner: 'root'});
		const plan = await (await engine()).engine.plan();
		expect(plan.changes!.hosts[0]!.files.map(file => file.path)).toEqual([scheduler]);
		expect(plan.changes!.hosts[0]!.services).toEqual([{name: 'kube-scheduler', action: 'restart', reason: 'a file it reads differs on the master from what this install wrote', files: [scheduler]}]);
		expect(planExitCode(plan)).toBe(3);
	});

	test('binDir\'s links are read in the same round trip: one naming another release is a change; a binary not in the release folder yet replaces the linked release', async () => {
		const {cluster, engine} = setup();
		await (await engine()).engine.apply({confirm: true});
		// A link switched back (by hand, or a run stopped before the switch); an upgrade's empty folder.
		cluster.hosts.get(ips[1]!)!.files.set('/opt/k8s/bin/kube-apiserver', {content: Buffer.from(''), mode: 0o777, owner: 'root', link: 'v1.28.6/kube-apiserver'});
		cluster.hosts.get(ips[2]!)!.files.delete('/opt/k8s/bin/v1.28.7/kube-controller-manager');
		cluster.hosts.get(ips[2]!)!.files.set('/opt/k8s/bin/kube-controller-manager', {content: Buffer.from(''), mode: 0o777, owner: 'root', link: 'v1.28.6/kube-controller-manager'});
		const before = cluster.calls.length;
		const plan = await (await engine()).engine.plan();
		const reads = cluster.calls.slice(before).filter(call => call.command === 'ssh' && /for k8smi_file in /.test(call.args.at(-1) ?? ''));
		expect(reads).toHaveLength(3);
		expect(reads[0]!.args.at(-1)).toContain(' /opt/k8s/bin/kube-apiserver ');
		expect(plan.changes!.hosts[0]!.files).toEqual([]);
		expect(plan.changes!.hosts[1]!.files.map(file => file.path)).toEqual(['/opt/k8s/bin/kube-apiserver']);
		// No unit reads the link: switching it restarts nothing.
		expect(plan.changes!.hosts[1]!.services).toEqual([]);
		const text = formatPlan(plan);
		// v1.28.6 is no release this install wrote there: apply asks before it switches the link.
		expect(text).toMatch(/~ \/opt\/k8s\/bin\/kube-apiserver {2}\[binaries\] {2}\(changed on the master by hand[^\n]*\n\s+kube-apiserver v1\.28\.6 → v1\.28\.7\n\s+link v1\.28\.6\/kube-apiserver → v1\.28\.7\/kube-apiserver/);
		expect(text).toMatch(/\+ \/opt\/k8s\/bin\/v1\.28\.7\/kube-controller-manager {2}\[controller-binaries\]\n\s+kube-controller-manager v1\.28\.6 → v1\.28\.7, /);
		expect(planExitCode(plan)).toBe(3);
	});
});

describe('secrets', () => {
	test('no log line, state file or event holds the encryption key or private key material', async () => {
		const {engine, stateDir, logFile, cluster} = setup();
		const {engine: instance, events} = await engine();
		await instance.apply({confirm: true});
		const key = readFileSync(path.join(stateDir, 'kubernetes', 'pki', 'encryption.key'), 'utf8').trim();
		const haystacks = [readFileSync(logFile, 'utf8'), readFileSync(path.join(stateDir, 'kubernetes', 'state.json'), 'utf8'), JSON.stringify(events)];
		for (const text of haystacks) {
			expect(text).not.toContain(key);
			expect(text).not.toMatch(/PRIVATE KEY-----\s*\n?[A-Za-z\d+/]/);
		}

		// What an operator sees too: the plan (text and JSON), status, and a verify run.
		const plan = await (await engine()).engine.plan();
		haystacks.push(formatPlan(plan), JSON.stringify(plan), formatStatus(instance.state.snapshot, instance.state.path, []));
		const verify = await engine();
		expect(await verify.engine.verify()).toBe(true);
		haystacks.push(JSON.stringify(verify.events));

		const pki = path.join(stateDir, 'kubernetes', 'pki');
		const privateKeys = readdirSync(pki).filter(file => file.endsWith('-key.pem') || file === 'sa.key');
		expect(privateKeys).toHaveLength(7);
		for (const file of privateKeys) {
			const pem = readFileSync(path.join(pki, file), 'utf8');
			const body = pem.split('\n')[1]!.trim();
			expect(body.length).toBeGreaterThan(40);
			for (const text of haystacks) {
				expect(text).not.toContain(body);
				// Kubeconfigs carry keys base64-encoded.
				expect(text).not.toContain(Buffer.from(pem).toString('base64').slice(0, 60));
			}
		}

		for (const text of haystacks) {
			expect(text).not.toContain(key);
		}

		// 0600 here for every secret (0700 folders), and on every master.
		const mode = (file: string) => statSync(file).mode & 0o777;
		for (const file of [...privateKeys.map(name => path.join(pki, name)), path.join(pki, 'encryption.key'), path.join(stateDir, 'kubernetes', 'state.json'), path.join(stateDir, 'kubernetes', 'rendered', 'admin.kubeconfig')]) {
			expect(mode(file), file).toBe(0o600);
		}

		expect(mode(pki)).toBe(0o700);
		for (const ip of ips) {
			for (const [file, facts] of cluster.hosts.get(ip)!.files) {
				if (/key|encryption-config|kubeconfig/.test(file)) {
					expect(facts.mode, `${ip}:${file}`).toBe(0o600);
				}
			}
		}
	});
});

describe('several encryption keys', () => {
	test('every key is a secret: the masters get them in the recorded order, the state, the log and status only names and hashes', async () => {
		const {engine, stateDir, logFile, configFile, cluster} = setup();
		const first = await engine();
		await first.engine.apply({confirm: true});
		const workspace = new Workspace(stateDir, 'kubernetes');
		const key1 = readFileSync(workspace.pki('encryption.key'), 'utf8').trim();
		const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');
		const status = (instance: Engine) => formatStatus(instance.state.snapshot, instance.state.path, []);
		expect(status(first.engine)).toMatch(new RegExp(`^CA sha256 [a-f\\d]{16}…, encryption key sha256 ${sha256(key1).slice(0, 16)}…$`, 'm'));

		// What the first phase of a rotation records: a new key after the one that still writes.
		const key2 = stageEncryptionKey(workspace);
		const runner = new Runner({executor: cluster.executor, logFile});
		const instance = new Engine({config: await loadConfig(configFile), workspace, runner, prompter: headlessPrompter({yes: true, overwrite: false}), probe: cluster.probe, api: cluster.api});
		const events: EngineEvent[] = [];
		instance.subscribe(event => events.push(event));
		instance.state.update(state => {
			state.material!.encryptionKeys.push({name: 'key2', sha256: sha256(key2.secret)});
		});
		await instance.apply({confirm: false});
		for (const ip of ips) {
			const parsed = YAML.parse(hostFile(cluster, ip, '/etc/kubernetes/encryption-config.yaml')!.content.toString());
			expect(parsed.resources[0].providers[0].aescbc.keys, ip).toEqual([{name: 'key1', secret: key1}, key2]);
		}

		expect(runner.redact(`a ${key1} b ${key2.secret} c`)).toBe('a [secret] b [secret] c');
		const state = readFileSync(path.join(stateDir, 'kubernetes', 'state.json'), 'utf8');
		expect(JSON.parse(state).material.encryptionKeys).toEqual([{name: 'key1', sha256: sha256(key1)}, {name: 'key2', sha256: sha256(key2.secret)}]);
		expect(status(instance)).toContain(`encryption key sha256 ${sha256(key1).slice(0, 16)}… (key1 writes; 2 keys: key1, key2)`);
		for (const text of [state, readFileSync(logFile, 'utf8'), JSON.stringify(events), status(instance), formatPlan(await instance.plan())]) {
			expect(text).not.toContain(key1);
			expect(text).not.toContain(key2.secret);
		}
	});
});

describe('skipping a host', () => {
	test('a master can be left out of a run; it is installed by the next apply', async () => {
		const {cluster, engine} = setup();
		cluster.hosts.get('172.24.8.73')!.reachable = false;
		const {engine: instance, events} = await engine();
		await instance.apply({confirm: true, skipHosts: ['k8smaster03']});
		expect(cluster.hosts.get('172.24.8.71')!.active).toBe(true);
		expect(cluster.calls.some(call => call.args.includes('172.24.8.73'))).toBe(false);
		expect(instance.state.snapshot.run).toMatchObject({status: 'failed', error: 'skipped on request: k8smaster03'});
		expect(events.at(-1)).toMatchObject({type: 'finished', outcome: 'done'});
		cluster.hosts.get('172.24.8.73')!.reachable = true;
		await (await engine()).engine.apply({confirm: true});
		expect(cluster.hosts.get('172.24.8.73')!.active).toBe(true);
	});

	test('a master left out is not asked even when it answers: the cluster checks go through another', async () => {
		const {cluster, engine} = setup();
		await (await engine()).engine.apply({confirm: true});
		const from = cluster.calls.length;
		await (await engine()).engine.apply({confirm: true, skipHosts: ['k8smaster01']});
		expect(cluster.calls.slice(from).filter(call => call.args.includes('172.24.8.71'))).toEqual([]);
		expect(cluster.calls.slice(from).some(call => call.step === 'verify' && call.args.includes('172.24.8.72') && (call.args.at(-1) ?? '').includes('--print-value-only'))).toBe(true);
	});

	test('skipping every master, or one that does not exist, is refused', async () => {
		const {engine} = setup();
		await expect((await engine()).engine.apply({confirm: true, skipHosts: ['k8smaster01', 'k8smaster02', 'k8smaster03']})).rejects.toThrow(/would skip every master/);
		await expect((await engine()).engine.apply({confirm: true, skipHosts: ['k8smaster09']})).rejects.toThrow(/names no master/);
	});
});

describe('a tarball\'s binaries are what they claim', () => {
	test('a binary that is a link in the tarball is refused naming the member; nothing is sent', async () => {
		const {dir, stateDir} = makeFixture('v1.28.7');
		const bin = path.join(dir, 'src', 'kubernetes', 'server', 'bin');
		rmSync(path.join(bin, 'kube-apiserver'));
		symlinkSync('/etc/hostname', path.join(bin, 'kube-apiserver'));
		const tarball = path.join(dir, 'linked.tar.gz');
		execFileSync('tar', ['-czf', tarball, '-C', path.join(dir, 'src'), 'kubernetes']);
		const config = await loadConfig(writeConfig(dir, baseConfig(tarball)));
		const cluster = new FakeCluster(ips);
		const engine = fakeEngine(cluster, config, stateDir);
		await expect(engine.apply({confirm: true})).rejects.toThrow(/binaries\.tarball: holds kubernetes\/server\/bin\/kube-apiserver as a symbolic link \(to \/etc\/hostname\); only regular files are taken as binaries/);
		expect(cluster.uploads()).toEqual([]);
		// Nothing of the tarball is kept: no binaries, no half-written folder.
		expect(readdirSync(path.join(stateDir, 'kubernetes', 'binaries'))).toEqual([]);
	});
});
