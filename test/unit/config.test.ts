import {chmodSync, existsSync, readFileSync, writeFileSync} from 'node:fs';
import path from 'node:path';
import {describe, expect, test} from 'vitest';
import {loadConfig} from '../../source/config/load.js';
import {configFromEnvironment, parseEnvironmentSh} from '../../source/config/from-env.js';
import {InputErrors, InputError} from '../../source/errors.js';
import {main} from '../../source/cli.js';
import {baseConfig, makeFixture, writeConfig} from '../helpers/fixture.js';

async function errorsOf(config: unknown): Promise<InputError[]> {
	const {dir} = makeFixture();
	try {
		await loadConfig(writeConfig(dir, config));
	} catch (error) {
		if (error instanceof InputErrors) {
			return error.errors;
		}

		if (error instanceof InputError) {
			return [error];
		}

		throw error;
	}

	throw new Error('config was accepted');
}

describe('config', () => {
	test('a complete config loads with defaults and the derived service IP', async () => {
		const {dir, tarball} = makeFixture();
		const config = await loadConfig(writeConfig(dir, baseConfig(tarball)));
		expect(config.serviceIp).toBe('10.254.0.1');
		expect(config.paths).toEqual({k8sDir: '/data/k8s/k8s', binDir: '/opt/k8s/bin', certDir: '/etc/kubernetes/cert', configDir: '/etc/kubernetes', nginxDir: '/opt/k8s/kube-nginx'});
		expect(config.ssh.hostKeys).toBe('strict');
		expect(config.kubeVersion.minor).toBe(28);
	});

	test('ssh.user and ssh.port are unset unless given (an old config\'s are kept); sshHost and the bastion are read', async () => {
		const {dir, tarball} = makeFixture();
		const old = await loadConfig(writeConfig(dir, baseConfig(tarball)));
		expect(old.ssh).toMatchObject({user: 'root', port: 22});
		expect(old.bastion).toBeUndefined();
		const raw = baseConfig(tarball);
		raw.ssh = {bastion: 'jump_1@Bastion-1.example.com:2222'};
		raw.masters[0].sshHost = 'cp1';
		const loaded = await loadConfig(writeConfig(dir, raw));
		expect(loaded.ssh.user).toBeUndefined();
		expect(loaded.ssh.port).toBeUndefined();
		expect(loaded.masters[0]!.sshHost).toBe('cp1');
		expect(loaded.bastion).toEqual({user: 'jump_1', host: 'Bastion-1.example.com', port: 2222});
		raw.ssh = {bastion: 'my-jump'};
		expect((await loadConfig(writeConfig(dir, raw))).bastion).toEqual({host: 'my-jump'});
	});

	test('a kubectl setting from an older config is accepted with a warning: no kubectl runs on this workstation any more', async () => {
		const {dir, tarball} = makeFixture();
		expect((await loadConfig(writeConfig(dir, baseConfig(tarball)))).warnings).toEqual([]);
		const config = await loadConfig(writeConfig(dir, {...baseConfig(tarball), kubectl: '/nonexistent/kubectl'}));
		expect(config.warnings).toEqual(['kubectl: no longer used, this workstation needs no kubectl (the tool calls the apiservers itself); remove the setting.']);
	});

	test('relative paths are read from the config file\'s folder', async () => {
		const {dir} = makeFixture();
		const config = await loadConfig(writeConfig(dir, baseConfig('./kubernetes-server-linux-amd64.tar.gz')));
		expect(config.binaries.tarball).toBe(path.join(dir, 'kubernetes-server-linux-amd64.tar.gz'));
	});

	const cases: Array<[string, (config: Record<string, any>) => void, string, RegExp]> = [
		['a bad IP', c => { c.masters[1].ip = '172.24.8.300'; }, 'masters[1].ip', /not an IPv4 address.*172\.24\.8\.300.*Fix:/],
		['a duplicate IP', c => { c.masters[2].ip = '172.24.8.71'; }, 'masters[2].ip', /repeats masters\[0\]\.ip/],
		['a duplicate name', c => { c.masters[1].name = 'k8smaster01'; }, 'masters[1].name', /repeats masters\[0\]\.name/],
		['a bad host name', c => { c.masters[0].name = 'Master_01'; }, 'masters[0].name', /RFC 1123/],
		['a malformed CIDR', c => { c.network.serviceCidr = '10.254.0.0/33'; }, 'network.serviceCidr', /not an IPv4 CIDR/],
		['a CIDR with host bits', c => { c.network.serviceCidr = '10.254.0.1/16'; }, 'network.serviceCidr', /host bits/],
		['a service CIDR holding a master', c => { c.network.serviceCidr = '172.24.0.0/16'; }, 'network.serviceCidr', /contains masters\[0\]\.ip/],
		['a bad version', c => { c.version = '1.28'; }, 'version', /vMAJOR\.MINOR\.PATCH/],
		['a too old version', c => { c.version = 'v1.13.0'; }, 'version', /not a supported/],
		['a bad etcd endpoint', c => { c.etcd.endpoints[0] = 'http://172.24.8.71:2379'; }, 'etcd.endpoints[0]', /https:\/\/HOST:PORT/],
		['a bad port range', c => { c.network.nodePortRange = '32767-30000'; }, 'network.nodePortRange', /LOW-HIGH/],
		['shell characters in a path', c => { c.paths.binDir = '/opt/k8s/bin;rm -rf /'; }, 'paths.binDir', /letters, digits/],
		['a relative remote path', c => { c.paths.certDir = 'etc/kubernetes'; }, 'paths.certDir', /absolute path/],
		['a missing tarball', c => { c.binaries.tarball = './missing.tar.gz'; }, 'binaries.tarball', /does not exist/],
		['both tarball and url', c => { c.binaries.url = 'https://dl.k8s.io/v1.28.7/kubernetes-server-linux-amd64.tar.gz'; }, 'binaries', /exactly one of tarball and url/],
		['no masters', c => { c.masters = []; }, 'masters', /lists no master/],
		['a missing required section', c => { delete c.etcd; }, 'etcd', /is required/],
		['a user name with a quote', c => { c.ssh.user = 'ro\'ot'; }, 'ssh.user', /POSIX user name/],
		['an sshHost that ssh would read as an option', c => { c.masters[1].sshHost = '-oProxyCommand=id'; }, 'masters[1].sshHost', /not a name ssh can be given/],
		['an sshHost with a space', c => { c.masters[0].sshHost = 'cp 1'; }, 'masters[0].sshHost', /not a name ssh can be given/],
		['a duplicate sshHost', c => { c.masters[0].sshHost = 'cp'; c.masters[2].sshHost = 'cp'; }, 'masters[2].sshHost', /repeats masters\[0\]\.sshHost/],
		['a bastion with a scheme', c => { c.ssh.bastion = 'ssh://jump@bastion:22'; }, 'ssh.bastion', /not \[USER@\]HOST\[:PORT\]/],
		['a bastion port out of range', c => { c.ssh.bastion = 'bastion:70000'; }, 'ssh.bastion', /not \[USER@\]HOST\[:PORT\]/],
		['a bastion starting with -', c => { c.ssh.bastion = '-oProxyCommand=id'; }, 'ssh.bastion', /not \[USER@\]HOST\[:PORT\]/],
	];

	test.each(cases)('%s names the field, the value and the fix', async (_, change, field, message) => {
		const {tarball} = makeFixture();
		const config = baseConfig(tarball);
		change(config);
		const errors = await errorsOf(config);
		const error = errors.find(each => each.field === field);
		expect(error, errors.map(each => each.message).join('\n')).toBeDefined();
		expect(error!.message).toMatch(message);
		expect(error!.fix.length).toBeGreaterThan(5);
	});

	test('an unknown key gets a "did you mean"', async () => {
		const {tarball} = makeFixture();
		const config = baseConfig(tarball);
		config.network.serviceCIDR = config.network.serviceCidr;
		const errors = await errorsOf(config);
		expect(errors.find(error => error.field === 'network.serviceCIDR')?.fix).toMatch(/did you mean "serviceCidr"/);
	});

	test('YAML syntax errors give the line', async () => {
		const errors = await errorsOf('version: v1.28.7\nmasters:\n  - {name: a, ip: 1.2.3.4\n');
		expect(errors[0]!.message).toMatch(/not valid YAML.*line \d+/);
	});

	test('an unreadable tarball is reported as such', async () => {
		const {dir, tarball} = makeFixture();
		chmodSync(tarball, 0o000);
		const config = baseConfig(tarball);
		if (process.getuid?.() === 0) {
			// root reads anything: a directory stands in for an unreadable file here.
			config.binaries.tarball = dir;
		}

		const errors = await errorsOf(config);
		expect(errors[0]!.field).toBe('binaries.tarball');
	});
});

const tutorialEnvironment = `#!/usr/bin/bash
export ENCRYPTION_KEY=$(head -c 32 /dev/urandom | base64)
export MASTER_IPS=(172.24.8.71 172.24.8.72 172.24.8.73)
export MASTER_NAMES=(k8smaster01 k8smaster02 k8smaster03)
export ETCD_ENDPOINTS="https://172.24.8.71:2379,https://172.24.8.72:2379,https://172.24.8.73:2379"
export K8S_DIR="/data/k8s/k8s"
export SERVICE_CIDR="10.254.0.0/16"   # service network
export NODE_PORT_RANGE="30000-32767"
export CLUSTER_KUBERNETES_SVC_IP="10.254.0.1"
export CLUSTER_DNS_DOMAIN="cluster.local."
export PATH=/opt/k8s/bin:$PATH
`;

describe('init --from-env', () => {
	test('reads the tutorial\'s environment.sh without running it', () => {
		const env = parseEnvironmentSh(tutorialEnvironment);
		expect(env.get('ENCRYPTION_KEY')?.kind).toBe('computed');
		expect(env.get('MASTER_IPS')).toEqual({kind: 'array', values: ['172.24.8.71', '172.24.8.72', '172.24.8.73']});
		const {config, encryptionKey, notes} = configFromEnvironment(tutorialEnvironment, {version: 'v1.14.2', tarball: './k.tar.gz', file: 'environment.sh'});
		expect(encryptionKey).toBeUndefined();
		expect(notes.join(' ')).toMatch(/computed .* not taken/);
		expect(config.masters).toHaveLength(3);
		// Written out: ssh.user is no longer root unless set, and the tutorial works as root.
		expect(config.ssh).toEqual({user: 'root'});
		expect(config.network).toMatchObject({serviceCidr: '10.254.0.0/16', clusterDomain: 'cluster.local'});
		// The hardening is a visible choice in the written file, with the way back named.
		expect(config.profile).toBe('cis');
		expect(notes.join(' ')).toMatch(/profile: tutorial keeps the tutorial's exact settings/);
	});

	test('a literal ENCRYPTION_KEY is taken once into a 0600 file, never into the config', async () => {
		const {dir} = makeFixture();
		const key = Buffer.alloc(32, 7).toString('base64');
		const envFile = path.join(dir, 'environment.sh');
		writeFileSync(envFile, tutorialEnvironment.replace('$(head -c 32 /dev/urandom | base64)', `"${key}"`));
		const out: string[] = [];
		const code = await main(['init', '--from-env', envFile, '--out', path.join(dir, 'cluster.yaml')], {out: line => out.push(line), err: line => out.push(line)});
		expect(code).toBe(0);
		const configText = readFileSync(path.join(dir, 'cluster.yaml'), 'utf8');
		expect(configText).not.toContain(key);
		expect(configText).toContain('keyFile: ./encryption.key');
		// A fixed key means a running cluster: its tokens stay signed with the CA key.
		expect(configText).toMatch(/serviceAccount:\n  signingKey: ca/);
		expect(readFileSync(path.join(dir, 'encryption.key'), 'utf8').trim()).toBe(key);
		expect(out.join('\n')).not.toContain(key);
		// Run again: the config exists, so nothing is replaced without --force.
		const again = await main(['init', '--from-env', envFile, '--out', path.join(dir, 'cluster.yaml')], {out: () => undefined, err: line => out.push(line)});
		expect(again).toBe(2);
		expect(existsSync(path.join(dir, 'cluster.yaml'))).toBe(true);
	});

	test('a service IP that does not match the service CIDR is refused', () => {
		expect(() => configFromEnvironment(tutorialEnvironment.replace('CLUSTER_KUBERNETES_SVC_IP="10.254.0.1"', 'CLUSTER_KUBERNETES_SVC_IP="10.96.0.1"'), {version: 'v1.14.2', tarball: 'k', file: 'environment.sh'}))
			.toThrow(/CLUSTER_KUBERNETES_SVC_IP.*not the first address/);
	});
});

describe('enumerated settings', () => {
	test('a wrong choice names the choices in the problem, with a fix that says where to look', async () => {
		const {dir, tarball} = makeFixture();
		const raw = baseConfig(tarball);
		raw.ssh.hostKeys = 'yes';
		try {
			await loadConfig(writeConfig(dir, raw));
			throw new Error('accepted');
		} catch (error) {
			const first = (error as InputErrors).errors[0]!;
			expect(first.field).toBe('ssh.hostKeys');
			expect(first.message).toMatch(/ssh\.hostKeys: Invalid option: expected one of "strict"\|"accept-new" \(got yes\)\. Fix: see README/);
		}
	});
});
