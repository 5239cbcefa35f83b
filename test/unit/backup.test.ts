import {execFileSync} from 'node:child_process';
import {createHash} from 'node:crypto';
import {existsSync, readdirSync, readFileSync, statSync, writeFileSync} from 'node:fs';
import path from 'node:path';
import {describe, expect, test, vi} from 'vitest';
import {reportError, runCommand, type Flags} from '../../source/commands.js';
import {loadConfig} from '../../source/config/load.js';
import {ApplyFailed, StopRequested} from '../../source/engine/engine.js';
import type {EngineEvent} from '../../source/engine/events.js';
import {formatPlan} from '../../source/reporters/format.js';
import {formatSnapshots} from '../../source/reporters/snapshots.js';
import {Runner, execaExecutor} from '../../source/runner.js';
import type {BackupOptions} from '../../source/steps/types.js';
import {FakeCluster} from '../helpers/fake-hosts.js';
import {baseConfig, makeFixture, writeConfig} from '../helpers/fixture.js';
import {fakeEngine} from '../helpers/engine.js';

const ips = ['172.24.8.71', '172.24.8.72', '172.24.8.73'];
/** One single-quoted shell word, as shellQuote wrote it, back to its text. */
const unquoted = (word: string) => word.slice(1, -1).replaceAll('\'\\\'\'', '\'');
const sha256 = (content: Buffer) => createHash('sha256').update(content).digest('hex');

/** One fake cluster and one state folder; release switches the config to another release's tarball. */
function setup() {
	const cluster = new FakeCluster(ips);
	const {dir, stateDir} = makeFixture('v1.28.7');
	const configFile = path.join(dir, 'cluster.yaml');
	const release = (version: string) => writeConfig(dir, baseConfig(makeFixture(version).tarball, version));
	release('v1.28.7');
	const logFile = path.join(dir, 'run.jsonl');
	const engine = async (backup: BackupOptions = {}) => {
		const config = await loadConfig(configFile);
		const events: EngineEvent[] = [];
		const instance = fakeEngine(cluster, config, stateDir, {runner: new Runner({executor: cluster.executor, logFile}), backup});
		instance.subscribe(event => events.push(event));
		return {engine: instance, events};
	};

	const snapshotCalls = () => cluster.calls.filter(call => call.step === 'snapshot');
	/** Every file or folder left on the masters by a snapshot. */
	const leftOnMasters = () => [...cluster.hosts.values()].flatMap(host => [...host.files.keys(), ...host.folders.keys()].filter(file => file.includes('k8smi-snapshot-')));
	const snapshotsDir = path.join(stateDir, 'kubernetes', 'snapshots');
	return {cluster, dir, stateDir, configFile, release, engine, logFile, snapshotCalls, leftOnMasters, snapshotsDir};
}

function flags(configFile: string, stateDir: string, more: Partial<Flags> = {}): Flags {
	return {config: configFile, stateDir, yes: true, overwrite: false, json: false, verbose: false, kubeVersion: 'v1.14.2', tarball: '', force: false, removeLocal: false, ...more};
}

describe('backup', () => {
	test('the plan: etcdctl snapshot save from one member under umask 077, status, sha256, the copy here, the folder removed', async () => {
		const {engine} = setup();
		const {engine: instance} = await engine();
		const {backup} = await import('../../source/operations/index.js');
		const plan = await instance.plan(backup);
		expect(plan.steps.map(step => [step.id, step.scope, step.hosts.map(host => host.host)])).toEqual([['snapshot', 'cluster', ['cluster (via k8smaster01)']]]);
		const text = formatPlan(plan);
		expect(text).toContain('umask 077; etcdctl snapshot save /var/tmp/k8smi-snapshot-<random>/etcd.db from one member; etcdctl snapshot status -w json; sha256sum');
		expect(text).toMatch(/cat the snapshot into \S+\/kubernetes\/snapshots\/kubernetes-<UTC time>\.db \(0600 here\), its sha256 checked/);
		expect(text).toContain('rm -rf /var/tmp/k8smi-snapshot-<random> (also after a failure)');
	});

	test('a snapshot lands in the state folder with mode 0600, its sha256 the master\'s; the master keeps nothing; the state records it', async () => {
		const {cluster, engine, snapshotCalls, leftOnMasters, snapshotsDir, logFile} = setup();
		const {engine: instance, events} = await engine();
		await instance.backup();

		const [file, ...others] = readdirSync(snapshotsDir);
		expect(others).toEqual([]);
		expect(file).toMatch(/^kubernetes-\d{8}T\d{6}Z\.db$/);
		const local = path.join(snapshotsDir, file!);
		expect(statSync(local).mode & 0o777).toBe(0o600);
		expect(statSync(snapshotsDir).mode & 0o777).toBe(0o700);
		expect(readFileSync(local).equals(cluster.snapshotBytes)).toBe(true);

		// Made on the first master, in a new 0700 folder under umask 077, from its own member first.
		const [save, copy, remove] = snapshotCalls();
		expect(save!.args).toContain('172.24.8.71');
		const script = save!.args.at(-1)!;
		expect(script).toMatch(/^sh -c 'umask 077\n/);
		expect(script).toContain('mkdir -m 700 -- /var/tmp/k8smi-snapshot-');
		expect(script.indexOf('--endpoints=https://172.24.8.71:2379')).toBeLessThan(script.indexOf('--endpoints=https://172.24.8.72:2379'));
		expect(script).toContain('--cert=/etc/kubernetes/cert/kubernetes.pem');
		// What the master's sh reads: the script parses.
		execFileSync('sh', ['-n', '-c', unquoted(script.slice('sh -c '.length))]);
		expect(copy!.outputFile).toMatch(/\.partial$/);
		expect(remove!.args.at(-1)).toMatch(/rm -rf -- \/var\/tmp\/k8smi-snapshot-[\da-f]{12}/);
		expect(leftOnMasters()).toEqual([]);
		expect(readdirSync(snapshotsDir).some(name => name.endsWith('.partial'))).toBe(false);

		expect(instance.state.snapshot.snapshots).toEqual([{path: local, sha256: sha256(cluster.snapshotBytes), at: expect.any(String), revision: 42, keys: 7, bytes: cluster.snapshotBytes.length, master: 'k8smaster01', occasion: 'on request'}]);
		// Nothing of it recorded as progress, and its content nowhere in the state or the log.
		expect(Object.keys(instance.state.snapshot.steps)).toEqual([]);
		expect(readFileSync(logFile, 'utf8')).not.toContain('etcd snapshot\n');
		expect(events.at(-1)).toMatchObject({type: 'finished', outcome: 'done', message: 'etcd snapshot taken'});
		expect(events.find(event => event.type === 'host-done')).toMatchObject({step: 'snapshot', host: 'cluster', outcome: 'done', detail: expect.stringMatching(/^snapshot on request: \S+\.db \(0\.0 MiB, revision 42, 7 keys, sha256 [\da-f]{16}…\)$/)});
		expect(formatSnapshots(instance.state.snapshot.snapshots)).toEqual(['etcd snapshots (1, oldest first):', expect.stringMatching(new RegExp(`^  \\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\dZ  revision 42  7 keys  ${cluster.snapshotBytes.length} B  ${local}  \\(on request, through k8smaster01\\)$`))]);
	});

	test('a second snapshot within the same second gets the next number: none replaces another', async () => {
		const {engine, snapshotsDir} = setup();
		vi.useFakeTimers({toFake: ['Date']});
		vi.setSystemTime(new Date('2026-12-05T12:18:30.100Z'));
		try {
			await (await engine()).engine.backup();
			await (await engine()).engine.backup();
		} finally {
			vi.useRealTimers();
		}

		expect(readdirSync(snapshotsDir).sort()).toEqual(['kubernetes-20261205T121830Z-2.db', 'kubernetes-20261205T121830Z.db']);
	});

	test('a stop asked while the snapshot is made: nothing kept here, nothing left on the master', async () => {
		const {cluster, engine, leftOnMasters, snapshotsDir} = setup();
		const {engine: instance} = await engine();
		cluster.beforeCommand = spec => {
			if (spec.args.at(-1)!.includes(' snapshot save ')) {
				instance.requestStop();
			}
		};

		await expect(instance.backup()).rejects.toBeInstanceOf(StopRequested);
		expect(readdirSync(snapshotsDir)).toEqual([]);
		expect(leftOnMasters()).toEqual([]);
		expect(instance.state.snapshot.snapshots).toBeUndefined();
	});

	test('through the next master when the first cannot be reached', async () => {
		const {cluster, engine, snapshotsDir} = setup();
		cluster.hosts.get(ips[0]!)!.reachable = false;
		const {engine: instance} = await engine();
		await instance.backup();
		expect(readdirSync(snapshotsDir)).toHaveLength(1);
		expect(instance.state.snapshot.snapshots?.[0]).toMatchObject({master: 'k8smaster02'});
	});

	test('a copy whose sha256 differs from the master\'s is discarded, the master\'s removed, nothing recorded', async () => {
		const {cluster, engine, leftOnMasters, snapshotsDir} = setup();
		cluster.corruptSnapshotCopy = true;
		const {engine: instance, events} = await engine();
		await expect(instance.backup()).rejects.toBeInstanceOf(ApplyFailed);
		expect(readdirSync(snapshotsDir)).toEqual([]);
		expect(leftOnMasters()).toEqual([]);
		expect(instance.state.snapshot.snapshots).toBeUndefined();
		const failures = events.flatMap(event => (event.type === 'host-done' && event.failure ? [event.failure] : []));
		expect(failures.at(-1)?.message).toMatch(/the copy's sha256 is [\da-f]{64}, the snapshot's on k8smaster03 is [\da-f]{64}: the copy was discarded/);
		expect(events.at(-1)).toMatchObject({type: 'finished', outcome: 'failed'});
	});

	test('--out writes elsewhere and refuses a file that exists (exit 2, the file untouched)', async () => {
		const {cluster, dir, stateDir, configFile, engine, snapshotCalls, snapshotsDir} = setup();
		const out = path.join(dir, 'before-change.db');
		const {engine: instance} = await engine({out});
		await instance.backup();
		expect(readFileSync(out).equals(cluster.snapshotBytes)).toBe(true);
		expect(statSync(out).mode & 0o777).toBe(0o600);
		expect(existsSync(snapshotsDir)).toBe(false);
		expect(instance.state.snapshot.snapshots).toEqual([expect.objectContaining({path: out})]);

		const errors: string[] = [];
		const calls = snapshotCalls().length;
		writeFileSync(out, 'kept');
		expect(await runCommand('backup', flags(configFile, stateDir, {out}), {out: () => undefined, err: line => errors.push(line)})).toBe(2);
		expect(errors).toEqual([`error: --out: already exists (got ${out}). Fix: choose a file that does not exist yet; backup never replaces one`]);
		expect(readFileSync(out, 'utf8')).toBe('kept');
		expect(snapshotCalls()).toHaveLength(calls);
	});

	test('--no-backup makes backup do nothing: refused', async () => {
		const {configFile, stateDir} = setup();
		const errors: string[] = [];
		expect(await runCommand('backup', flags(configFile, stateDir, {noBackup: true}), {out: () => undefined, err: line => errors.push(line)})).toBe(2);
		expect(errors[0]).toMatch(/^error: --no-backup: leaves backup nothing to do/);
	});
});

describe('a snapshot before a risky change', () => {
	test('reset takes a snapshot before it stops anything', async () => {
		const {cluster, engine, snapshotsDir} = setup();
		await (await engine()).engine.apply({confirm: true});
		const {engine: instance, events} = await engine();
		const first = cluster.calls.length;
		await instance.reset({confirm: true});
		const calls = cluster.calls.slice(first).filter(call => call.command === 'ssh' && !call.args.includes('-O'));
		expect(calls[0]!.step).toBe('snapshot');
		const stopped = calls.findIndex(call => call.args.at(-1)!.includes('systemctl stop'));
		expect(calls.findLastIndex(call => call.step === 'snapshot')).toBeLessThan(stopped);
		expect(readdirSync(snapshotsDir)).toHaveLength(1);
		expect(instance.state.snapshot.snapshots).toEqual([expect.objectContaining({occasion: 'before reset'})]);
		expect(events.filter(event => event.type === 'step-start').map(event => event.type === 'step-start' && event.step)).toEqual(['snapshot', 'reset']);
	});

	test('a failed snapshot stops reset before anything is changed, naming the fix or --no-backup', async () => {
		const {cluster, engine} = setup();
		await (await engine()).engine.apply({confirm: true});
		cluster.snapshotFailure = 'Error: context deadline exceeded';
		const {engine: instance, events} = await engine();
		await expect(instance.reset({confirm: true})).rejects.toThrow(/^snapshot failed on k8smaster03$/);
		expect(ips.map(ip => cluster.hosts.get(ip)!.active)).toEqual([true, true, true]);
		expect(events.find(event => event.type === 'finished')).toMatchObject({outcome: 'failed', message: 'snapshot failed on k8smaster03: nothing was changed on the masters'});
		const failure = events.flatMap(event => (event.type === 'host-done' && event.failure ? [event.failure] : [])).at(-1);
		expect(failure?.fix).toMatch(/no etcd member gave k8smaster03 a snapshot .*or pass --no-backup to go on without a snapshot$/);

		// The CLI's last line says the same, with exit 1.
		const errors: string[] = [];
		expect(reportError(new ApplyFailed('snapshot', [failure!]), {out: () => undefined, err: line => errors.push(line)})).toBe(1);
		expect(errors).toEqual([expect.stringMatching(/^error: snapshot failed on k8smaster03\. Nothing was changed on the masters\. Fix: no etcd member gave k8smaster03 a snapshot .*--no-backup to go on without a snapshot\.$/)]);
	});

	test('--no-backup: reset goes on without a snapshot, with a warning', async () => {
		const {cluster, engine, snapshotCalls} = setup();
		await (await engine()).engine.apply({confirm: true});
		const {engine: instance, events} = await engine({skip: true});
		await instance.reset({confirm: true});
		expect(snapshotCalls()).toEqual([]);
		expect(events).toContainEqual({type: 'warning', message: 'no etcd snapshot taken before reset (--no-backup): if this run goes wrong, only a snapshot taken earlier can bring etcd back'});
		expect(ips.map(ip => cluster.hosts.get(ip)!.active)).toEqual([false, false, false]);
	});

	test('reset --remove-local would delete its own snapshot: refused unless --out or --no-backup', async () => {
		const {cluster, engine, dir} = setup();
		await (await engine()).engine.apply({confirm: true});
		await expect((await engine()).engine.reset({confirm: true, removeLocal: true})).rejects.toThrow(/^--remove-local: would delete the snapshot reset takes first/);
		expect(ips.map(ip => cluster.hosts.get(ip)!.active)).toEqual([true, true, true]);
		const out = path.join(dir, 'last.db');
		await (await engine({out})).engine.reset({confirm: true, removeLocal: true});
		expect(readFileSync(out).equals(cluster.snapshotBytes)).toBe(true);
	});

	test('an upgrade takes a snapshot among its checks, before any file changes; a first install and a re-apply take none', async () => {
		const {cluster, engine, release, snapshotCalls, snapshotsDir} = setup();
		release('v1.28.6');
		const install = await engine();
		await install.engine.apply({confirm: true});
		expect(snapshotCalls()).toEqual([]);
		expect(install.events.find(event => event.type === 'host-done' && event.step === 'snapshot')).toMatchObject({outcome: 'skipped', detail: 'no snapshot: first install: etcd holds nothing of this install yet'});
		await (await engine()).engine.apply({confirm: true});
		expect(snapshotCalls()).toEqual([]);

		release('v1.28.7');
		const plan = await (await engine()).engine.plan();
		expect(plan.steps.find(step => step.id === 'snapshot')?.hosts[0]?.actions[0]).toMatchObject({kind: 'remote', command: expect.stringMatching(/^before the upgrade v1\.28\.6 → v1\.28\.7: umask 077; etcdctl snapshot save/)});
		const first = cluster.calls.length;
		const upgrade = await engine();
		await upgrade.engine.apply({confirm: true});
		const calls = cluster.calls.slice(first);
		const lastSnapshot = calls.findLastIndex(call => call.step === 'snapshot');
		expect(lastSnapshot).toBeGreaterThan(0);
		expect(calls.findIndex(call => call.step === 'binaries' || call.step === 'certs' || /(cat|head -c \d+|gzip -dc) > /.test(call.args.at(-1) ?? ''))).toBeGreaterThan(lastSnapshot);
		expect(upgrade.engine.state.snapshot.snapshots).toEqual([expect.objectContaining({occasion: 'before the upgrade v1.28.6 → v1.28.7'})]);
		expect(readdirSync(snapshotsDir)).toHaveLength(1);
	});

	test('a failed snapshot stops the upgrade before any master changes; --no-backup goes on with a warning', async () => {
		const {cluster, engine, release, snapshotCalls} = setup();
		release('v1.28.6');
		await (await engine()).engine.apply({confirm: true});
		release('v1.28.7');
		cluster.snapshotFailure = 'Error: context deadline exceeded';
		const first = cluster.calls.length;
		const upgrade = await engine();
		await expect(upgrade.engine.apply({confirm: true})).rejects.toThrow(/^snapshot failed on k8smaster03$/);
		expect(cluster.calls.slice(first).filter(call => call.step !== 'preflight' && call.step !== 'distinct-machines' && call.step !== 'snapshot' && call.command === 'ssh' && !call.args.includes('-O'))).toEqual([]);
		// The state still names the running release: the next apply is the same upgrade, snapshot first.
		expect(upgrade.engine.state.snapshot.version).toBe('v1.28.6');
		expect(ips.map(ip => cluster.hosts.get(ip)!.files.has('/opt/k8s/bin/v1.28.7/kube-apiserver'))).toEqual([false, false, false]);

		const calls = snapshotCalls().length;
		const skipping = await engine({skip: true});
		await skipping.engine.apply({confirm: true});
		expect(snapshotCalls()).toHaveLength(calls);
		expect(skipping.events).toContainEqual({type: 'warning', message: 'no etcd snapshot taken before the upgrade v1.28.6 → v1.28.7 (--no-backup): if this run goes wrong, only a snapshot taken earlier can bring etcd back'});
		expect(cluster.hosts.get(ips[0]!)!.files.get('/opt/k8s/bin/kube-apiserver')?.link).toBe('v1.28.7/kube-apiserver');
	});
});

describe('the runner\'s output file', () => {
	test('is 0600 from its creation, gets the command\'s bytes as they are, and is never replaced', async () => {
		const {dir} = makeFixture();
		const file = path.join(dir, 'out.bin');
		const runner = new Runner({executor: execaExecutor});
		const result = await runner.run({command: 'sh', args: ['-c', 'umask 000; printf \'\\000\\377\\376abc\''], outputFile: file});
		expect(result).toMatchObject({exitCode: 0, stdout: ''});
		expect(readFileSync(file)).toEqual(Buffer.from([0, 0xff, 0xfe, 0x61, 0x62, 0x63]));
		expect(statSync(file).mode & 0o777).toBe(0o600);
		await expect(runner.run({command: 'sh', args: ['-c', 'printf new'], outputFile: file})).rejects.toThrow(/EEXIST/);
		expect(readFileSync(file)).toEqual(Buffer.from([0, 0xff, 0xfe, 0x61, 0x62, 0x63]));
		expect(existsSync(`${file}.partial`)).toBe(false);
	});
});
