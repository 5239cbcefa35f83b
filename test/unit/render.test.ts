import {mkdirSync, readFileSync, writeFileSync} from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import {describe, expect, test} from 'vitest';
import {loadConfig} from '../../source/config/load.js';
import {ensureMaterial} from '../../source/pki/material.js';
import {renderArtifacts, renderEncryptionConfig, renderUnit} from '../../source/render/artifacts.js';
import type {StepContext} from '../../source/steps/types.js';
import {expectedSecretPrefix} from '../../source/steps/verify.js';
import {apiserverStop, cisCipherSuites, durationSeconds, parseVersion} from '../../source/versions.js';
import {Workspace} from '../../source/workspace.js';
import {baseConfig, makeFixture, writeConfig} from '../helpers/fixture.js';

async function configFor(version: string, settings: Record<string, unknown> = {}) {
	const {dir, tarball} = makeFixture(version);
	return {dir, config: await loadConfig(writeConfig(dir, {...baseConfig(tarball, version), ...settings}))};
}

function flagsOf(unit: string): string[] {
	return [...unit.matchAll(/^\s+(--[\w-]+(?:=\S+)?)/gm)].map(match => match[1]!);
}

/** The flags of the tutorial's unit (../shared/reference), for 172.24.8.71 with its environment. */
const tutorialFlags = [
	'--advertise-address=172.24.8.71', '--default-not-ready-toleration-seconds=360', '--default-unreachable-toleration-seconds=360',
	'--feature-gates=DynamicAuditing=true', '--max-mutating-requests-inflight=2000', '--max-requests-inflight=4000',
	'--default-watch-cache-size=200', '--delete-collection-workers=2', '--encryption-provider-config=/etc/kubernetes/encryption-config.yaml',
	'--etcd-cafile=/etc/kubernetes/cert/ca.pem', '--etcd-certfile=/etc/kubernetes/cert/kubernetes.pem', '--etcd-keyfile=/etc/kubernetes/cert/kubernetes-key.pem',
	'--etcd-servers=https://172.24.8.71:2379,https://172.24.8.72:2379,https://172.24.8.73:2379', '--bind-address=172.24.8.71', '--secure-port=6443',
	'--tls-cert-file=/etc/kubernetes/cert/kubernetes.pem', '--tls-private-key-file=/etc/kubernetes/cert/kubernetes-key.pem', '--insecure-port=0',
	'--audit-dynamic-configuration', '--audit-log-maxage=15', '--audit-log-maxbackup=3', '--audit-log-maxsize=100', '--audit-log-mode=batch',
	'--audit-log-truncate-enabled', '--audit-log-batch-buffer-size=20000', '--audit-log-batch-max-size=2', '--audit-log-path=/data/k8s/k8s/kube-apiserver/audit.log',
	'--audit-policy-file=/etc/kubernetes/audit-policy.yaml', '--profiling', '--anonymous-auth=false', '--client-ca-file=/etc/kubernetes/cert/ca.pem',
	'--enable-bootstrap-token-auth', '--requestheader-allowed-names=aggregator', '--requestheader-client-ca-file=/etc/kubernetes/cert/ca.pem',
	'--requestheader-extra-headers-prefix=X-Remote-Extra-', '--requestheader-group-headers=X-Remote-Group', '--requestheader-username-headers=X-Remote-User',
	'--service-account-key-file=/etc/kubernetes/cert/ca.pem', '--authorization-mode=Node,RBAC', '--runtime-config=api/all=true',
	'--enable-admission-plugins=NodeRestriction', '--allow-privileged=true', '--apiserver-count=3', '--event-ttl=168h',
	'--kubelet-certificate-authority=/etc/kubernetes/cert/ca.pem', '--kubelet-client-certificate=/etc/kubernetes/cert/kubernetes.pem',
	'--kubelet-client-key=/etc/kubernetes/cert/kubernetes-key.pem', '--kubelet-https=true', '--kubelet-timeout=10s',
	'--proxy-client-cert-file=/etc/kubernetes/cert/proxy-client.pem', '--proxy-client-key-file=/etc/kubernetes/cert/proxy-client-key.pem',
	'--service-cluster-ip-range=10.254.0.0/16', '--service-node-port-range=30000-32767', '--logtostderr=true', '--v=2',
];

describe('rendering the unit', () => {
	test('v1.14.2 with profile: tutorial gets exactly the tutorial\'s flags, in its order, when the CA key signs service-account tokens as there', async () => {
		const {config} = await configFor('v1.14.2', {serviceAccount: {signingKey: 'ca'}, profile: 'tutorial'});
		expect(flagsOf(renderUnit(config, '172.24.8.71'))).toEqual(tutorialFlags);
	});

	test('by default (profile: cis) the tutorial\'s flags change only where the CIS benchmark asks', async () => {
		const {config} = await configFor('v1.14.2', {serviceAccount: {signingKey: 'ca'}});
		const changed = new Map([
			['--profiling', '--profiling=false'], ['--audit-log-maxage=15', '--audit-log-maxage=30'], ['--audit-log-maxbackup=3', '--audit-log-maxbackup=10'],
		]);
		const expected = tutorialFlags.flatMap(flag => (flag === '--enable-admission-plugins=NodeRestriction' ? [flag, `--tls-cipher-suites=${cisCipherSuites.join(',')}`] : [changed.get(flag) ?? flag]));
		expect(flagsOf(renderUnit(config, '172.24.8.71'))).toEqual(expected);
		// From 1.25 also DenyServiceExternalIPs (the cis-1.23/1.24 benchmarks ask it off before).
		expect(flagsOf(renderUnit((await configFor('v1.24.17')).config, '172.24.8.71'))).toContain('--enable-admission-plugins=NodeRestriction');
		expect(flagsOf(renderUnit((await configFor('v1.28.7')).config, '172.24.8.71'))).toContain('--enable-admission-plugins=NodeRestriction,DenyServiceExternalIPs');
		expect(flagsOf(renderUnit((await configFor('v1.28.7', {profile: 'tutorial'})).config, '172.24.8.71'))).toContain('--enable-admission-plugins=NodeRestriction');
	});

	test('v1.28.7 gets only flags that release accepts, and the ones it requires', async () => {
		const {config} = await configFor('v1.28.7');
		const flags = flagsOf(renderUnit(config, '172.24.8.72'));
		for (const removed of ['--feature-gates=DynamicAuditing=true', '--insecure-port=0', '--audit-dynamic-configuration', '--kubelet-https=true', '--logtostderr=true', '--runtime-config=api/all=true', '--apiserver-count=3', '--service-account-key-file=/etc/kubernetes/cert/ca.pem']) {
			expect(flags).not.toContain(removed);
		}

		expect(flags).toContain('--service-account-issuer=https://kubernetes.default.svc.cluster.local');
		expect(flags).toContain('--service-account-signing-key-file=/etc/kubernetes/cert/sa.key');
		expect(flags).toContain('--service-account-key-file=/etc/kubernetes/cert/sa.pub');
		// Without it the batch audit writer busy-loops a core.
		expect(flags).toContain('--audit-log-batch-max-wait=1s');
		expect(flags).toContain('--advertise-address=172.24.8.72');
		expect(flags).toContain('--bind-address=172.24.8.72');
	});

	test('the unit is a Type=notify service with a working directory under k8sDir, its release\'s binary, and no quoted values', async () => {
		const {config} = await configFor('v1.28.7');
		const unit = renderUnit(config, '172.24.8.71');
		expect(unit).toContain('Type=notify');
		expect(unit).toContain('WorkingDirectory=/data/k8s/k8s/kube-apiserver');
		// The release's own folder, not binDir's link: a new release waits beside the running one.
		expect(unit).toContain('ExecStart=/opt/k8s/bin/v1.28.7/kube-apiserver \\');
		expect(unit).not.toMatch(/["']/);
		// Every continued line ends in a backslash except the last flag.
		const execLines = unit.split('\n').filter(line => line.startsWith('  --'));
		expect(execLines.slice(0, -1).every(line => line.endsWith(' \\'))).toBe(true);
		expect(execLines.at(-1)).toBe('  --v=2');
	});
});

describe('rendering the artifacts', () => {
	test('the encryption config is the canonical kind with one 32-byte aescbc key, then identity', async () => {
		const {dir, config} = await configFor('v1.14.2');
		const {material} = await ensureMaterial(config, new Workspace(`${dir}/state`, config.name));
		const artifacts = renderArtifacts(config, material);
		const encryption = artifacts.find(artifact => artifact.name === 'encryption-config.yaml')!;
		const parsed = YAML.parse(encryption.content);
		expect(parsed.apiVersion).toBe('apiserver.config.k8s.io/v1');
		expect(parsed.kind).toBe('EncryptionConfiguration');
		expect(parsed.resources[0].resources).toEqual(['secrets']);
		expect(parsed.resources[0].providers[0].aescbc.keys[0].name).toBe('key1');
		expect(Buffer.from(parsed.resources[0].providers[0].aescbc.keys[0].secret, 'base64')).toHaveLength(32);
		expect(parsed.resources[0].providers[1]).toEqual({identity: {}});
		expect(encryption.mode).toBe(0o600);
		expect(encryption.secret).toBe(true);
	});

	test('with one key the encryption config is byte for byte the one this tool always rendered', async () => {
		const {dir, config} = await configFor('v1.28.7');
		const {material} = await ensureMaterial(config, new Workspace(`${dir}/state`, config.name));
		const [key] = material.encryptionKeys;
		const content = renderArtifacts(config, material).find(artifact => artifact.name === 'encryption-config.yaml')!.content;
		expect(content).toBe(`apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources:
      - secrets
    providers:
      - aescbc:
          keys:
            - name: key1
              secret: ${key.secret}
      - identity: {}
`);
	});

	test('the encryption config of any phase of a rotation: the keys in the order given, the first writes', async () => {
		const {config} = await configFor('v1.28.7');
		const key1 = {name: 'key1', secret: Buffer.alloc(32, 1).toString('base64')};
		const key2 = {name: 'key2', secret: Buffer.alloc(32, 2).toString('base64')};
		const keysOf = (content: string) => (YAML.parse(content).resources[0].providers as Array<{aescbc?: {keys: unknown[]}; identity?: unknown}>);
		for (const phase of [[key1, key2], [key2, key1], [key2]] as const) {
			const artifact = renderEncryptionConfig(config, [...phase]);
			const providers = keysOf(artifact.content);
			expect(providers[0]!.aescbc!.keys).toEqual(phase);
			expect(providers[1]).toEqual({identity: {}});
			// What verify expects a new secret in etcd to start with: the first key's name.
			expect(expectedSecretPrefix({artifacts: [artifact]} as unknown as StepContext)).toBe(`k8s:enc:aescbc:v1:${phase[0].name}:`);
			expect(artifact).toMatchObject({name: 'encryption-config.yaml', mode: 0o600, secret: true, remote: {step: 'encryption', path: '/etc/kubernetes/encryption-config.yaml'}});
		}
	});

	test('an operator\'s copy of the encryption config from before several keys still renders the one key1; with more keys it is refused, named', async () => {
		const {dir, config: shipped} = await configFor('v1.28.7');
		const templates = path.join(dir, 'templates');
		mkdirSync(templates);
		const copy = readFileSync(new URL('../../templates/encryption-config.yaml', import.meta.url), 'utf8').replace('{{ENCRYPTION_KEYS}}', '            - name: key1\n              secret: {{ENCRYPTION_KEY}}');
		writeFileSync(path.join(templates, 'encryption-config.yaml'), copy);
		const config = {...shipped, templatesDir: templates};
		const key1 = {name: 'key1', secret: Buffer.alloc(32, 1).toString('base64')};
		const key2 = {name: 'key2', secret: Buffer.alloc(32, 2).toString('base64')};
		expect(renderEncryptionConfig(config, [key1]).content).toBe(renderEncryptionConfig(shipped, [key1]).content);
		expect(() => renderEncryptionConfig(config, [key2, key1])).toThrow(/^templatesDir: uses \{\{ENCRYPTION_KEY\}\}, which this tool does not fill for encryption-config\.yaml \(got .*encryption-config\.yaml\)\. Fix: use only \{\{ENCRYPTION_KEYS\}\}$/);
		// Alone, another key than key1 would be read under key1's name: refused too.
		expect(() => renderEncryptionConfig(config, [key2])).toThrow(/uses \{\{ENCRYPTION_KEY\}\}/);
	});

	test('the audit policy keeps the tutorial\'s rules at audit.k8s.io/v1', () => {
		const policy = YAML.parse(readFileSync(new URL('../../templates/audit-policy.yaml', import.meta.url), 'utf8'));
		expect(policy.apiVersion).toBe('audit.k8s.io/v1');
		expect(policy.kind).toBe('Policy');
		expect(policy.rules.map((rule: {level: string}) => rule.level)).toEqual(['None', 'None', 'None', 'None', 'None', 'None', 'None', 'Request', 'Request', 'Request', 'Metadata', 'Request', 'RequestResponse', 'Metadata']);
		expect(policy.rules[5].nonResourceURLs).toEqual(['/healthz*', '/version', '/swagger*']);
		expect(policy.rules[11].resources).toHaveLength(18);
	});

	test('every artifact has the tutorial\'s name; only what the masters need goes to them', async () => {
		const {dir, config} = await configFor('v1.28.7');
		const {material} = await ensureMaterial(config, new Workspace(`${dir}/state`, config.name));
		const artifacts = renderArtifacts(config, material);
		expect(artifacts.map(artifact => artifact.name).sort()).toEqual([
			'admin-key.pem', 'admin.kubeconfig', 'admin.pem', 'audit-policy.yaml', 'ca-key.pem', 'ca.pem', 'encryption-config.yaml',
			'kube-apiserver-172.24.8.71.service', 'kube-apiserver-172.24.8.72.service', 'kube-apiserver-172.24.8.73.service',
			'kube-controller-manager-172.24.8.71.service', 'kube-controller-manager-172.24.8.72.service', 'kube-controller-manager-172.24.8.73.service',
			'kube-controller-manager-key.pem', 'kube-controller-manager.kubeconfig', 'kube-controller-manager.pem',
			'kube-nginx.conf', 'kube-nginx.service',
			'kube-scheduler-172.24.8.71.service', 'kube-scheduler-172.24.8.72.service', 'kube-scheduler-172.24.8.73.service',
			'kube-scheduler-key.pem', 'kube-scheduler.kubeconfig', 'kube-scheduler.pem', 'kube-scheduler.yaml',
			'kubernetes-key.pem', 'kubernetes.pem', 'proxy-client-key.pem', 'proxy-client.pem', 'sa.key', 'sa.pub',
		]);
		const local = artifacts.filter(artifact => !artifact.remote).map(artifact => artifact.name).sort();
		// The CA key goes to the masters too: the controller-manager signs the kubelets' certificates with it.
		expect(local).toEqual(['admin-key.pem', 'admin.kubeconfig', 'admin.pem']);
		for (const artifact of artifacts) {
			// CIS 1.1: every file 0600 under the default profile; the tutorial leaves the public ones 0644.
			expect(artifact.mode, artifact.name).toBe(0o600);
			expect(artifact.secret, artifact.name).toBe(/key|encryption|kubeconfig/.test(artifact.name));
		}

		const kubeconfig = YAML.parse(artifacts.find(artifact => artifact.name === 'admin.kubeconfig')!.content);
		expect(kubeconfig.clusters[0].cluster.server).toBe('https://172.24.8.71:6443');
	});

	test('the admin kubeconfig without controlPlaneEndpoint: one cluster and context per master, named after it, the first current', async () => {
		const {dir, config} = await configFor('v1.28.7');
		const {material} = await ensureMaterial(config, new Workspace(`${dir}/state`, config.name));
		const kubeconfig = YAML.parse(renderArtifacts(config, material).find(artifact => artifact.name === 'admin.kubeconfig')!.content);
		const caData = Buffer.from(material.ca.certPem).toString('base64');
		expect(kubeconfig.clusters).toEqual(['71', '72', '73'].map((last, index) => ({name: `kubernetes-k8smaster0${index + 1}`, cluster: {'certificate-authority-data': caData, server: `https://172.24.8.${last}:6443`}})));
		expect(kubeconfig.contexts).toEqual(['1', '2', '3'].map(number => ({name: `k8smaster0${number}`, context: {cluster: `kubernetes-k8smaster0${number}`, user: 'admin'}})));
		expect(kubeconfig['current-context']).toBe('k8smaster01');
		expect(kubeconfig.users).toEqual([{name: 'admin', user: {'client-certificate-data': Buffer.from(material.leaves.admin.certPem).toString('base64'), 'client-key-data': Buffer.from(material.leaves.admin.keyPem).toString('base64')}}]);
	});

	test('the admin kubeconfig with controlPlaneEndpoint: its one server, port 6443 unless one is given', async () => {
		for (const [endpoint, server] of [['172.24.8.70', 'https://172.24.8.70:6443'], ['k8s-api.example.com:8443', 'https://k8s-api.example.com:8443']]) {
			const {dir, config} = await configFor('v1.28.7', {controlPlaneEndpoint: endpoint});
			const {material} = await ensureMaterial(config, new Workspace(`${dir}/state`, config.name));
			const kubeconfig = YAML.parse(renderArtifacts(config, material).find(artifact => artifact.name === 'admin.kubeconfig')!.content);
			expect(kubeconfig.clusters.map((entry: {name: string; cluster: {server: string}}) => [entry.name, entry.cluster.server])).toEqual([['kubernetes', server]]);
			expect(kubeconfig.contexts).toEqual([{name: 'admin@kubernetes', context: {cluster: 'kubernetes', user: 'admin'}}]);
			expect(kubeconfig['current-context']).toBe('admin@kubernetes');
		}
	});
});

const version = (text: string) => parseVersion(text)!;

describe('how a stopping apiserver is kept short', () => {
	test('each release gets the flag that shortens its stop, and none it does not know', async () => {
		const shutdownFlags = async (text: string) => flagsOf(renderUnit((await configFor(text)).config, '172.24.8.71')).filter(flag => flag.startsWith('--shutdown-'));
		expect(await shutdownFlags('v1.14.2')).toEqual([]);
		expect(await shutdownFlags('v1.22.17')).toEqual([]);
		expect(await shutdownFlags('v1.23.0')).toEqual(['--shutdown-send-retry-after=true']);
		expect(await shutdownFlags('v1.26.15')).toEqual(['--shutdown-send-retry-after=true']);
		expect(await shutdownFlags('v1.27.0')).toEqual(['--shutdown-watch-termination-grace-period=10s']);
		expect(await shutdownFlags('v1.28.7')).toEqual(['--shutdown-watch-termination-grace-period=10s']);
		// The tutorial's profile gets it too: it concerns this tool's own restarts, not the tutorial's settings.
		expect(flagsOf(renderUnit((await configFor('v1.28.7', {profile: 'tutorial'})).config, '172.24.8.71'))).toContain('--shutdown-watch-termination-grace-period=10s');
	});

	test('the bound and the reason follow the release and the flags as pflag reads them', () => {
		expect(apiserverStop(version('v1.28.7'), ['--shutdown-watch-termination-grace-period=10s'])).toEqual({seconds: 11, waitsFor: 'in-flight requests, then closes its watches (up to 10 s)'});
		expect(apiserverStop(version('v1.26.15'), ['--shutdown-send-retry-after=true'])).toMatchObject({seconds: 2});
		// A bare boolean is true; the last occurrence wins.
		expect(apiserverStop(version('v1.26.15'), ['--shutdown-send-retry-after'])).toMatchObject({seconds: 2});
		expect(apiserverStop(version('v1.26.15'), ['--shutdown-send-retry-after=true', '--shutdown-send-retry-after=false'])).toMatchObject({seconds: 60});
		// Without them a release built with Go 1.16+ waits for its watches up to the request timeout.
		expect(apiserverStop(version('v1.28.7'), [])).toEqual({seconds: 60, waitsFor: 'its open watches, up to the request timeout (60 s): this release cannot close them sooner'});
		expect(apiserverStop(version('v1.22.17'), ['--request-timeout=1m30s'])).toMatchObject({seconds: 90});
		// The grace period means nothing before 1.27; the delay adds to any of them.
		expect(apiserverStop(version('v1.26.15'), ['--shutdown-watch-termination-grace-period=10s'])).toMatchObject({seconds: 60});
		expect(apiserverStop(version('v1.28.7'), ['--shutdown-watch-termination-grace-period=5s', '--shutdown-delay-duration=20s'])).toMatchObject({seconds: 26});
		// Before 1.21 watches were dropped at once.
		expect(apiserverStop(version('v1.14.2'), [])).toMatchObject({seconds: 1, waitsFor: 'in-flight requests'});
	});

	test('Go durations', () => {
		expect(durationSeconds('1m30s')).toBe(90);
		expect(durationSeconds('500ms')).toBe(0.5);
		expect(durationSeconds('2h')).toBe(7200);
		expect(durationSeconds('10')).toBeUndefined();
		expect(durationSeconds(undefined)).toBeUndefined();
	});
});
