import {readFileSync, writeFileSync} from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import {afterEach, beforeEach, describe, expect, inject, test} from 'vitest';
import {labCommand, labSsh, resetMasters, runCli, writeLabConfig} from './lab-helpers.js';

const lab = inject('lab');
const bastion = lab?.bastion;

/** Whether this machine opens a TCP connection to ip:port within 3 s. */
async function connects(ip: string, port: number): Promise<boolean> {
	return new Promise(resolve => {
		const socket = net.connect({host: ip, port, timeout: 3000});
		socket.on('connect', () => {
			socket.destroy();
			resolve(true);
		});
		socket.on('timeout', () => {
			socket.destroy();
			resolve(false);
		});
		socket.on('error', () => resolve(false));
	});
}

/** The masters by their ssh names (the lab's ssh config maps each name to its address), through the bastion, with no ssh.user or ssh.port. */
function bastionConfig(knownHostsFile: string) {
	return {
		masters: lab!.hosts.map(host => ({...host, sshHost: host.name})),
		ssh: {configFile: path.join(lab!.dir, 'ssh', 'config'), identityFile: lab!.ssh.identityFile, knownHostsFile, bastion: `root@${bastion!.ip}`},
	};
}

describe.skipIf(!bastion)('an install through the bastion, the masters out of this machine\'s reach', () => {
	beforeEach(() => {
		resetMasters(lab!);
		labCommand(lab!, 'isolate', 'on');
	});
	afterEach(() => labCommand(lab!, 'isolate', 'off'));

	test('apply and verify go through the bastion: every command over ProxyCommand, every apiserver call over a forward', async () => {
		expect(await connects(lab!.hosts[0]!.ip, 22), 'masters isolated').toBe(false);
		expect(await connects(lab!.hosts[0]!.ip, 6443)).toBe(false);
		expect(await connects(bastion!.ip, 22), 'bastion reachable').toBe(true);
		const {configFile, stateDir} = writeLabConfig(lab!, 'v1.28.7', bastionConfig(lab!.ssh.knownHostsFile));
		const run = await runCli(['apply', '--config', configFile, '--state-dir', stateDir, '--yes']);
		expect(run.code, run.stdout + run.stderr).toBe(0);
		expect(run.stdout).toMatch(/Done: 3 master\(s\) installed/);
		// verify's checks of every apiserver passed although this machine has no route to 6443.
		expect(run.stdout).toMatch(/== Verify the control plane \[verify\]/);
		expect(run.stdout).not.toMatch(/FAIL/);

		const again = await runCli(['verify', '--config', configFile, '--state-dir', stateDir]);
		expect(again.code, again.stdout + again.stderr).toBe(0);

		labCommand(lab!, 'isolate', 'off');
		for (const host of lab!.hosts) {
			expect(labSsh(lab!, host.name, 'systemctl is-active kube-apiserver kube-nginx kube-controller-manager kube-scheduler').trim().split('\n'), host.name).toEqual(['active', 'active', 'active', 'active']);
		}
	});

	test('preflight names a bastion whose host key is unknown, apart from the masters, with its fix', async () => {
		const {dir} = writeLabConfig(lab!, 'v1.28.7');
		// The lab's known_hosts without the bastion's keys (its lines start with its address or name).
		const knownHosts = path.join(dir, 'known_hosts_without_bastion');
		writeFileSync(knownHosts, readFileSync(lab!.ssh.knownHostsFile, 'utf8').split('\n').filter(line => !line.startsWith(`${bastion!.ip} `) && !line.startsWith(`${bastion!.name} `)).join('\n'));
		const {configFile, stateDir} = writeLabConfig(lab!, 'v1.28.7', bastionConfig(knownHosts));
		const run = await runCli(['preflight', '--config', configFile, '--state-dir', stateDir]);
		expect(run.code, run.stdout + run.stderr).not.toBe(0);
		expect(run.stdout).toMatch(new RegExp(`FAIL k8smaster01 ssh to the bastion ${bastion!.ip.replaceAll('.', '\\.')}`));
		expect(run.stdout).toMatch(new RegExp(`the bastion ${bastion!.ip.replaceAll('.', '\\.')} is not in known_hosts: .*ssh-keyscan ${bastion!.ip.replaceAll('.', '\\.')}`));
	});
});
