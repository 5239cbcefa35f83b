import {existsSync, mkdirSync, readFileSync, writeFileSync} from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import {describe, expect, test} from 'vitest';
import {loadConfig} from '../../source/config/load.js';
import {Engine} from '../../source/engine/engine.js';
import type {EngineEvent} from '../../source/engine/events.js';
import {headlessPrompter} from '../../source/engine/prompts.js';
import {InputErrors, isInputError} from '../../source/errors.js';
import {ensureMaterial} from '../../source/pki/material.js';
import {readCertificate} from '../../source/pki/certs.js';
import {renderArtifacts, renderUnit} from '../../source/render/artifacts.js';
import {releaseMisfits} from '../../source/render/fit.js';
import {Runner, type CommandSpec} from '../../source/runner.js';
import {configKinds, parseVersion, schedulerConfigVersion} from '../../source/versions.js';
import {Workspace} from '../../source/workspace.js';
import {FakeCluster} from '../helpers/fake-hosts.js';
import {baseConfig, makeFixture, writeConfig} from '../helpers/fixture.js';
import {fakeEngine} from '../helpers/engine.js';

const ips = ['172.24.8.71', '172.24.8.72', '172.24.8.73'];

function flagsOf(unit: string): string[] {
	return [...unit.matchAll(/^\s+(--[\w-]+(?:=\S+)?)/gm)].map(match => match[1]!);
}

async function configFor(version: string, settings: Record<string, unknown> = {}) {
	const fixture = makeFixture(version);
	return {...fixture, config: await loadConfig(writeConfig(fixture.dir, {...baseConfig(fixture.tarball, version), ...settings}))};
}

async function artifactsFor(version: string, settings: Record<string, unknown> = {}) {
	const {config, stateDir} = await configFor(version, settings);
	const {material} = await ensureMaterial(config, new Workspace(stateDir, config.name));
	return {config, material, artifacts: renderArtifacts(config, material)};
}

describe('controller-manager and scheduler', () => {
	test('v1.14.2 gets the tutorial\'s flags of its time; v1.28.7 none that it refuses', async () => {
		const old = (await configFor('v1.14.2', {profile: 'tutorial'})).config;
		const oldFlags = flagsOf(renderUnit(old, '172.24.8.71', 'kube-controller-manager'));
		for (const flag of ['--port=0', '--experimental-cluster-signing-duration=876000h', '--pod-eviction-timeout=6m0s', '--logtostderr=true', '--leader-elect', '--secure-port=10257', '--bind-address=172.24.8.71', '--profiling']) {
			expect(oldFlags).toContain(flag);
		}

		const current = (await configFor('v1.28.7')).config;
		const cm = flagsOf(renderUnit(current, '172.24.8.72', 'kube-controller-manager'));
		expect(cm).toContain('--cluster-signing-duration=876000h');
		expect(cm).toContain('--service-account-private-key-file=/etc/kubernetes/cert/sa.key');
		expect(cm).toContain('--kubeconfig=/etc/kubernetes/kube-controller-manager.kubeconfig');
		for (const removed of ['--port=0', '--experimental-cluster-signing-duration=876000h', '--pod-eviction-timeout=6m0s', '--logtostderr=true']) {
			expect(cm).not.toContain(removed);
		}

		const scheduler = flagsOf(renderUnit(current, '172.24.8.72', 'kube-scheduler'));
		expect(scheduler).toContain('--config=/etc/kubernetes/kube-scheduler.yaml');
		expect(scheduler).toContain('--secure-port=10259');
		expect(scheduler).not.toContain('--port=0');
	});

	test('by default (profile: cis) both serve on loopback only and profile nothing: on the command line and in the scheduler\'s config', async () => {
		const {config, dir} = await configFor('v1.28.7');
		for (const component of ['kube-controller-manager', 'kube-scheduler'] as const) {
			const flags = flagsOf(renderUnit(config, '172.24.8.72', component));
			expect(flags, component).toContain('--bind-address=127.0.0.1');
			expect(flags, component).toContain('--profiling=false');
			expect(flags, component).not.toContain('--profiling');
		}

		const {material} = await ensureMaterial(config, new Workspace(`${dir}/state`, config.name));
		const schedulerConfig = YAML.parse(renderArtifacts(config, material).find(artifact => artifact.name === 'kube-scheduler.yaml')!.content);
		expect(schedulerConfig.enableProfiling).toBe(false);
		const tutorial = (await configFor('v1.28.7', {profile: 'tutorial'})).config;
		expect(YAML.parse(renderArtifacts(tutorial, material).find(artifact => artifact.name === 'kube-scheduler.yaml')!.content).enableProfiling).toBe(true);
	});

	test('the scheduler config kind is one each release reads, for every supported release', () => {
		const expected: Record<number, string> = {14: 'v1alpha1', 18: 'v1alpha1', 19: 'v1beta1', 21: 'v1beta1', 22: 'v1beta2', 23: 'v1beta3', 24: 'v1beta3', 25: 'v1', 28: 'v1', 34: 'v1'};
		for (const [minor, kind] of Object.entries(expected)) {
			expect(schedulerConfigVersion(parseVersion(`v1.${minor}.0`)!), `1.${minor}`).toBe(kind);
		}

		for (let minor = 14; minor <= 34; minor++) {
			const version = parseVersion(`v1.${minor}.0`)!;
			const apiVersion = `kubescheduler.config.k8s.io/${schedulerConfigVersion(version)}`;
			const accepted = configKinds.filter(entry => entry.apiVersion === apiVersion && (entry.since ?? 0) <= minor && (entry.until ?? 999) > minor);
			expect(accepted, `1.${minor}`).toHaveLength(1);
		}
	});

	test('every release from v1.14 to v1.34 renders files that fit it', async () => {
		const {material} = await artifactsFor('v1.28.7');
		for (let minor = 14; minor <= 34; minor++) {
			const {config} = await configFor(`v1.${minor}.3`);
			expect(releaseMisfits(config, renderArtifacts(config, material)), `v1.${minor}.3`).toEqual([]);
		}
	});

	test('component certificates name the user and group the default RBAC roles expect, and serve on the masters\' addresses', async () => {
		const {material} = await artifactsFor('v1.28.7');
		for (const component of ['kube-controller-manager', 'kube-scheduler'] as const) {
			const facts = readCertificate(material.leaves[component].certPem);
			expect(facts.subject).toContain(`O=system:${component}`);
			expect(facts.subject).toContain(`CN=system:${component}`);
			expect(facts.ipSans).toEqual(['127.0.0.1', ...ips].sort());
			expect(facts.serverAuth && facts.clientAuth).toBe(true);
		}
	});

	test('component kubeconfigs reach the apiservers through kube-nginx with their own certificate', async () => {
		const {artifacts, material} = await artifactsFor('v1.28.7');
		const kubeconfig = YAML.parse(artifacts.find(artifact => artifact.name === 'kube-scheduler.kubeconfig')!.content);
		expect(kubeconfig.clusters[0].cluster.server).toBe('https://127.0.0.1:8443');
		expect(kubeconfig.users[0].name).toBe('system:kube-scheduler');
		expect(Buffer.from(kubeconfig.users[0].user['client-certificate-data'], 'base64').toString()).toBe(material.leaves['kube-scheduler'].certPem);
		const schedulerConfig = YAML.parse(artifacts.find(artifact => artifact.name === 'kube-scheduler.yaml')!.content);
		expect(schedulerConfig).toEqual({apiVersion: 'kubescheduler.config.k8s.io/v1', kind: 'KubeSchedulerConfiguration', clientConnection: {kubeconfig: '/etc/kubernetes/kube-scheduler.kubeconfig'}, leaderElection: {leaderElect: true}, enableProfiling: false});
	});
});

describe('kube-nginx', () => {
	test('proxies 127.0.0.1:8443 to every apiserver with a short connect timeout, loading the distribution\'s stream module', async () => {
		const {artifacts} = await artifactsFor('v1.28.7');
		const nginx = artifacts.find(artifact => artifact.name === 'kube-nginx.conf')!.content;
		expect(nginx.split('\n')[0]).toBe('load_module /usr/lib/nginx/modules/ngx_stream_module.so;');
		expect(nginx).toContain('listen 127.0.0.1:8443;');
		expect(nginx).toContain('proxy_connect_timeout 1s;');
		expect([...nginx.matchAll(/server (\S+):6443 /g)].map(match => match[1])).toEqual(ips);
		const unit = artifacts.find(artifact => artifact.name === 'kube-nginx.service')!.content;
		expect(unit).toContain('ExecStart=/usr/sbin/nginx -c /opt/k8s/kube-nginx/conf/kube-nginx.conf -p /opt/k8s/kube-nginx');
		expect(unit).toContain('PIDFile=/opt/k8s/kube-nginx/logs/kube-nginx.pid');
	});

	test('an nginx built with the stream module loads nothing', async () => {
		const {artifacts} = await artifactsFor('v1.28.7', {nginx: {binary: '/opt/k8s/kube-nginx/sbin/kube-nginx', streamModule: 'builtin'}});
		expect(artifacts.find(artifact => artifact.name === 'kube-nginx.conf')!.content).not.toContain('load_module');
		expect(artifacts.find(artifact => artifact.name === 'kube-nginx.service')!.content).toContain('ExecStart=/opt/k8s/kube-nginx/sbin/kube-nginx -c');
	});
});

describe('fit to the release', () => {
	test('an extra flag the release removed is named with the field and the fix; apply refuses it before any host is written to', async () => {
		const {config, dir, stateDir} = await configFor('v1.28.7', {extraFlags: {'kube-apiserver': ['--insecure-port=0']}});
		const cluster = new FakeCluster(ips);
		const engine = fakeEngine(cluster, config, stateDir);
		const warnings: string[] = [];
		engine.subscribe(event => {
			if (event.type === 'warning') {
				warnings.push(event.message);
			}
		});
		await engine.plan();
		expect(warnings.join('\n')).toMatch(/kube-apiserver-172\.24\.8\.71\.service: --insecure-port=0 is refused by kube-apiserver from v1\.24; apply refuses it/);
		const error = await engine.apply({confirm: true}).catch((error_: unknown) => error_);
		expect(isInputError(error)).toBe(true);
		expect((error as InputErrors).message).toMatch(/extraFlags\.kube-apiserver.*v1\.28\.7.*--insecure-port=0 is refused.*Fix: drop it/s);
		// The masters were only read (preflight's facts, started early) and their connections closed, never written to.
		const reads = (call: CommandSpec) => (call.args.at(-1) ?? '').includes('echo "uid=$(id -u)"') || call.args.includes('-O');
		expect(cluster.calls.filter(call => call.command === 'ssh' && !reads(call))).toEqual([]);
		expect([...cluster.hosts.values()].every(host => host.files.size === 0 && !host.active)).toBe(true);
		expect(existsSync(path.join(stateDir, 'kubernetes', 'state.json'))).toBe(false);
		expect(dir).toBeTruthy();
	});

	test('an operator\'s template with the tutorial\'s v1beta1 audit policy is refused on v1.24 and accepted on v1.23', async () => {
		const templates = path.join(makeFixture().dir, 'templates');
		mkdirSync(templates);
		writeFileSync(path.join(templates, 'audit-policy.yaml'), 'apiVersion: audit.k8s.io/v1beta1\nkind: Policy\nrules:\n  - level: Metadata\n');
		const newer = await artifactsFor('v1.24.0', {templatesDir: templates});
		expect(releaseMisfits(newer.config, newer.artifacts)).toEqual([{file: 'audit-policy.yaml', problem: 'audit.k8s.io/v1beta1 Policy is not read by v1.24.0 (it reads audit.k8s.io/v1 Policy)', fix: expect.stringContaining('audit.k8s.io/v1') as string}]);
		const older = await artifactsFor('v1.23.0', {templatesDir: templates});
		expect(releaseMisfits(older.config, older.artifacts)).toEqual([]);
	});

	test('an operator\'s unit template with the tutorial\'s v1.14 flags is refused on 1.28, one misfit per flag', async () => {
		const templates = path.join(makeFixture().dir, 'templates');
		mkdirSync(templates);
		writeFileSync(path.join(templates, 'kube-apiserver.service'), '[Service]\nExecStart={{BIN_DIR}}/kube-apiserver \\\n  --feature-gates=DynamicAuditing=true \\\n  --insecure-port=0 \\\n  --kubelet-https=true \\\n  --logtostderr=true \\\n  --service-account-key-file=/etc/kubernetes/cert/ca.pem\n');
		const {config, artifacts} = await artifactsFor('v1.28.7', {templatesDir: templates});
		const misfits = releaseMisfits(config, artifacts).filter(misfit => misfit.file === 'kube-apiserver-172.24.8.71.service');
		expect(misfits.map(misfit => misfit.problem)).toEqual([
			'--feature-gates=DynamicAuditing=true is refused by kube-apiserver from v1.19',
			'--insecure-port=0 is refused by kube-apiserver from v1.24',
			'--kubelet-https=true is refused by kube-apiserver from v1.22',
			'--logtostderr=true is refused by kube-apiserver from v1.26',
			'kube-apiserver from v1.20 requires --service-account-issuer and --service-account-signing-key-file',
		]);
	});

	test('an operator\'s template using a placeholder this tool does not fill is named', async () => {
		const templates = path.join(makeFixture().dir, 'templates');
		mkdirSync(templates);
		writeFileSync(path.join(templates, 'kube-nginx.conf'), '{{LOAD_MODULE}}\nstream { upstream b { {{SERVERS}} } }\n');
		const error = await artifactsFor('v1.28.7', {templatesDir: templates}).catch((error_: unknown) => error_);
		expect(isInputError(error)).toBe(true);
		expect(String((error as Error).message)).toMatch(/^templatesDir: uses \{\{SERVERS\}\}, which this tool does not fill for kube-nginx\.conf \(got .*kube-nginx\.conf\)\. Fix: use only \{\{LOAD_MODULE\}\}, \{\{UPSTREAMS\}\}$/);
	});
});

describe('service-account signing key', () => {
	test('changing it on a cluster that already has tokens is refused, naming the setting that keeps it', async () => {
		const {config, stateDir, dir, tarball} = await configFor('v1.14.2', {serviceAccount: {signingKey: 'ca'}});
		const workspace = new Workspace(stateDir, config.name);
		const {record} = await ensureMaterial(config, workspace);
		expect(record.serviceAccountKey).toBe('ca');
		const changed = await loadConfig(writeConfig(dir, baseConfig(tarball, 'v1.14.2')));
		const error = await ensureMaterial(changed, workspace, {previous: record}).catch((error_: unknown) => error_);
		expect(isInputError(error)).toBe(true);
		expect((error as Error).message).toMatch(/^serviceAccount\.signingKey: differs from the CA key .* \(got dedicated\)\. Fix: set serviceAccount\.signingKey: ca$/);
		expect(existsSync(workspace.pki('sa.key'))).toBe(false);
	});

	test('with the CA key the apiserver and the controller-manager both use it; no sa.key is made', async () => {
		const {config, material, artifacts} = await artifactsFor('v1.28.7', {serviceAccount: {signingKey: 'ca'}});
		expect(material.serviceAccount).toBeUndefined();
		expect(artifacts.some(artifact => artifact.name === 'sa.key')).toBe(false);
		expect(flagsOf(renderUnit(config, '172.24.8.71'))).toEqual(expect.arrayContaining(['--service-account-key-file=/etc/kubernetes/cert/ca.pem', '--service-account-signing-key-file=/etc/kubernetes/cert/ca-key.pem']));
		expect(flagsOf(renderUnit(config, '172.24.8.71', 'kube-controller-manager'))).toContain('--service-account-private-key-file=/etc/kubernetes/cert/ca-key.pem');
	});
});

describe('verify', () => {
	async function installed() {
		const {config, stateDir} = await configFor('v1.28.7');
		const cluster = new FakeCluster(ips);
		const engine = () => {
			const instance = fakeEngine(cluster, config, stateDir);
			const events: EngineEvent[] = [];
			instance.subscribe(event => events.push(event));
			return {instance, events};
		};

		return {cluster, engine, stateDir};
	}

	test('before any install it says so, naming what to run', async () => {
		const {engine} = await installed();
		const error = await engine().instance.verify().catch((error_: unknown) => error_);
		expect(isInputError(error)).toBe(true);
		expect((error as Error).message).toMatch(/holds no install.*run apply first/s);
	});

	test('a master whose apiserver runs without the encryption config fails the encryption check; the test secret is deleted', async () => {
		const {cluster, engine} = await installed();
		await engine().instance.apply({confirm: true});
		const {instance, events} = engine();
		expect(await instance.verify()).toBe(true);
		for (const host of cluster.hosts.values()) {
			host.files.delete('/etc/kubernetes/encryption-config.yaml');
		}

		const again = engine();
		expect(await again.instance.verify()).toBe(false);
		const failed = again.events.filter(event => event.type === 'check' && event.level === 'fail');
		expect(failed.map(event => event.type === 'check' && `${event.host} ${event.check}`)).toEqual(['cluster secrets encrypted in etcd']);
		expect(cluster.secrets.size).toBe(0);
		expect(events.filter(event => event.type === 'check').length).toBeGreaterThan(0);
	});

	test('a stopped scheduler on one master fails that master\'s check and names the fix', async () => {
		const {cluster, engine} = await installed();
		await engine().instance.apply({confirm: true});
		cluster.hosts.get('172.24.8.73')!.units.delete('kube-scheduler');
		const {instance, events} = engine();
		expect(await instance.verify()).toBe(false);
		const failed = events.filter(event => event.type === 'check' && event.level === 'fail');
		expect(failed).toEqual([expect.objectContaining({host: 'k8smaster03', check: 'scheduler healthy', fix: 'journalctl -u kube-scheduler on k8smaster03'})]);
	});
});

describe('what an operator taking over or changing a running cluster relies on', () => {
	function cluster(settings: Record<string, unknown> = {}) {
		const fixture = makeFixture('v1.28.7');
		const configFile = writeConfig(fixture.dir, {...baseConfig(fixture.tarball), ...settings});
		const fake = new FakeCluster(ips);
		const engine = async () => {
			const config = await loadConfig(configFile);
			return fakeEngine(fake, config, fixture.stateDir);
		};

		return {...fixture, configFile, fake, engine};
	}

	test('a cluster whose apiservers already answer is restarted one master at a time, even without a record of this install', async () => {
		const {fake, engine} = cluster();
		for (const host of fake.hosts.values()) {
			host.active = true;
		}

		fake.failRestart.add('172.24.8.72');
		await (await engine()).apply({confirm: true}).catch(() => undefined);
		// Master 3 was left serving: the failure on master 2 stopped the rolling restart.
		expect(fake.restartOrder).toEqual(['172.24.8.71', '172.24.8.72']);
		expect(fake.hosts.get('172.24.8.73')!.restarts).toBe(0);
	});

	test('a new kube-nginx config alone is reloaded, not restarted: the components keep their connections', async () => {
		const {fake, engine, dir, tarball} = cluster();
		await (await engine()).apply({confirm: true});
		const templates = path.join(dir, 'templates');
		mkdirSync(templates);
		writeFileSync(path.join(templates, 'kube-nginx.conf'), '{{LOAD_MODULE}}\nworker_processes 2;\nstream { upstream backend {\n{{UPSTREAMS}}\n} server { listen 127.0.0.1:8443; proxy_pass backend; } }\n');
		writeConfig(dir, {...baseConfig(tarball), templatesDir: templates});
		await (await engine()).apply({confirm: true});
		expect(fake.reloads.sort()).toEqual(ips.map(ip => `${ip} kube-nginx`));
		expect(ips.map(ip => fake.hosts.get(ip)!.unitRestarts.get('kube-nginx'))).toEqual([1, 1, 1]);
	});

	test('with an imported CA, tokens its key signed stay valid beside sa.pub; clusterSigning: false keeps the CA key off the masters', async () => {
		const {config, artifacts} = await artifactsFor('v1.28.7', {certificates: {clusterSigning: false}});
		expect(artifacts.find(artifact => artifact.name === 'ca-key.pem')?.remote).toBeUndefined();
		expect(flagsOf(renderUnit(config, '172.24.8.71', 'kube-controller-manager')).filter(flag => flag.includes('cluster-signing'))).toEqual([]);
		const {dir} = makeFixture();
		const fixture = await configFor('v1.28.7');
		const {material} = await ensureMaterial(fixture.config, new Workspace(fixture.stateDir, fixture.config.name));
		writeFileSync(path.join(dir, 'ca.pem'), material.ca.certPem);
		writeFileSync(path.join(dir, 'ca-key.pem'), material.ca.keyPem);
		const imported = (await configFor('v1.28.7', {ca: {certFile: path.join(dir, 'ca.pem'), keyFile: path.join(dir, 'ca-key.pem')}})).config;
		expect(flagsOf(renderUnit(imported, '172.24.8.71')).filter(flag => flag.startsWith('--service-account-key-file'))).toEqual(['--service-account-key-file=/etc/kubernetes/cert/sa.pub', '--service-account-key-file=/etc/kubernetes/cert/ca.pem']);
	});

	test('before 1.22 the scheduler\'s plain-HTTP port is bound to loopback by its config (--port is ignored with --config)', async () => {
		const old = await artifactsFor('v1.21.0');
		expect(YAML.parse(old.artifacts.find(artifact => artifact.name === 'kube-scheduler.yaml')!.content)).toMatchObject({apiVersion: 'kubescheduler.config.k8s.io/v1beta1', healthzBindAddress: '127.0.0.1:10251', metricsBindAddress: '127.0.0.1:10251'});
		const current = await artifactsFor('v1.22.0');
		expect(current.artifacts.find(artifact => artifact.name === 'kube-scheduler.yaml')!.content).not.toContain('BindAddress');
	});

	test('verify fails a master that serves plain HTTP on 10251 beyond loopback', async () => {
		const {fake, engine} = cluster();
		await (await engine()).apply({confirm: true});
		fake.hosts.get('172.24.8.72')!.listening.push({port: 10_251, process: 'kube-scheduler'});
		const instance = await engine();
		const failed: string[] = [];
		instance.subscribe(event => {
			if (event.type === 'check' && event.level === 'fail') {
				failed.push(`${event.host} ${event.check}: ${event.detail}`);
			}
		});
		expect(await instance.verify()).toBe(false);
		expect(failed).toEqual(['k8smaster02 no insecure ports: plain HTTP on 0.0.0.0:10251']);
	});
});

describe('reset', () => {
	test('removes what this install put on every master, keeps a file changed by hand and the local CA and keys; apply then reinstalls with the same CA', async () => {
		const fixture = makeFixture('v1.28.7');
		const config = await loadConfig(writeConfig(fixture.dir, baseConfig(fixture.tarball)));
		const fake = new FakeCluster(ips);
		const engine = (yes = true) => new Engine({config, workspace: new Workspace(fixture.stateDir, config.name), runner: new Runner({executor: fake.executor}), prompter: headlessPrompter({yes, overwrite: false}), probe: fake.probe, api: fake.api});
		await (await engine()).apply({confirm: true});
		const workspace = new Workspace(fixture.stateDir, config.name);
		const caBefore = readFileSync(workspace.pki('ca.pem'), 'utf8');
		fake.hosts.get('172.24.8.72')!.files.set('/etc/kubernetes/audit-policy.yaml', {content: Buffer.from('# mine\n'), mode: 0o644, owner: 'root'});

		const refused = await (await engine(false)).reset({confirm: true}).catch((error: unknown) => error);
		expect((refused as Error).message).toMatch(/There is no terminal to confirm on/);
		expect(fake.running('172.24.8.71')).toHaveLength(4);

		const events: EngineEvent[] = [];
		const instance = await engine();
		instance.subscribe(event => events.push(event));
		await instance.reset({confirm: true});
		for (const ip of ips) {
			expect(fake.running(ip)).toEqual([]);
			const left = [...fake.hosts.get(ip)!.files.keys()];
			expect(left).toEqual(ip === '172.24.8.72' ? ['/etc/kubernetes/audit-policy.yaml'] : []);
		}

		expect(events.some(event => event.type === 'host-done' && event.host === 'k8smaster02' && /kept 1 changed since this install wrote them: \/etc\/kubernetes\/audit-policy\.yaml/.test(event.detail ?? ''))).toBe(true);
		expect(instance.state.isEmpty).toBe(true);
		expect(readFileSync(workspace.pki('ca.pem'), 'utf8')).toBe(caBefore);
		expect(existsSync(workspace.pki('encryption.key'))).toBe(true);

		fake.hosts.get('172.24.8.72')!.files.delete('/etc/kubernetes/audit-policy.yaml');
		await (await engine()).apply({confirm: true});
		expect(ips.map(ip => fake.running(ip).length)).toEqual([4, 4, 4]);
		expect(fake.hosts.get('172.24.8.71')!.files.get('/etc/kubernetes/cert/ca.pem')?.content.toString()).toBe(caBefore);
	});

	test('--remove-local also deletes the state folder, after the masters are clean', async () => {
		const fixture = makeFixture('v1.28.7');
		const config = await loadConfig(writeConfig(fixture.dir, baseConfig(fixture.tarball)));
		const fake = new FakeCluster(ips);
		// --no-backup: the snapshot reset takes first would be deleted with the state folder (backup.test.ts).
		const engine = () => fakeEngine(fake, config, fixture.stateDir, {backup: {skip: true}});
		await (await engine()).apply({confirm: true});
		fake.hosts.get('172.24.8.73')!.reachable = false;
		await expect((await engine()).reset({confirm: true, removeLocal: true})).rejects.toThrow(/reset failed on k8smaster03/);
		// Nothing local is deleted while a master still holds the install.
		expect(existsSync(path.join(fixture.stateDir, 'kubernetes', 'pki', 'ca-key.pem'))).toBe(true);
		fake.hosts.get('172.24.8.73')!.reachable = true;
		await (await engine()).reset({confirm: true, removeLocal: true});
		expect(existsSync(path.join(fixture.stateDir, 'kubernetes'))).toBe(false);
	});
});
