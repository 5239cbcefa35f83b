import {existsSync, readFileSync, rmSync, statSync, writeFileSync} from 'node:fs';
import path from 'node:path';
import {describe, expect, test} from 'vitest';
import YAML from 'yaml';
import {main} from '../../source/cli.js';
import {loadConfig} from '../../source/config/load.js';
import {ApplyFailed, Engine, StopRequested} from '../../source/engine/engine.js';
import type {EngineEvent} from '../../source/engine/events.js';
import {headlessPrompter} from '../../source/engine/prompts.js';
import {rotateEncryptionKey} from '../../source/operations/index.js';
import {removeOldKeyFiles} from '../../source/pki/old-keys.js';
import {formatStatus} from '../../source/reporters/format.js';
import {Runner, type CommandSpec} from '../../source/runner.js';
import {StateStore} from '../../source/state/store.js';
import {parseSecretCount, secretCountScript} from '../../source/steps/secret-count.js';
import {Workspace} from '../../source/workspace.js';
import {FakeCluster} from '../helpers/fake-hosts.js';
import {baseConfig, makeFixture, writeConfig} from '../helpers/fixture.js';
import {fakeEngine} from '../helpers/engine.js';

const ips = ['172.24.8.71', '172.24.8.72', '172.24.8.73'];
const configPath = '/etc/kubernetes/encryption-config.yaml';

/** Asks the run to stop once the first apiserver restarts (the prepare phase). */
function stopAtFirstApiserverRestart(cluster: FakeCluster, engine: Engine): void {
	let restarts = 0;
	cluster.beforeCommand = spec => {
		if (spec.command === 'ssh' && (spec.args.at(-1) ?? '').includes('systemctl restart kube-apiserver') && ++restarts === 1) {
			engine.requestStop();
		}
	};
}

/** An installed cluster on the fake masters, with secrets under key1 in three namespaces. */
async function installed() {
	const fixture = makeFixture();
	const configFile = writeConfig(fixture.dir, baseConfig(fixture.tarball));
	const cluster = new FakeCluster(ips);
	const engine = async () => {
		const config = await loadConfig(configFile);
		const events: EngineEvent[] = [];
		const instance = fakeEngine(cluster, config, fixture.stateDir);
		instance.subscribe(event => events.push(event));
		return {engine: instance, events, workspace: new Workspace(fixture.stateDir, config.name)};
	};

	const first = await engine();
	await first.engine.apply({confirm: true});
	cluster.seedSecrets(['default', 'team-a', 'team-b'], 80);
	return {...fixture, configFile, cluster, engine, root: first.workspace.root};
}

/** The aescbc key names of a master's encryption config, in order. */
const keysOn = (cluster: FakeCluster, ip: string) => [...(cluster.hosts.get(ip)!.files.get(configPath)?.content.toString() ?? '').matchAll(/- name: (\S+)/g)].map(match => match[1]);

/** As a SIGKILL at the nth secret written back: that API call and every one after it fail (through any master); the state is as the last write left it. */
function killedAtPut(n: number) {
	let puts = 0;
	return (spec: CommandSpec) => {
		if (spec.command === 'https' && (puts >= n || (spec.args[0] === 'PUT' && ++puts === n))) {
			throw new Error('killed');
		}
	};
}

/** Secrets in etcd per key name. */
function etcdCount(cluster: FakeCluster): Record<string, number> {
	const count: Record<string, number> = {};
	for (const stored of cluster.etcdSecrets.values()) {
		count[stored.key] = (count[stored.key] ?? 0) + 1;
	}

	return count;
}

describe('rotate-encryption-key', () => {
	test('plan: the phases in order, each restart one master after the other; nothing is made', async () => {
		const {engine, root} = await installed();
		const {engine: instance} = await engine();
		const plan = await instance.plan(rotateEncryptionKey);
		expect(plan.steps.map(step => step.id)).toEqual(['rotation-check', 'snapshot', 'new-key', 'prepare', 'prepare-restart', 'rotate', 'rotate-restart', 'rewrite', 'drop', 'drop-restart', 'rotation-done']);
		const described = (id: string) => plan.steps.find(step => step.id === id)!.hosts[0]!.actions.map(action => ('description' in action ? action.description : 'command' in action ? action.command : action.label)).join(' ');
		expect(described('prepare')).toContain('with the aescbc keys key1, key2 (new)');
		expect(described('rotate')).toContain('with the aescbc keys key2 (new), key1');
		expect(described('drop')).toContain('with the aescbc keys key2 (new)');
		expect(described('rewrite')).toContain('limit=100');
		expect(existsSync(path.join(root, 'pki', 'encryption-key2.key'))).toBe(false);
	});

	test('the phases in order: prepare (key2 second), rotate (key2 first), rewrite (every secret), drop; the old key file kept 0600', async () => {
		const {cluster, engine, root, stateDir} = await installed();
		const {engine: instance, events} = await engine();
		// The config each master had when its apiserver restarted, in order.
		const seen: string[] = [];
		cluster.beforeCommand = spec => {
			if (spec.command === 'ssh' && (spec.args.at(-1) ?? '').includes('systemctl restart kube-apiserver')) {
				const ip = ips.find(each => spec.args.includes(each))!;
				seen.push(`${ip} ${keysOn(cluster, ip).join(',')}`);
			}
		};

		const drainsBefore = cluster.drainTimeline.filter(entry => entry.includes('restart')).length;
		await instance.run(rotateEncryptionKey, {confirm: true});
		expect(seen).toEqual([
			...ips.map(ip => `${ip} key1,key2`),
			...ips.map(ip => `${ip} key2,key1`),
			...ips.map(ip => `${ip} key2`),
		]);
		// Every restart took its apiserver out of kube-nginx first.
		expect(cluster.drainTimeline.filter(entry => entry.includes('restart')).length - drainsBefore).toBe(9);
		expect(etcdCount(cluster)).toEqual({key2: 240});
		for (const ip of ips) {
			expect(keysOn(cluster, ip)).toEqual(['key2']);
			expect(cluster.loadedKeys.get(ip)).toEqual(['key2']);
		}

		const state = instance.state.snapshot;
		expect(state.material!.encryptionKeys.map(key => key.name)).toEqual(['key2']);
		expect(state.encryptionRotation).toMatchObject({from: [{name: 'key1'}], to: {name: 'key2'}, phase: 'done', count: {byKey: {key2: 240}}, rewrite: {rewritten: 240}});
		expect(JSON.stringify(state)).not.toContain(readFileSync(path.join(root, 'pki', 'encryption-key2.key'), 'utf8').trim());
		for (const file of ['encryption.key', 'encryption-key2.key']) {
			expect(statSync(path.join(root, 'pki', file)).mode & 0o777).toBe(0o600);
		}

		const progress = events.filter(event => event.type === 'host-progress' && event.step === 'rewrite').map(event => event.type === 'host-progress' && event.message);
		expect(progress).toContain('100 secret(s) written back, about 140 to go');
		expect(events.find(event => event.type === 'run-start')).toMatchObject({kind: 'operation', title: 'Rotate the encryption key'});
		expect(events.at(-1)).toMatchObject({type: 'finished', outcome: 'done'});
		expect(formatStatus(state, 'state.json')).toMatch(/Encryption-key rotation key1 → key2: done .*240 under key2; key1 kept in the state folder/);

		// Done: an apply renders the same config (key2 alone), leaves it as it is and restarts nothing:
		// the apiservers' record of what they started with is the whole state's, whichever operation restarted them.
		const configUploads = () => cluster.uploads().filter(call => call.args.at(-1)!.includes('encryption-config.yaml')).length;
		const uploadsBefore = configUploads();
		const restartsBefore = cluster.restartOrder.length;
		await (await engine()).engine.apply({confirm: true});
		expect(configUploads()).toBe(uploadsBefore);
		expect(cluster.restartOrder).toHaveLength(restartsBefore);

		// The old key goes only on request, once done, and not while the snapshot taken before the rotation (its secrets under key1) is kept.
		const store = new StateStore(root, 'k8s');
		const workspace = new Workspace(stateDir, root.split('/').at(-1)!);
		const [before] = store.snapshot.snapshots!;
		expect(() => removeOldKeyFiles(workspace, store)).toThrow(`still decrypts the secrets in 1 etcd snapshot(s) taken before the rewrite (${before!.path})`);
		expect(existsSync(path.join(root, 'pki', 'encryption.key'))).toBe(true);
		rmSync(before!.path);
		expect(removeOldKeyFiles(workspace, store)).toEqual([path.join(root, 'pki', 'encryption.key')]);
		expect(existsSync(path.join(root, 'pki', 'encryption-key2.key'))).toBe(true);
	});

	test('killed in the rewrite, the next run goes on from the recorded page; drop waits for it', async () => {
		const {cluster, engine} = await installed();
		const first = await engine();
		cluster.beforeCommand = killedAtPut(150);

		await expect(first.engine.run(rotateEncryptionKey, {confirm: true})).rejects.toThrow();
		const stopped = first.engine.state.snapshot.encryptionRotation!;
		expect(stopped.phase).toBe('rewrite');
		expect(stopped.rewrite).toMatchObject({rewritten: 100});
		expect(stopped.rewrite!.continue).toBeDefined();
		// etcd was snapshotted before the new key was made.
		expect(first.engine.state.snapshot.snapshots?.map(each => each.occasion)).toEqual(['before the key rotation']);
		// Still both keys on every master: nothing under key1 is unreadable.
		for (const ip of ips) {
			expect(keysOn(cluster, ip)).toEqual(['key2', 'key1']);
		}

		cluster.beforeCommand = () => undefined;
		const listed: string[] = [];
		cluster.beforeCommand = spec => {
			if (spec.command === 'https' && spec.args[0] === 'GET' && spec.args[1]!.includes('/api/v1/secrets?')) {
				listed.push(spec.args[1]!.includes('continue=') ? 'continue' : 'start');
			}
		};
		const again = await engine();
		await again.engine.run(rotateEncryptionKey, {confirm: true});
		// Went on from the page after the last one recorded (two more pages), no phase restarted again.
		expect(listed).toEqual(['continue', 'continue']);
		expect(cluster.restartOrder).toHaveLength(12);
		expect(etcdCount(cluster)).toEqual({key2: 240});
		expect(again.engine.state.snapshot.encryptionRotation).toMatchObject({phase: 'done', rewrite: {rewritten: 240}});
		// The resumed rotation takes no second snapshot: the one before it began is the way back.
		expect(again.engine.state.snapshot.snapshots).toHaveLength(1);
	});

	test('an expired continue token starts the list over: every secret still ends under the new key', async () => {
		const {cluster, engine} = await installed();
		cluster.beforeCommand = killedAtPut(120);
		await expect((await engine()).engine.run(rotateEncryptionKey, {confirm: true})).rejects.toThrow();
		cluster.expireContinue = true;
		cluster.seedSecrets(['team-c'], 10, 'key1');
		const listed: string[] = [];
		cluster.beforeCommand = spec => {
			if (spec.command === 'https' && spec.args[0] === 'GET' && spec.args[1]!.includes('/api/v1/secrets?')) {
				listed.push(spec.args[1]!.includes('continue=') ? 'continue' : 'start');
			}
		};
		const again = await engine();
		await again.engine.run(rotateEncryptionKey, {confirm: true});
		// The recorded token expired: the list started over and went through every page.
		expect(listed).toEqual(['continue', 'start', 'continue', 'continue']);
		expect(again.engine.state.snapshot.encryptionRotation).toMatchObject({phase: 'done', rewrite: {rewritten: 250}});
		expect(etcdCount(cluster)).toEqual({key2: 250});
	});

	test('drop is refused while etcd holds a value under the old key, and the old key stays on every master', async () => {
		const {cluster, engine} = await installed();
		const {engine: instance} = await engine();
		// A secret the rewrite cannot reach (written straight to etcd under key1 after it listed).
		cluster.beforeCommand = spec => {
			if (spec.step === 'rewrite' && spec.command === 'ssh' && spec.args.at(-1)!.includes('fields')) {
				cluster.etcdSecrets.set('team-z/hidden', {key: 'key1', revision: 1, object: {metadata: {name: 'hidden', namespace: 'team-z'}}});
			}
		};

		const failed = instance.run(rotateEncryptionKey, {confirm: true});
		await expect(failed).rejects.toBeInstanceOf(ApplyFailed);
		const failure = (await failed.catch((error: unknown) => error)) as ApplyFailed;
		expect(failure.failures[0]!.message).toMatch(/1 secret value\(s\) in etcd are not under key2 after the rewrite: 240 under key2, 1 under key1 \(e\.g\. team-z\/hidden\)/);
		for (const ip of ips) {
			expect(keysOn(cluster, ip)).toEqual(['key2', 'key1']);
		}

		expect(instance.state.snapshot.encryptionRotation).toMatchObject({phase: 'rewrite', count: {byKey: {key2: 240, key1: 1}}});
		expect(instance.state.snapshot.material!.encryptionKeys.map(key => key.name)).toEqual(['key2', 'key1']);
		expect(() => removeOldKeyFiles(new Workspace(path.dirname(path.dirname(instance.state.path)), path.basename(path.dirname(instance.state.path))), instance.state)).toThrow(/still needed: the rotation is at its rewrite phase/);

		// Once the rewrite reaches it, the rotation finishes.
		cluster.beforeCommand = () => undefined;
		await (await engine()).engine.run(rotateEncryptionKey, {confirm: true});
		expect(etcdCount(cluster)).toEqual({key2: 241});
		for (const ip of ips) {
			expect(keysOn(cluster, ip)).toEqual(['key2']);
		}
	});

	test('a stop during prepare resumes prepare; masters read both keys meanwhile', async () => {
		const {cluster, engine} = await installed();
		const first = await engine();
		stopAtFirstApiserverRestart(cluster, first.engine);

		await expect(first.engine.run(rotateEncryptionKey, {confirm: true})).rejects.toBeInstanceOf(StopRequested);
		expect(first.engine.state.snapshot.encryptionRotation!.phase).toBe('prepare');
		expect(first.engine.state.snapshot.material!.encryptionKeys.map(key => key.name)).toEqual(['key1', 'key2']);
		cluster.beforeCommand = () => undefined;
		await (await engine()).engine.run(rotateEncryptionKey, {confirm: true});
		// Three at install, three per phase, and once more the master whose restart the stop cut short (its readiness was not recorded).
		expect(cluster.restartOrder).toHaveLength(13);
		expect(etcdCount(cluster)).toEqual({key2: 240});
	});

	test('reset keeps the rotated key list: the next apply uses key2, not a key of its own', async () => {
		const {cluster, engine, root} = await installed();
		await (await engine()).engine.run(rotateEncryptionKey, {confirm: true});
		await (await engine()).engine.reset({confirm: true});
		const store = new StateStore(root, 'k8s');
		expect(store.snapshot.material).toBeUndefined();
		expect(store.snapshot.keptEncryptionKeys?.map(key => key.name)).toEqual(['key2']);
		await (await engine()).engine.apply({confirm: true});
		for (const ip of ips) {
			expect(keysOn(cluster, ip)).toEqual(['key2']);
		}
	});

	test('a key file that is not the recorded one is refused before any master changes', async () => {
		const {cluster, engine, root} = await installed();
		const first = await engine();
		stopAtFirstApiserverRestart(cluster, first.engine);
		await expect(first.engine.run(rotateEncryptionKey, {confirm: true})).rejects.toBeInstanceOf(StopRequested);
		cluster.beforeCommand = () => undefined;
		writeFileSync(path.join(root, 'pki', 'encryption-key2.key'), `${Buffer.alloc(32, 7).toString('base64')}\n`, {mode: 0o600});
		const uploads = cluster.uploads().length;
		await expect((await engine()).engine.run(rotateEncryptionKey, {confirm: true})).rejects.toThrow(/encryption-key2\.key/);
		expect(cluster.uploads().length).toBe(uploads);
	});

	test('an apiserver keeping its data under another etcd prefix is refused before a key is made: the count could not prove the rewrite', async () => {
		const {configFile, engine, root} = await installed();
		const config = YAML.parse(readFileSync(configFile, 'utf8')) as Record<string, unknown>;
		writeFileSync(configFile, YAML.stringify({...config, extraFlags: {'kube-apiserver': ['--etcd-prefix=/elsewhere']}}));
		const {engine: instance} = await engine();
		const failed = await instance.run(rotateEncryptionKey, {confirm: true}).catch((error: unknown) => error);
		expect(failed).toBeInstanceOf(ApplyFailed);
		expect((failed as ApplyFailed).failures[0]!.message).toMatch(/^rotation-check on k8smaster01: extraFlags.kube-apiserver: moves the apiserver's data out of \/registry\/.* \(got --etcd-prefix=\/elsewhere\)/);
		expect(existsSync(path.join(root, 'pki', 'encryption-key2.key'))).toBe(false);
		expect(instance.state.snapshot.encryptionRotation).toBeUndefined();
	});

	test('the command: --remove-old-key before a rotation, or during one, exits 2 and removes nothing', async () => {
		const {configFile, stateDir, root} = await installed();
		const run = async (args: string[]) => {
			const out: string[] = [];
			const err: string[] = [];
			const code = await main(args, {out: line => out.push(line), err: line => err.push(line)});
			return {code, out: out.join('\n'), err: err.join('\n')};
		};

		const early = await run(['rotate-encryption-key', '--remove-old-key', '--config', configFile, '--state-dir', stateDir]);
		expect(early).toMatchObject({code: 2, err: expect.stringMatching(/^error: --remove-old-key: records no encryption-key rotation .*Fix: run rotate-encryption-key first/)});
		const store = new StateStore(root, 'k8s');
		store.recordEncryptionRotation({from: [{name: 'key1', sha256: 'a'}], to: {name: 'key2', sha256: 'b'}, startedAt: 'now', phase: 'rewrite'});
		const during = await run(['rotate-encryption-key', '--remove-old-key', '--config', configFile, '--state-dir', stateDir]);
		expect(during).toMatchObject({code: 2, err: expect.stringMatching(/^error: --remove-old-key: is still needed: the rotation is at its rewrite phase \(got key1\)/)});
		expect(existsSync(path.join(root, 'pki', 'encryption.key'))).toBe(true);
	});

	test('the etcd count reads prefixes and keys only', () => {
		expect(parseSecretCount('k8s:enc:aescbc:v1:key2: /registry/secrets/a/x\nk8s:enc:aescbc:v1:key1: /registry/secrets/b/y\nplain /registry/secrets/c/z\nk8s:enc:aescbc:v1:key2: /registry/secrets/a/w\n')).toEqual({
			byKey: {key2: 2, key1: 1, plain: 1},
			samples: {key2: ['a/x', 'a/w'], key1: ['b/y'], plain: ['c/z']},
		});
	});
});

describe('the encryption config template', () => {
	test('{{ENCRYPTION_KEYS}} after other text on its line is refused, naming the file', async () => {
		const fixture = makeFixture();
		const templates = path.join(fixture.dir, 'templates');
		const {mkdirSync} = await import('node:fs');
		mkdirSync(templates);
		writeFileSync(path.join(templates, 'encryption-config.yaml'), readFileSync(new URL('../../templates/encryption-config.yaml', import.meta.url), 'utf8').replace('{{ENCRYPTION_KEYS}}', '          keys: {{ENCRYPTION_KEYS}}'));
		const configFile = writeConfig(fixture.dir, {...baseConfig(fixture.tarball), templatesDir: templates});
		const config = await loadConfig(configFile);
		const instance = new Engine({config, workspace: new Workspace(fixture.stateDir, config.name), runner: new Runner({executor: new FakeCluster(ips).executor}), prompter: headlessPrompter({yes: true, overwrite: false})});
		await expect(instance.prepare(false, {quiet: true})).rejects.toThrow(/templatesDir: has \{\{ENCRYPTION_KEYS\}\} after other text on its line \(got .*encryption-config\.yaml\)/);
		expect(secretCountScript).toBeTypeOf('function');
	});
});
