import {existsSync, readFileSync, statSync, writeFileSync} from 'node:fs';
import path from 'node:path';
import {cleanup} from 'ink-testing-library';
import {afterEach, describe, expect, test} from 'vitest';
import YAML from 'yaml';
import {loadConfig} from '../../../source/config/load.js';
import {baseConfig, writeConfig} from '../../helpers/fixture.js';
import {keys, mount, setup} from './helpers.js';

afterEach(cleanup);

const environment = (key: string) => `#!/usr/bin/bash
export ENCRYPTION_KEY="${key}"
export MASTER_IPS=(10.0.0.11 10.0.0.12 10.0.0.13)
export MASTER_NAMES=(m1 m2 m3)
export ETCD_ENDPOINTS="https://10.0.0.11:2379,https://10.0.0.12:2379,https://10.0.0.13:2379"
export K8S_DIR="/data/k8s/k8s"
export SERVICE_CIDR="10.254.0.0/16"
export NODE_PORT_RANGE="30000-32767"
export CLUSTER_DNS_DOMAIN="cluster.local."
`;

describe('wizard', () => {
	test('asks every fact, checks each as typed (field named), shows the service IP, writes YAML that loads, then the plan', async () => {
		const {session, configFile, tarball} = setup({config: false});
		const app = mount(session());
		const start = await app.until('How do you want to describe the cluster?');
		expect(start).toContain(`Guided setup: there is no ${configFile} yet.`);
		expect(start).toContain('Import the tutorial\'s environment.sh');
		await app.press(keys.enter);

		let frame = await app.until('Kubernetes release to install');
		expect(frame).toContain('› v1.14.2');
		expect(frame).toContain('Enter accept  ·  Esc back  ·  Ctrl-U clear  ·  Ctrl-C quit');
		await app.type('1.28');
		frame = await app.until('✘ version: is not a supported Kubernetes release');
		expect(frame).toContain('write vMAJOR.MINOR.PATCH from v1.14.0 on');
		await app.press(keys.enter);
		expect(app.frame()).toContain('Kubernetes release to install');
		await app.type('v1.28.7');
		await app.until('› v1.28.7');
		await app.press(keys.enter);

		await app.until('Server tarball of that release');
		await app.type('./missing.tar.gz');
		await app.until(/⚠ .*missing\.tar\.gz does not exist yet/);
		await app.type(path.basename(tarball));
		await app.until(/✔ found, \d+ B/);
		await app.press(keys.enter);

		frame = await app.until('Master 1: host name');
		expect(frame).toContain('› k8smaster01');
		await app.press(keys.enter);
		await app.until('Master 1: IP address of k8smaster01');
		await app.type('172.24.8.300');
		frame = await app.until('✘ masters[0].ip: is not an IPv4 address');
		expect(frame).toContain('write four numbers 0-255 separated by dots');
		await app.press(keys.enter);
		expect(app.frame()).toContain('Master 1: IP address of k8smaster01');
		await app.type('172.24.8.71');
		await app.press(keys.enter);

		frame = await app.until('Add a master');
		expect(frame).toMatch(/masters\[0\] {2}k8smaster01 {2}172\.24\.8\.71/);
		expect(frame).toContain('⚠ 1 master: a highly available control plane usually has 3');
		await app.press(keys.down, keys.enter);
		frame = await app.until('Master 2: host name');
		expect(frame).toContain('› k8smaster02');
		await app.type('k8smaster01');
		await app.until('✘ masters[1].name: repeats masters[0].name');
		await app.type('K8S_Master');
		await app.until('✘ masters[1].name: is not a valid host name');
		await app.type('k8smaster02');
		await app.press(keys.enter);
		frame = await app.until('Master 2: IP address of k8smaster02');
		expect(frame).toContain('› 172.24.8.72');
		await app.type('172.24.8.71');
		await app.until('✘ masters[1].ip: repeats masters[0].ip (k8smaster01)');
		await app.type('172.24.8.72');
		await app.press(keys.enter);
		await app.until('Remove the last one (k8smaster02)');
		await app.press(keys.down, keys.enter);
		await app.until('Master 3: host name');
		await app.press(keys.enter);
		await app.until('Master 3: IP address of k8smaster03');
		await app.press(keys.enter);
		frame = await app.until('Done: next question');
		expect(frame).not.toContain('usually has 3');
		await app.press(keys.enter);

		await app.until('ssh user on the masters');
		await app.press(keys.enter);
		await app.until('ssh port');
		await app.type('twenty-two');
		await app.until('✘ ssh.port: must be a number');
		await app.type('70000');
		await app.until('✘ ssh.port: must be between 1 and 65535');
		await app.type('22');
		await app.press(keys.enter);
		await app.until('ssh identity file (optional)');
		await app.press(keys.enter);
		frame = await app.until('etcd client URLs');
		expect(frame).toContain('› https://172.24.8.71:2379, https://172.24.8.72:2379, https://172.24.8.73:2379');
		await app.press(keys.enter);

		frame = await app.until('Service CIDR');
		expect(frame).toContain('› 10.254.0.0/16');
		expect(frame).toContain('→ kubernetes service IP 10.254.0.1');
		await app.type('10.96.0.0/12');
		frame = await app.until('→ kubernetes service IP 10.96.0.1');
		await app.type('172.24.0.0/16');
		frame = await app.until('✘ network.serviceCidr: contains masters[0].ip 172.24.8.71');
		await app.type('10.96.0.1/12');
		await app.until('✘ network.serviceCidr: has host bits set');
		await app.type('10.96.0.0/12');
		await app.until('→ kubernetes service IP 10.96.0.1');
		await app.press(keys.enter);
		await app.until('NodePort range');
		await app.press(keys.enter);
		await app.until('Working folder on the masters');
		await app.type('data/k8s');
		await app.until('✘ paths.k8sDir: must be an absolute path');
		await app.type('/data/k8s/k8s');
		await app.press(keys.enter);

		frame = await app.until('Review: this is what will be written to');
		expect(frame).toContain('✔ The whole config checks out.');
		expect(frame).toMatch(/network\.serviceCidr +10\.96\.0\.0\/12 {2}→ kubernetes service IP 10\.96\.0\.1/);
		expect(existsSync(configFile)).toBe(false);
		await app.press(keys.enter);

		frame = await app.until('Start the install on k8smaster01, k8smaster02, k8smaster03');
		expect(frame).toContain(`✔ wrote ${configFile}`);
		const config = await loadConfig(configFile);
		expect(config.version).toBe('v1.28.7');
		expect(config.masters).toEqual([{name: 'k8smaster01', ip: '172.24.8.71'}, {name: 'k8smaster02', ip: '172.24.8.72'}, {name: 'k8smaster03', ip: '172.24.8.73'}]);
		expect(config.serviceIp).toBe('10.96.0.1');
		expect(config.etcd.endpoints).toHaveLength(3);
		expect(config.binaries.tarball).toBe(tarball);
		expect(readFileSync(configFile, 'utf8')).toMatch(/^# Written by k8s-master-install \(guided setup\)/);
		expect(YAML.parse(readFileSync(configFile, 'utf8')).binaries.tarball).toBe('./kubernetes-server-linux-amd64.tar.gz');
	});

	test('imports environment.sh: review, then write; the literal encryption key goes to a 0600 file', async () => {
		const {session, configFile, dir} = setup({config: false});
		const key = Buffer.alloc(32, 9).toString('base64');
		writeFileSync(path.join(dir, 'environment.sh'), environment(key));
		const app = mount(session());
		await app.until('How do you want to describe the cluster?');
		await app.press(keys.down, keys.enter);
		let frame = await app.until('Path of the tutorial\'s environment.sh');
		expect(frame).toContain('› ./environment.sh');
		await app.type('./nope.sh');
		await app.press(keys.enter);
		await app.until(/✘ environment\.sh: does not exist/);
		await app.type('./environment.sh');
		await app.press(keys.enter);

		frame = await app.until('Review: this is what will be written to');
		expect(frame).toMatch(/masters +m1 10\.0\.0\.11, m2 10\.0\.0\.12, m3 10\.0\.0\.13/);
		expect(frame).toContain(`Started from ${path.join(dir, 'environment.sh')}`);
		expect(frame).toContain('also written as imported: network.clusterDomain, profile, encryption.keyFile');
		expect(frame).toContain('note: ENCRYPTION_KEY was taken once as a value into encryption.key');
		expect(frame).toContain('✔ The whole config checks out.');
		await app.press(keys.enter);
		await app.until('Start the install on m1, m2, m3');
		const config = await loadConfig(configFile);
		expect(config.network.clusterDomain).toBe('cluster.local');
		expect(config.encryption.keyFile).toBe(path.join(dir, 'encryption.key'));
		expect(readFileSync(path.join(dir, 'encryption.key'), 'utf8').trim()).toBe(key);
		expect(statSync(path.join(dir, 'encryption.key')).mode & 0o777).toBe(0o600);
		expect(readFileSync(configFile, 'utf8')).not.toContain(key);
	});

	test('a config naming a missing tarball is not written unless asked, and then the UI ends', async () => {
		const {session, configFile, dir} = setup({config: false});
		writeConfig(dir, {...baseConfig('./elsewhere.tar.gz'), masters: [{name: 'a1', ip: '10.1.0.1'}]}, 'start.yaml');
		const app = mount(session());
		await app.until('How do you want to describe the cluster?');
		await app.press(keys.down, keys.down, keys.enter);
		await app.until('Path of the config file to start from');
		await app.type('start.yaml');
		await app.press(keys.enter);
		const frame = await app.until('To fix before writing (1):');
		expect(frame).toMatch(/✘ binaries\.tarball: does not exist \(got .*elsewhere\.tar\.gz\)/);
		expect(frame).toMatch(/✘ binaries\.tarball +\.\/elsewhere\.tar\.gz/);
		expect(frame).not.toContain('and show the plan');
		// A long path wraps on the screen.
		const unwrapped = (text: string) => text.replaceAll(/\s+/g, '');
		expect(unwrapped(frame)).toContain(unwrapped(`❯ Write ${configFile} anyway and quit (put the missing files there first)`));
		await app.press(keys.enter);
		expect(await app.exited).toBe(0);
		expect(app.frame()).toContain('but files it names are not there yet');
		expect(YAML.parse(readFileSync(configFile, 'utf8')).masters).toEqual([{name: 'a1', ip: '10.1.0.1'}]);
	});

	test('Ctrl-C leaves without writing anything; Esc goes back a question', async () => {
		const {session, configFile} = setup({config: false});
		const app = mount(session());
		await app.until('How do you want to describe the cluster?');
		await app.press(keys.enter);
		await app.until('Kubernetes release to install');
		await app.press(keys.enter);
		await app.until('Server tarball of that release');
		await app.press('q');
		expect(app.frame()).toContain('› ./kubernetes-server-linux-amd64.tar.gzq');
		await app.press(keys.escape);
		await app.until('Kubernetes release to install');
		await app.press(keys.ctrlC);
		expect(await app.exited).toBe(0);
		expect(app.frame()).toContain('Quit. Nothing was written.');
		expect(existsSync(configFile)).toBe(false);
	});
});

describe('a config that cannot be used', () => {
	test('lists the problems naming each field, and can be corrected in the wizard', async () => {
		const {session, configFile, tarball, dir} = setup({config: false});
		const config = baseConfig(tarball);
		config.masters[1].ip = '172.24.8.999';
		writeConfig(dir, config);
		const app = mount(session());
		let frame = await app.until(`${configFile} cannot be used:`);
		expect(frame).toMatch(/✘ masters\[1\]\.ip: is not an IPv4 address \(got 172\.24\.8\.999\)/);
		await app.press(keys.enter);
		frame = await app.until('To fix before writing (1):');
		expect(frame).toContain(`Correcting ${configFile}`);
		expect(frame).toContain('❯ Change masters');
		await app.press(keys.enter);
		await app.until('Remove the last one (k8smaster03)');
		await app.press(keys.down, keys.down, keys.enter);
		await app.until('Remove the last one (k8smaster02)');
		// The cursor stays on "Remove", for removing several in a row.
		await app.press(keys.enter);
		await app.until('Remove the last one (k8smaster01)');
		await app.press(keys.down);
		await app.press(keys.down, keys.enter);
		await app.until('Master 2: host name');
		await app.press(keys.enter);
		await app.until('Master 2: IP address of k8smaster02');
		await app.press(keys.enter);
		await app.until('Done: back to the review');
		await app.press(keys.enter);
		frame = await app.until('✔ The whole config checks out.');
		await app.press(keys.enter);
		await app.until('Start the install on k8smaster01, k8smaster02');
		expect((await loadConfig(configFile)).masters.map(master => master.ip)).toEqual(['172.24.8.71', '172.24.8.72']);
		expect(readFileSync(`${configFile}.bak`, 'utf8')).toContain('172.24.8.999');
	});
});
