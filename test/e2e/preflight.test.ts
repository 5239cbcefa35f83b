import {readFileSync, writeFileSync} from 'node:fs';
import path from 'node:path';
import {afterEach, beforeEach, describe, expect, inject, test} from 'vitest';
import {labSsh, resetMasters, runCli, writeLabConfig} from './lab-helpers.js';

const lab = inject('lab');

describe.skipIf(!lab)('preflight on the lab', () => {
	beforeEach(() => resetMasters(lab!));
	afterEach(() => {
		labSsh(lab!, 'k8smaster03', 'systemctl stop k8smi-squatter 2>/dev/null; true');
	});

	test('all three masters pass, shown as a grid', async () => {
		const {configFile, stateDir} = writeLabConfig(lab!, 'v1.28.7');
		const run = await runCli(['preflight', '--config', configFile, '--state-dir', stateDir]);
		expect(run.code, run.stdout + run.stderr).toBe(0);
		expect(run.stdout).toMatch(/^check +k8smaster01 +k8smaster02 +k8smaster03$/m);
		for (const check of ['ssh', 'root', 'arch', 'systemd', 'port 6443', 'port 10259', 'clock', 'etcd 172.24.8.73:2379']) {
			expect(run.stdout).toMatch(new RegExp(`^${check} +ok +ok +ok$`, 'm'));
		}
	});

	test('a port held by another program fails apply before anything is written, naming host, port and program', async () => {
		labSsh(lab!, 'k8smaster03', 'systemd-run --unit k8smi-squatter python3 -m http.server 10259 --bind 0.0.0.0 >/dev/null 2>&1; for i in $(seq 50); do ss -Hltn "sport = :10259" | grep -q . && break; sleep 0.1; done');
		const {configFile, stateDir} = writeLabConfig(lab!, 'v1.28.7');
		const run = await runCli(['apply', '--config', configFile, '--state-dir', stateDir, '--yes']);
		expect(run.code, run.stdout + run.stderr).toBe(1);
		expect(run.stdout).toMatch(/^ +port 10259 +ok +ok +FAIL$/m);
		expect(run.stdout).toMatch(/FAIL k8smaster03 port 10259: in use by python3/);
		expect(labSsh(lab!, 'k8smaster01', 'ls /opt/k8s/bin | wc -l').trim()).toBe('0');
	});

	test('a wrong host key stops with a clear message and no connection is made', async () => {
		const {dir, configFile, stateDir} = writeLabConfig(lab!, 'v1.28.7');
		// known_hosts where k8smaster02's entries carry k8smaster01's key.
		const lines = readFileSync(lab!.ssh.knownHostsFile, 'utf8').split('\n');
		const key01 = lines.find(line => line.startsWith('172.24.8.71 ssh-ed25519'))!.split(' ').slice(1).join(' ');
		const forged = lines.map(line => (line.startsWith('172.24.8.72 ssh-ed25519') ? `172.24.8.72 ${key01}` : line));
		const knownHosts = path.join(dir, 'known_hosts');
		writeFileSync(knownHosts, forged.join('\n'));
		const config = readFileSync(configFile, 'utf8').replace(lab!.ssh.knownHostsFile, knownHosts);
		writeFileSync(configFile, config);
		const run = await runCli(['apply', '--config', configFile, '--state-dir', stateDir, '--yes']);
		expect(run.code).toBe(1);
		expect(run.stdout).toMatch(/FAIL k8smaster02 ssh: .*/);
		expect(run.stdout).toMatch(/the host key of 172\.24\.8\.72 differs from the one in known_hosts/);
		expect(labSsh(lab!, 'k8smaster02', 'ls /opt/k8s/bin | wc -l').trim()).toBe('0');
	});
});
