import {execFileSync, spawnSync} from 'node:child_process';
import {rmSync, writeFileSync} from 'node:fs';
import path from 'node:path';
import {beforeEach, describe, expect, inject, test} from 'vitest';
import {etcdctl, readState, resetMasters, runCli, startProbes, stopProbes, writeLabConfig} from './lab-helpers.js';

const lab = inject('lab');

const namespaces = ['rotate-a', 'rotate-b', 'rotate-c', 'rotate-d'];
const perNamespace = 60;

/** The key names the raw secret values in etcd are under (`plain`: unencrypted), counted; read from this machine. */
function etcdKeyCount(): Record<string, number> {
	const count: Record<string, number> = {};
	for (const line of etcdctl(lab!, 'get', '/registry/secrets/', '--prefix', '-w', 'fields').split('\n')) {
		if (line.startsWith('"Value" : "')) {
			const key = /^"Value" : "k8s:enc:aescbc:v1:([^:]+):/.exec(line)?.[1] ?? 'plain';
			count[key] = (count[key] ?? 0) + 1;
		}
	}

	return count;
}

describe.skipIf(!lab)('rotate-encryption-key on the lab', () => {
	beforeEach(() => resetMasters(lab!));

	test('240 secrets in four namespaces; killed during the rewrite and resumed: every secret readable, none left under key1, no probe request failed', async () => {
		const {dir, configFile, stateDir} = writeLabConfig(lab!, 'v1.28.7');
		const install = await runCli(['apply', '--config', configFile, '--state-dir', stateDir, '--yes']);
		expect(install.code, install.stdout + install.stderr).toBe(0);

		// Debian's real kubectl (test/lab/README.md); one create of a List: namespaces, then their secrets, one request each.
		const kubeconfig = path.join(stateDir, 'kubernetes', 'rendered', 'admin.kubeconfig');
		const kubectlPath = execFileSync('bash', [path.resolve('test/lab/lab.sh'), 'kubectl-path'], {encoding: 'utf8', env: {...process.env, LAB_DIR: lab!.dir}}).trim();
		const kubectl = (...args: string[]) => spawnSync(kubectlPath, ['--kubeconfig', kubeconfig, '--request-timeout=30s', ...args], {encoding: 'utf8', maxBuffer: 64 * 1024 * 1024});
		const value = (namespace: string, index: number) => `${namespace}-value-${index}`;
		const items = [
			...namespaces.map(name => ({apiVersion: 'v1', kind: 'Namespace', metadata: {name}})),
			...namespaces.flatMap(namespace => Array.from({length: perNamespace}, (_, index) => ({apiVersion: 'v1', kind: 'Secret', metadata: {name: `s-${index}`, namespace}, type: 'Opaque', data: {value: Buffer.from(value(namespace, index)).toString('base64')}}))),
		];
		const listFile = path.join(dir, 'secrets.json');
		writeFileSync(listFile, JSON.stringify({apiVersion: 'v1', kind: 'List', items}));
		// --validate=false: kubectl validates against /openapi/v2, which the stand-in does not serve.
		const created = kubectl('create', '--validate=false', '-f', listFile);
		expect(created.status, created.stderr).toBe(0);
		const total = namespaces.length * perNamespace;
		expect(etcdKeyCount().key1).toBeGreaterThanOrEqual(total);

		startProbes(lab!);
		// Killed once the rewrite recorded its first page (100 secrets) and before the last: the resumed run continues from there.
		let watching: NodeJS.Timeout | undefined;
		const first = await runCli(['rotate-encryption-key', '--config', configFile, '--state-dir', stateDir, '--yes'], (line, kill) => {
			if (!watching && line.startsWith('== Rewrite')) {
				watching = setInterval(() => {
					if ((readState(stateDir).encryptionRotation?.rewrite?.rewritten ?? 0) >= 100) {
						clearInterval(watching);
						kill();
					}
				}, 20);
			}
		});
		clearInterval(watching);
		expect(first.signal, first.stdout + first.stderr).toBe('SIGKILL');
		const stopped = readState(stateDir).encryptionRotation;
		expect(stopped.phase).toBe('rewrite');
		expect(stopped.rewrite.rewritten).toBeGreaterThanOrEqual(100);
		expect(stopped.rewrite.rewritten).toBeLessThan(total);
		expect(readState(stateDir).material.encryptionKeys.map((key: {name: string}) => key.name)).toEqual(['key2', 'key1']);

		const resumed = await runCli(['rotate-encryption-key', '--config', configFile, '--state-dir', stateDir, '--yes']);
		const tallies = stopProbes(lab!);
		expect(resumed.code, resumed.stdout + resumed.stderr).toBe(0);
		console.log(`rotation: killed after ${stopped.rewrite?.rewritten ?? 0} secrets rewritten; probe ${tallies.map(tally => `${tally.host} ${tally.requests} requests, ${tally.failures.length} failed`).join('; ')}`);
		for (const tally of tallies) {
			expect(tally.requests, tally.host).toBeGreaterThan(10);
			expect(tally.failures, tally.host).toEqual([]);
		}

		const state = readState(stateDir);
		expect(state.encryptionRotation).toMatchObject({phase: 'done', to: {name: 'key2'}});
		expect(state.material.encryptionKeys.map((key: {name: string}) => key.name)).toEqual(['key2']);
		const counted = etcdKeyCount();
		expect(counted.key1 ?? 0).toBe(0);
		expect(counted.plain ?? 0).toBe(0);
		expect(counted.key2).toBeGreaterThanOrEqual(total);

		// Every secret readable with key2 alone, with its value.
		const listed = kubectl('get', 'secrets', '-A', '-o', 'json');
		expect(listed.status, listed.stderr).toBe(0);
		const secrets = (JSON.parse(listed.stdout) as {items: Array<{metadata: {name: string; namespace: string}; data?: Record<string, string>}>}).items.filter(item => namespaces.includes(item.metadata.namespace));
		expect(secrets).toHaveLength(total);
		for (const secret of secrets) {
			const index = Number(secret.metadata.name.slice(2));
			expect(Buffer.from(secret.data?.value ?? '', 'base64').toString(), `${secret.metadata.namespace}/${secret.metadata.name}`).toBe(value(secret.metadata.namespace, index));
		}

		for (const host of lab!.hosts) {
			const config = execFileSync('bash', [path.resolve('test/lab/lab.sh'), 'ssh', host.name, 'grep -c "name: key" /etc/kubernetes/encryption-config.yaml; stat -c %a /etc/kubernetes/encryption-config.yaml'], {encoding: 'utf8', env: {...process.env, LAB_DIR: lab!.dir}});
			expect(config.trim().split('\n'), host.name).toEqual(['1', '600']);
		}

		// verify counts the secrets per key; the old key's file stays until asked.
		const verified = await runCli(['verify', '--config', configFile, '--state-dir', stateDir]);
		expect(verified.code, verified.stdout).toBe(0);
		expect(verified.stdout).toMatch(/secrets per encryption key/);
		// The snapshot taken before the rotation holds secrets only key1 decrypts: the old key stays while it is kept.
		const [before] = readState(stateDir).snapshots;
		expect(before.occasion).toBe('before the key rotation');
		const refused = await runCli(['rotate-encryption-key', '--remove-old-key', '--config', configFile, '--state-dir', stateDir]);
		expect(refused.code, refused.stderr).toBe(2);
		expect(refused.stderr).toContain(before.path);
		rmSync(before.path);
		const removed = await runCli(['rotate-encryption-key', '--remove-old-key', '--config', configFile, '--state-dir', stateDir]);
		expect(removed.code, removed.stderr).toBe(0);
		expect(removed.stdout).toMatch(/removed .*encryption\.key/);
	});
});
