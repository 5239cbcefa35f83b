import {spawn, spawnSync} from 'node:child_process';
import {readFileSync, writeFileSync} from 'node:fs';
import path from 'node:path';
import {describe, expect, test} from 'vitest';
import {loadConfig} from '../../source/config/load.js';
import type {EngineEvent} from '../../source/engine/events.js';
import {formatCisGrid} from '../../source/reporters/format.js';
import {commandLinesScript, providerWordsScript, schedulerProfilingScript, type CisResult} from '../../source/steps/cis.js';
import {FakeCluster} from '../helpers/fake-hosts.js';
import {baseConfig, makeFixture, writeConfig} from '../helpers/fixture.js';
import {fakeEngine} from '../helpers/engine.js';
import {tempDir} from '../helpers/temp.js';

const ips = ['172.24.8.71', '172.24.8.72', '172.24.8.73'];

function setup(settings: Record<string, unknown> = {}, version = 'v1.28.7') {
	const fixture = makeFixture(version);
	const configFile = writeConfig(fixture.dir, {...baseConfig(fixture.tarball, version), ...settings});
	const cluster = new FakeCluster(ips);
	const engine = async () => {
		const config = await loadConfig(configFile);
		const events: EngineEvent[] = [];
		const instance = fakeEngine(cluster, config, fixture.stateDir);
		instance.subscribe(event => events.push(event));
		return {instance, events};
	};

	return {cluster, engine, configFile};
}

const byId = (results: CisResult[] | unknown) => new Map((results as CisResult[]).map(result => [result.id, result]));

describe('CIS benchmark (kube-bench cis-1.10, sections 1.1-1.4)', () => {
	test('by default every automated check passes on every master, read back from the hosts; etcd\'s are skipped as external', async () => {
		const {engine} = setup();
		await (await engine()).instance.apply({confirm: true});
		const results = await (await engine()).instance.cis();
		expect([...results.keys()].sort()).toEqual(['k8smaster01', 'k8smaster02', 'k8smaster03']);
		for (const [host, value] of results) {
			const checks = value as CisResult[];
			expect(checks.filter(check => check.level === 'fail'), host).toEqual([]);
			const ids = byId(checks);
			for (const id of ['1.1.1', '1.1.2', '1.1.15', '1.1.17', '1.1.19', '1.1.20', '1.1.21', '1.2.15', '1.2.17', '1.2.18', '1.2.28', '1.2.29', '1.3.2', '1.3.7', '1.4.1', '1.4.2']) {
				expect(ids.get(id)?.level, `${host} ${id}`).toBe('pass');
			}

			for (const id of ['1.1.7', '1.1.8', '1.1.11', '1.1.12']) {
				expect(ids.get(id)?.detail, id).toMatch(/etcd is external/);
			}

			// Manual checks not met on purpose say why.
			expect(ids.get('1.2.11')).toMatchObject({level: 'skip', detail: expect.stringMatching(/air-gapped/)});
			expect(ids.get('1.2.3')?.level).toBe('pass');
		}
	});

	test('profile: tutorial reports what the tutorial leaves: profiling on, short audit retention, 644 files, components on the master\'s address', async () => {
		const {engine} = setup({profile: 'tutorial'});
		await (await engine()).instance.apply({confirm: true});
		const checks = byId((await (await engine()).instance.cis()).get('k8smaster02'));
		const failed = [...checks.values()].filter(check => check.level === 'fail').map(check => check.id);
		expect(failed).toEqual(['1.1.1', '1.1.3', '1.1.5', '1.1.20', '1.2.3', '1.2.9', '1.2.11', '1.2.15', '1.2.17', '1.2.18', '1.2.29', '1.3.2', '1.3.7', '1.4.1', '1.4.2']);
		expect(checks.get('1.2.17')?.detail).toBe('--audit-log-maxage=15 (wanted: >= 30)');
		expect(checks.get('1.3.7')?.detail).toBe('--bind-address=172.24.8.72 (wanted: 127.0.0.1)');
		expect(checks.get('1.1.1')?.detail).toMatch(/\/etc\/systemd\/system\/kube-apiserver\.service is 644/);
	});

	test('a file changed by hand on one master fails its check there only; verify warns and names the ids', async () => {
		const {engine, cluster} = setup();
		await (await engine()).instance.apply({confirm: true});
		cluster.hosts.get(ips[2]!)!.files.get('/etc/kubernetes/kube-controller-manager.kubeconfig')!.mode = 0o644;
		const results = await (await engine()).instance.cis();
		expect(byId(results.get('k8smaster03')).get('1.1.17')).toMatchObject({level: 'fail', detail: '/etc/kubernetes/kube-controller-manager.kubeconfig is 644'});
		expect(byId(results.get('k8smaster01')).get('1.1.17')?.level).toBe('pass');
		const grid = formatCisGrid(results).join('\n');
		expect(grid).toMatch(/^1\.1\.17 +controller-manager kubeconfig 600 or stricter +PASS +PASS +FAIL$/m);
		expect(grid).toMatch(/^FAIL 1\.1\.17 k8smaster03: \/etc\/kubernetes\/kube-controller-manager\.kubeconfig is 644$/m);
		expect(grid).toMatch(/^SKIP 1\.1\.7 every master: etcd is external/m);

		const {instance, events} = await engine();
		await instance.verify();
		const benchmark = events.filter(event => event.type === 'check' && event.check === 'CIS benchmark');
		expect(benchmark.map(event => event.type === 'check' && `${event.host} ${event.level}`).sort()).toEqual(['k8smaster01 pass', 'k8smaster02 pass', 'k8smaster03 warn']);
		expect(benchmark.find(event => event.type === 'check' && event.host === 'k8smaster03')).toMatchObject({detail: expect.stringMatching(/1 fail \(1\.1\.17\)/)});
	});

	test('1.4.1 reads the scheduler\'s config too: beside --config, --profiling=false alone changes nothing', async () => {
		const {engine, cluster} = setup();
		await (await engine()).instance.apply({confirm: true});
		const config = cluster.hosts.get(ips[0]!)!.files.get('/etc/kubernetes/kube-scheduler.yaml')!;
		config.content = Buffer.from(config.content.toString().replace(/^enableProfiling: false\n/m, ''));
		const results = await (await engine()).instance.cis();
		expect(byId(results.get('k8smaster01')).get('1.4.1')).toMatchObject({level: 'fail', detail: '--profiling=false, but /etc/kubernetes/kube-scheduler.yaml has no enableProfiling (on by default)'});
		expect(byId(results.get('k8smaster02')).get('1.4.1')).toMatchObject({level: 'pass', detail: '--profiling=false, enableProfiling: false'});
	});

	test('an operator\'s --bind-address in extraFlags is followed: the controller-manager is then asked on the master\'s address, and 1.3.7 names it', async () => {
		const {engine, cluster} = setup({extraFlags: {'kube-controller-manager': ['--bind-address=0.0.0.0']}});
		await (await engine()).instance.apply({confirm: true});
		const onMaster = cluster.calls.map(call => call.args.at(-1) ?? '').filter(script => script.includes('mktemp -d'));
		expect(onMaster.length).toBeGreaterThan(0);
		expect(onMaster.some(script => script.includes('127.0.0.1:10257'))).toBe(false);
		expect(onMaster.some(script => script.includes('127.0.0.1:10259'))).toBe(true);
		expect(byId((await (await engine()).instance.cis()).get('k8smaster01')).get('1.3.7')).toMatchObject({level: 'fail', detail: '--bind-address=0.0.0.0 (wanted: 127.0.0.1)'});
	});

	test('every file the install puts on the masters is 0600 root:root by default (binaries aside)', async () => {
		const {engine, cluster} = setup();
		await (await engine()).instance.apply({confirm: true});
		for (const ip of ips) {
			for (const [file, found] of cluster.hosts.get(ip)!.files) {
				expect(found.owner, file).toBe('root');
				// binDir's links aside: a link's mode is never used.
				if (found.link === undefined) {
					expect(found.mode, file).toBe(file.startsWith('/opt/k8s/bin/v1.28.7/') ? 0o755 : 0o600);
				}
			}
		}
	});
});


describe('the command lines read on a master, by sh against a systemctl that answers as told', () => {
	test('one systemctl for the three components; a unit with no process (MainPID=0) is left out, whatever order systemctl prints', async () => {
		const processes = [spawn('sleep', ['30']), spawn('sleep', ['31'])];
		try {
			const bin = tempDir('k8smi-systemctl-');
			// systemd prints a unit's properties in its own order, not in the order asked.
			const answer = `MainPID=${processes[0]!.pid}\nId=kube-apiserver.service\n\nId=kube-controller-manager.service\nMainPID=0\n\nMainPID=${processes[1]!.pid}\nId=kube-scheduler.service`;
			writeFileSync(path.join(bin, 'systemctl'), `#!/bin/sh\necho "$*" >> ${bin}/calls\nprintf '%s\\n' "$ANSWER"\n`, {mode: 0o755});
			const result = spawnSync('sh', ['-c', commandLinesScript], {env: {PATH: `${bin}:/usr/bin:/bin`, ANSWER: answer}, encoding: 'utf8'});
			expect(result.stdout).toBe('R kube-apiserver\nA kube-apiserver sleep\nA kube-apiserver 30\nR kube-scheduler\nA kube-scheduler sleep\nA kube-scheduler 31\n');
			expect(readFileSync(path.join(bin, 'calls'), 'utf8')).toBe('show -p Id -p MainPID kube-apiserver kube-controller-manager kube-scheduler\n');
		} finally {
			for (const each of processes) {
				each.kill();
			}
		}
	});
});

describe('the config lines read on a master, by sh', () => {
	const sh = (script: string) => spawnSync('sh', ['-c', script], {encoding: 'utf8'});

	test('the encryption provider: what the benchmark\'s grep -A1 | tail -n 1 | grep -o reads, the key never printed', () => {
		const dir = tempDir('k8smi-cis-');
		const configs = [
			'resources:\n  - resources:\n      - secrets\n    providers:\n      - aescbc:\n          keys:\n            - name: key1\n              secret: c2VjcmV0\n      - identity: {}\n',
			'providers:\n- identity: {}\nproviders:\n  - secretbox:\n      keys: []\n',
			'providers:\nproviders:\n  - kms:\n',
			'kind: EncryptionConfiguration\nproviders:',
			'kind: EncryptionConfiguration\n',
		];
		for (const [index, content] of configs.entries()) {
			const file = path.join(dir, `encryption-${index}.yaml`);
			writeFileSync(file, content);
			const benchmark = sh(`grep -A1 'providers:' ${file} | tail -n 1 | grep -o '[A-Za-z]*' | sed 's/^/P /'`).stdout;
			expect(sh(providerWordsScript(file))).toMatchObject({status: 0, stdout: benchmark});
		}

		expect(sh(providerWordsScript(path.join(dir, 'encryption-0.yaml'))).stdout).toBe('P aescbc\n');
		expect(sh(providerWordsScript(path.join(dir, 'absent.yaml')))).toMatchObject({status: 0, stdout: ''});
	});

	test('the scheduler config\'s enableProfiling, and nothing (exit 0) without the file', () => {
		const dir = tempDir('k8smi-cis-');
		const file = path.join(dir, 'kube-scheduler.yaml');
		writeFileSync(file, 'apiVersion: kubescheduler.config.k8s.io/v1\nenableProfiling: false\nleaderElection:\n  enableProfiling: true\n');
		expect(sh(schedulerProfilingScript(file))).toMatchObject({status: 0, stdout: 'E false\n'});
		expect(sh(schedulerProfilingScript(path.join(dir, 'absent.yaml')))).toMatchObject({status: 0, stdout: ''});
	});
});
