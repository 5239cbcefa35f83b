import {execFileSync} from 'node:child_process';
import {existsSync} from 'node:fs';
import path from 'node:path';
import {describe, expect, test} from 'vitest';
import {loadConfig} from '../../source/config/load.js';
import {Engine, StopRequested} from '../../source/engine/engine.js';
import type {EngineEvent} from '../../source/engine/events.js';
import {headlessPrompter} from '../../source/engine/prompts.js';
import {diagnoseAuthentication, duplicateMachines, factsScript, judgeFacts, parseFacts, type HostFacts} from '../../source/steps/preflight.js';
import {formatCheckGrid} from '../../source/reporters/format.js';
import {Runner, type CommandSpec} from '../../source/runner.js';
import {Workspace} from '../../source/workspace.js';
import {FakeCluster} from '../helpers/fake-hosts.js';
import {baseConfig, makeFixture, writeConfig} from '../helpers/fixture.js';
import {tempDir} from '../helpers/temp.js';
import {fakeEngine} from '../helpers/engine.js';

async function config(change: (raw: Record<string, any>) => void = () => undefined) {
	const {dir, tarball} = makeFixture();
	const raw = baseConfig(tarball);
	change(raw);
	return await loadConfig(writeConfig(dir, raw));
}

const healthy: HostFacts = {
	uid: '0', arch: 'x86_64', os: 'Debian GNU/Linux 12 (bookworm)', systemd: 'systemd 252 (252.38-1~deb12u1)', machine: 'a/b',
	nginx: 'nginx version: nginx/1.22.1', nginxstream: 'module',
	listening: [{port: 22, process: 'sshd'}], etcd: [{target: '172.24.8.71:2379', state: 'open'}],
};

describe('preflight', () => {
	test('the facts script runs under a real sh and its output parses', async () => {
		const output = execFileSync('sh', ['-c', factsScript(await config())], {encoding: 'utf8'});
		const facts = parseFacts(output);
		expect(facts.uid).toBe(String(process.getuid?.()));
		expect(facts.arch).toBe(execFileSync('uname', ['-m'], {encoding: 'utf8'}).trim());
		expect(Number(facts.timeNs! / 1_000_000n)).toBeGreaterThan(Date.now() - 10_000);
		expect(facts.etcd).toHaveLength(3);
		// This workstation has no nginx at /usr/sbin/nginx, or one: either way it is reported, not guessed.
		expect(facts.nginx).toBeDefined();
		// Nothing listens on the lab's addresses from here: each endpoint is reported, not guessed.
		expect(facts.etcd.every(entry => ['open', 'closed', 'untested'].includes(entry.state))).toBe(true);
	});

	test('a healthy master passes every check', async () => {
		const results = judgeFacts(await config(), healthy, 150);
		expect(results.filter(result => result.level !== 'pass')).toEqual([]);
		expect(results.map(result => result.check)).toEqual(['root', 'arch', 'nginx', 'systemd', 'port 6443', 'port 8443', 'port 10257', 'port 10259', 'clock', 'etcd 172.24.8.71:2379']);
	});

	test.each([
		['a non-root user', {uid: '1000'}, 'root', /ssh\.sudo: true/],
		['an arm64 master', {arch: 'aarch64'}, 'arch', /linux-amd64/],
		['no systemd', {systemd: ''}, 'systemd', /systemd unit/],
		['port 6443 held by another program', {listening: [{port: 6443, process: 'haproxy'}]}, 'port 6443', /stop what listens on 6443/],
		['an unreachable etcd', {etcd: [{target: '172.24.8.71:2379', state: 'closed'}]}, 'etcd 172.24.8.71:2379', /etcd\.endpoints/],
		['no nginx', {nginx: 'missing', nginxstream: undefined}, 'nginx', /apt install nginx libnginx-mod-stream.*or set nginx\.binary/],
		['nginx without the stream module', {nginxstream: 'missing'}, 'nginx', /nginx-mod-stream.*nginx\.streamModule/],
	])('%s fails with its fix', async (_, change, check, fix) => {
		const results = judgeFacts(await config(), {...healthy, ...change} as HostFacts, 0);
		const failed = results.filter(result => result.level === 'fail');
		expect(failed.map(result => result.check)).toEqual([check]);
		expect(failed[0]!.fix).toMatch(fix);
	});

	test('one etcd member of three out of reach warns (etcd still serves); two fail', async () => {
		const etcd = (closed: number) => ['71', '72', '73'].map((last, index) => ({target: `172.24.8.${last}:2379`, state: index < closed ? 'closed' : 'open'}));
		const one = judgeFacts(await config(), {...healthy, etcd: etcd(1)}, 0).filter(result => result.level !== 'pass');
		expect(one).toEqual([expect.objectContaining({check: 'etcd 172.24.8.71:2379', level: 'warn', detail: 'not reachable from this master; 2 of 3 are, enough for etcd to serve'})]);
		const two = judgeFacts(await config(), {...healthy, etcd: etcd(2)}, 0).filter(result => result.level !== 'pass');
		expect(two.map(result => result.level)).toEqual(['fail', 'fail']);
		expect(two[0]!.detail).toMatch(/only 1 of 3 are, less than a majority/);
	});

	test('our own apiserver on 6443 is fine; the clock warns past 2 s and fails past 60 s', async () => {
		expect(judgeFacts(await config(), {...healthy, listening: [{port: 6443, process: 'kube-apiserver'}]}, 0).find(result => result.check === 'port 6443')!.level).toBe('pass');
		expect(judgeFacts(await config(), healthy, 5000).find(result => result.check === 'clock')!.level).toBe('warn');
		expect(judgeFacts(await config(), healthy, -90_000).find(result => result.check === 'clock')).toMatchObject({level: 'fail', detail: '-90.0 s from this workstation'});
	});

	test('two addresses of one machine are found; cloned VMs (same machine-id, other boot) are not', () => {
		expect(duplicateMachines(new Map([['m1', 'id1/boot1'], ['m2', 'id1/boot1'], ['m3', 'id2/boot1']]))).toEqual([['m1', 'm2']]);
		expect(duplicateMachines(new Map([['m1', 'id1/boot1'], ['m2', 'id1/boot2']]))).toEqual([]);
	});

	/** k8smaster02's ssh destination is k8smaster01's machine: two addresses of one machine, as a copied line in the config would make. */
	async function oneMachineTwice(change: (cluster: FakeCluster) => void = () => undefined) {
		const {dir, tarball, stateDir} = makeFixture();
		const raw = baseConfig(tarball);
		raw.masters[1].sshHost = 'cp2';
		const loaded = await loadConfig(writeConfig(dir, raw));
		const cluster = new FakeCluster(['172.24.8.71', '172.24.8.72', '172.24.8.73']);
		cluster.sshHosts.set('cp2', '172.24.8.71');
		change(cluster);
		const engine = fakeEngine(cluster, loaded, stateDir);
		const events: EngineEvent[] = [];
		engine.subscribe(event => events.push(event));
		const keyMaterial = () => existsSync(path.join(stateDir, 'kubernetes', 'pki'));
		return {engine, events, cluster, keyMaterial};
	}

	const stepEvents = (events: EngineEvent[], step: string) => events.filter(event => 'step' in event && event.step === step);

	test('two masters that are one machine: found across masters once every master passed preflight, reported for the cluster; nothing is made or written', async () => {
		const {engine, events, cluster, keyMaterial} = await oneMachineTwice();
		await expect(engine.apply({confirm: true})).rejects.toThrow(/distinct-machines failed on k8smaster01, k8smaster02/);
		const start = events.findIndex(event => event.type === 'step-start' && event.step === 'distinct-machines');
		expect(events.slice(0, start).filter(event => event.type === 'host-done' && event.step === 'preflight').map(event => event.type === 'host-done' && event.outcome)).toEqual(['done', 'done', 'done']);
		expect(stepEvents(events, 'distinct-machines').filter(event => event.type === 'host-done')).toEqual([expect.objectContaining({
			host: 'cluster', outcome: 'failed',
			failure: expect.objectContaining({host: 'k8smaster01, k8smaster02', message: expect.stringMatching(/k8smaster01 and k8smaster02 are the same machine \(same machine-id and boot id\)$/), fix: 'list every master once, each with its own address'}),
		})]);
		expect(engine.state.snapshot.run).toMatchObject({status: 'failed', step: 'distinct-machines', host: 'k8smaster01, k8smaster02'});
		expect(cluster.uploads()).toHaveLength(0);
		expect(keyMaterial()).toBe(false);
	});

	test('the cross-master check does not run when a master failed preflight', async () => {
		const {engine, events} = await oneMachineTwice(cluster => {
			cluster.hosts.get('172.24.8.73')!.listening.push({port: 10259, process: 'haproxy'});
		});
		await expect(engine.apply({confirm: true})).rejects.toThrow(/^preflight failed on k8smaster03$/);
		expect(stepEvents(events, 'distinct-machines')).toEqual([]);
		expect(engine.state.snapshot.run).toMatchObject({status: 'failed', step: 'preflight', host: 'k8smaster03'});
	});

	test('a stop asked while preflight runs stops before the cross-master check: nothing is made or written', async () => {
		const {engine, events, cluster, keyMaterial} = await oneMachineTwice();
		engine.subscribe(event => {
			if (event.type === 'host-done' && event.step === 'preflight') {
				engine.requestStop();
			}
		});
		// Run, the check would fail (two masters are one machine): stopped, it does not run.
		await expect(engine.apply({confirm: true})).rejects.toBeInstanceOf(StopRequested);
		expect(stepEvents(events, 'preflight').filter(event => event.type === 'host-done')).toHaveLength(3);
		expect(stepEvents(events, 'distinct-machines')).toEqual([]);
		expect(engine.state.snapshot.run).toMatchObject({status: 'stopped', step: 'preflight'});
		expect(cluster.uploads()).toHaveLength(0);
		expect(keyMaterial()).toBe(false);
	});

	test('the preflight command: the cross-master finding in the cluster column, only once every master passed', async () => {
		const duplicated = await oneMachineTwice();
		const checks = (events: EngineEvent[]) => events.flatMap(event => (event.type === 'check' ? [event] : []));
		expect(await duplicated.engine.preflight()).toBe(false);
		const grid = formatCheckGrid(checks(duplicated.events)).join('\n');
		expect(grid).toMatch(/^check +cluster +k8smaster01 +k8smaster02 +k8smaster03$/m);
		expect(grid).toMatch(/^distinct machines +FAIL +- +- +-$/m);
		expect(grid).toMatch(/^port 10259 +- +ok +ok +ok$/m);
		expect(grid).toContain('FAIL cluster distinct machines: k8smaster01 and k8smaster02 are the same machine (same machine-id and boot id)\n     fix: list every master once, each with its own address');

		const failing = await oneMachineTwice(cluster => {
			cluster.hosts.get('172.24.8.73')!.listening.push({port: 10259, process: 'haproxy'});
		});
		expect(await failing.engine.preflight()).toBe(false);
		expect(checks(failing.events).filter(event => event.host === 'cluster')).toEqual([]);
		expect(formatCheckGrid(checks(failing.events)).join('\n')).toMatch(/^check +k8smaster01 +k8smaster02 +k8smaster03$/m);
	});

	test('a passphrase-protected key without an agent is diagnosed as such', async () => {
		const dir = tempDir('k8smi-key-');
		const key = path.join(dir, 'id_ed25519');
		execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', 'secret phrase', '-f', key]);
		const withKey = await config(raw => {
			raw.ssh.identityFile = key;
		});
		const previous = process.env.SSH_AUTH_SOCK;
		delete process.env.SSH_AUTH_SOCK;
		try {
			const diagnosis = await diagnoseAuthentication(new Runner(), withKey);
			expect(diagnosis).toContain(`${key} is protected by a passphrase and ssh runs in batch mode: load it into ssh-agent first (ssh-add ${key})`);
			expect(diagnosis).toContain('no ssh-agent');
			execFileSync('ssh-keygen', ['-q', '-p', '-P', 'secret phrase', '-N', '', '-f', key]);
			expect(await diagnoseAuthentication(new Runner(), withKey)).toMatch(/has no passphrase, so the master refused it/);
		} finally {
			if (previous !== undefined) {
				process.env.SSH_AUTH_SOCK = previous;
			}
		}
	});

	test('apply stops at preflight when a master fails a check, and shows the grid', async () => {
		const {dir, tarball, stateDir} = makeFixture();
		const loaded = await loadConfig(writeConfig(dir, baseConfig(tarball)));
		const cluster = new FakeCluster(['172.24.8.71', '172.24.8.72', '172.24.8.73']);
		cluster.hosts.get('172.24.8.73')!.listening.push({port: 10259, process: 'haproxy'});
		cluster.hosts.get('172.24.8.72')!.clockOffsetMs = 7000;
		const engine = fakeEngine(cluster, loaded, stateDir);
		const events: EngineEvent[] = [];
		engine.subscribe(event => events.push(event));
		await expect(engine.apply({confirm: true})).rejects.toThrow(/preflight failed on k8smaster03/);
		expect(cluster.uploads()).toHaveLength(0);
		const checks = events.flatMap(event => (event.type === 'check' ? [event] : []));
		const grid = formatCheckGrid(checks).join('\n');
		expect(grid).toMatch(/^port 10259 +ok +ok +FAIL$/m);
		expect(grid).toMatch(/^clock +ok +WARN +ok$/m);
		expect(grid).toContain('FAIL k8smaster03 port 10259: in use by haproxy');
	});

	test('through a bastion, preflight names a failure of the bastion apart from one of a master, each with its fix', async () => {
		const {dir, tarball, stateDir} = makeFixture();
		const raw = baseConfig(tarball);
		raw.ssh = {bastion: 'jump@bastion.example.com:2222'};
		const loaded = await loadConfig(writeConfig(dir, raw));
		const failures: Record<string, string> = {
			'172.24.8.71': 'No ED25519 host key is known for [bastion.example.com]:2222 and you have requested strict checking.\r\nHost key verification failed.\r\nkex_exchange_identification: Connection closed by remote host',
			'172.24.8.72': 'jump@bastion.example.com: Permission denied (publickey).\r\nConnection closed by UNKNOWN port 65535',
			'172.24.8.73': 'No ED25519 host key is known for 172.24.8.73 and you have requested strict checking.\r\nHost key verification failed.',
		};
		const cluster = new FakeCluster(Object.keys(failures));
		const executor = async (spec: CommandSpec) => {
			// The bastion asked alone (after a failed connection through it) answers.
			if (spec.command === 'ssh' && spec.args.at(-2) === 'bastion.example.com') {
				return {exitCode: 0, stdout: '', stderr: '', durationMs: 1, timedOut: false};
			}

			const failure = spec.command === 'ssh' && !spec.args.includes('-O') ? failures[spec.args.at(-2)!] : undefined;
			return failure ? {exitCode: 255, stdout: '', stderr: failure, durationMs: 1, timedOut: false} : cluster.executor(spec);
		};
		const engine = new Engine({config: loaded, workspace: new Workspace(stateDir, loaded.name), runner: new Runner({executor}), prompter: headlessPrompter({yes: true, overwrite: false}), probe: cluster.probe, api: cluster.api});
		const events: EngineEvent[] = [];
		engine.subscribe(event => events.push(event));
		const previous = process.env.SSH_AUTH_SOCK;
		delete process.env.SSH_AUTH_SOCK;
		try {
			await expect(engine.apply({confirm: true})).rejects.toThrow(/preflight failed/);
		} finally {
			if (previous !== undefined) {
				process.env.SSH_AUTH_SOCK = previous;
			}
		}

		const failed = new Map(events.flatMap(event => (event.type === 'check' && event.level === 'fail' ? [[event.host, event] as const] : [])));
		expect(failed.get('k8smaster01')).toMatchObject({check: 'ssh to the bastion bastion.example.com', fix: expect.stringMatching(/^the bastion bastion\.example\.com is not in known_hosts: .*ssh-keyscan -p 2222 bastion\.example\.com/)});
		expect(failed.get('k8smaster02')).toMatchObject({check: 'ssh to the bastion bastion.example.com', fix: expect.stringMatching(/^the bastion bastion\.example\.com refused the login as jump \(the masters were not tried\)/)});
		expect(failed.get('k8smaster03')).toMatchObject({check: 'ssh', fix: expect.stringMatching(/^172\.24\.8\.73 is not in known_hosts: .*run on the bastion/)});
	});

	test('through a bastion, a failure the master\'s ssh reports only as a closed connection (ControlPersist hides the first hop\'s stderr) is named from the bastion asked alone', async () => {
		const {dir, tarball, stateDir} = makeFixture();
		const raw = baseConfig(tarball);
		raw.ssh = {bastion: 'jump@bastion.example.com:2222'};
		const loaded = await loadConfig(writeConfig(dir, raw));
		const cluster = new FakeCluster(['172.24.8.71', '172.24.8.72', '172.24.8.73']);
		const asked: string[] = [];
		const executor = async (spec: CommandSpec) => {
			if (spec.command === 'ssh' && spec.args.at(-2) === 'bastion.example.com') {
				asked.push(spec.args.at(-1)!);
				return {exitCode: 255, stdout: '', stderr: 'No ED25519 host key is known for [bastion.example.com]:2222 and you have requested strict checking.\r\nHost key verification failed.', durationMs: 1, timedOut: false};
			}

			return spec.command === 'ssh' && !spec.args.includes('-O') ? {exitCode: 255, stdout: '', stderr: 'kex_exchange_identification: Connection closed by remote host', durationMs: 1, timedOut: false} : cluster.executor(spec);
		};
		const engine = new Engine({config: loaded, workspace: new Workspace(stateDir, loaded.name), runner: new Runner({executor}), prompter: headlessPrompter({yes: true, overwrite: false}), probe: cluster.probe, api: cluster.api});
		const events: EngineEvent[] = [];
		engine.subscribe(event => events.push(event));
		await expect(engine.apply({confirm: true})).rejects.toThrow(/preflight failed/);
		expect(asked.length).toBeGreaterThan(0);
		expect(asked.every(command => command === 'true')).toBe(true);
		const failed = events.filter(event => event.type === 'check' && event.level === 'fail');
		expect(failed).toHaveLength(3);
		for (const event of failed) {
			expect(event).toMatchObject({check: 'ssh to the bastion bastion.example.com', fix: expect.stringMatching(/^the bastion bastion\.example\.com is not in known_hosts/)});
		}
	});
});
