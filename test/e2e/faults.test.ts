import {execFileSync} from 'node:child_process';
import {existsSync, readFileSync, writeFileSync} from 'node:fs';
import path from 'node:path';
import {afterEach, beforeEach, describe, expect, inject, test} from 'vitest';
import {controlPlaneUnits, labCommand, labSsh, readState, resetMasters, runCli, writeLabConfig} from './lab-helpers.js';

const lab = inject('lab');

function activeUnits(host: string): string[] {
	return labSsh(lab!, host, `systemctl is-active ${controlPlaneUnits.join(' ')} || true`).trim().split('\n');
}

/** The same cluster: the lab's CA and this install's one encryption key on every master, everything running. */
function expectSameCluster(stateDir: string, key: string): void {
	for (const host of lab!.hosts) {
		expect(labSsh(lab!, host.name, 'cat /etc/kubernetes/cert/ca.pem'), host.name).toBe(readFileSync(lab!.ca.certFile, 'utf8'));
		expect(labSsh(lab!, host.name, 'grep -o "secret: .*" /etc/kubernetes/encryption-config.yaml').trim(), host.name).toBe(`secret: ${key}`);
		expect(activeUnits(host.name), host.name).toEqual(['active', 'active', 'active', 'active']);
	}

	expect(readState(stateDir).run.status).toBe('done');
}

const encryptionKey = (stateDir: string) => readFileSync(path.join(stateDir, 'kubernetes', 'pki', 'encryption.key'), 'utf8').trim();

describe.skipIf(!lab)('faults on the lab', () => {
	beforeEach(() => resetMasters(lab!));
	afterEach(() => {
		for (const host of lab!.hosts) {
			labSsh(lab!, host.name, 'if mountpoint -q /opt/k8s/bin; then umount /opt/k8s/bin; fi; systemctl start etcd; true');
		}
	});

	test('apply killed with SIGKILL at 17 points, at step boundaries and inside every step: each resume goes on, the last ends with the same cluster', async () => {
		const {configFile, stateDir} = writeLabConfig(lab!, 'v1.28.7');
		const boundary = /^== /;
		// A master finished with the step: done, or found done (the files steps run side by side, so an
		// earlier kill may have let one finish).
		const hostDone = /[✔↷] k8smaster0\d (\[[\w-]+\] )?(done|skipped)/;
		const points: Array<[string, RegExp]> = [
			['preflight', boundary], ['binaries', /\(25%\)/], ['binaries', hostDone], ['certs', boundary], ['certs', hostDone],
			['encryption', boundary], ['encryption', hostDone], ['audit', boundary], ['audit', hostDone], ['units', boundary], ['units', hostDone],
			['start', boundary], ['start', hostDone], ['etcd-check', boundary], ['rbac', boundary], ['verify', boundary], ['verify', hostDone],
		];
		let key: string | undefined;
		for (const [step, pattern] of points) {
			let heading = '';
			let current = '';
			const killed = await runCli(['apply', '--config', configFile, '--state-dir', stateDir, '--yes'], (line, kill) => {
				// A line belongs to the last heading, unless it names its step (steps side by side: `k8smaster01 [certs] done`).
				heading = /^== .* \[([\w-]+)\]$/.exec(line)?.[1] ?? heading;
				current = /^ +\S* ?k8smaster0\d \[([\w-]+)\]/.exec(line)?.[1] ?? heading;
				if (current === step && pattern.test(line)) {
					kill();
				}
			});
			expect(killed.signal, `${step} ${String(pattern)}: ${killed.stdout.slice(-2000)}${killed.stderr}`).toBe('SIGKILL');
			// The key is made once, before anything reaches a master, and never again.
			if (existsSync(path.join(stateDir, 'kubernetes', 'pki', 'encryption.key'))) {
				key ??= encryptionKey(stateDir);
				expect(encryptionKey(stateDir), `${step} ${String(pattern)}`).toBe(key);
			}

			expect(() => readState(stateDir)).not.toThrow();
		}

		const last = await runCli(['apply', '--config', configFile, '--state-dir', stateDir, '--yes']);
		expect(last.code, last.stdout + last.stderr).toBe(0);
		expect(last.stdout).not.toMatch(/FAIL/);
		expectSameCluster(stateDir, key!);
	});

	test('a master rebooted during start: the run names it; the next apply ends with the same cluster', async () => {
		const {configFile, stateDir} = writeLabConfig(lab!, 'v1.28.7');
		let rebooted = false;
		const first = await runCli(['apply', '--config', configFile, '--state-dir', stateDir, '--yes'], line => {
			if (!rebooted && /^== Start the control plane/.test(line)) {
				rebooted = true;
				labCommand(lab!, 'reboot', 'k8smaster02');
			}
		});
		expect(rebooted).toBe(true);
		if (first.code !== 0) {
			expect(first.stdout + first.stderr).toMatch(/k8smaster02/);
		}

		const again = await runCli(['apply', '--config', configFile, '--state-dir', stateDir, '--yes']);
		expect(again.code, again.stdout + again.stderr).toBe(0);
		expectSameCluster(stateDir, encryptionKey(stateDir));
	});

	test('a master whose disk fills while binaries are copied: named with the fix, no partial file left, the retry completes', async () => {
		labSsh(lab!, 'k8smaster02', 'mkdir -p /opt/k8s/bin && mount -t tmpfs -o size=4m tmpfs /opt/k8s/bin');
		const {configFile, stateDir} = writeLabConfig(lab!, 'v1.28.7');
		const failed = await runCli(['apply', '--config', configFile, '--state-dir', stateDir, '--yes']);
		expect(failed.code, failed.stdout + failed.stderr).toBe(1);
		expect(failed.stdout + failed.stderr).toMatch(/k8smaster02 ran out of disk space \(df -h there\): free some and run apply again; the partly written file was removed/);
		expect(readState(stateDir).run).toMatchObject({status: 'failed', step: 'binaries', host: 'k8smaster02'});
		expect(labSsh(lab!, 'k8smaster02', 'ls -a /opt/k8s/bin /opt/k8s/bin/v1.28.7 2>/dev/null | grep -c k8smi-new || true').trim()).toBe('0');
		expect(readState(stateDir).steps['install/binaries'].hosts.k8smaster01.status).toBe('done');
		labSsh(lab!, 'k8smaster02', 'umount /opt/k8s/bin');
		const retry = await runCli(['apply', '--config', configFile, '--state-dir', stateDir, '--yes']);
		expect(retry.code, retry.stdout + retry.stderr).toBe(0);
		expectSameCluster(stateDir, encryptionKey(stateDir));
	});

	test('one etcd member down: preflight warns, the install completes and verify passes', async () => {
		labSsh(lab!, 'k8smaster03', 'systemctl stop etcd');
		const {configFile, stateDir} = writeLabConfig(lab!, 'v1.28.7');
		const run = await runCli(['apply', '--config', configFile, '--state-dir', stateDir, '--yes']);
		expect(run.code, run.stdout + run.stderr).toBe(0);
		expect(run.stdout).toMatch(/^ +etcd 172\.24\.8\.73:2379 +WARN +WARN +WARN$/m);
		expect(run.stdout).toMatch(/WARN k8smaster01 etcd 172\.24\.8\.73:2379: not reachable from this master; 2 of 3 are, enough for etcd to serve/);
		expect(run.stdout).toMatch(/secrets encrypted in etcd\s+ok/);
		expectSameCluster(stateDir, encryptionKey(stateDir));
	});

	test('a wrong ssh key, and a passphrase-protected key without an agent: preflight names the key and the fix; nothing is written', async () => {
		const {dir, configFile, stateDir} = writeLabConfig(lab!, 'v1.28.7');
		const wrongKey = path.join(dir, 'id_wrong');
		execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', wrongKey]);
		const withKey = (key: string) => {
			const text = readFileSync(configFile, 'utf8').replace(/identityFile: .*/, `identityFile: ${key}`);
			writeFileSync(configFile, text);
		};

		withKey(wrongKey);
		const wrong = await runCli(['preflight', '--config', configFile, '--state-dir', stateDir], undefined, {...process.env, SSH_AUTH_SOCK: ''});
		expect(wrong.code, wrong.stdout + wrong.stderr).toBe(1);
		expect(wrong.stdout).toMatch(/^ssh +FAIL +FAIL +FAIL$/m);
		expect(wrong.stdout).toContain(`${wrongKey} has no passphrase, so the master refused it: add its public key (ssh-keygen -y -f ${wrongKey}) to ~root/.ssh/authorized_keys on the master`);

		const lockedKey = path.join(dir, 'id_locked');
		execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', 'a passphrase', '-f', lockedKey]);
		const publicKey = readFileSync(`${lockedKey}.pub`, 'utf8').trim();
		for (const host of lab!.hosts) {
			labSsh(lab!, host.name, `echo '${publicKey}' >> /root/.ssh/authorized_keys`);
		}

		try {
			withKey(lockedKey);
			const {SSH_AUTH_SOCK: _, ...withoutAgent} = process.env;
			const locked = await runCli(['apply', '--config', configFile, '--state-dir', stateDir, '--yes'], undefined, withoutAgent);
			expect(locked.code, locked.stdout + locked.stderr).toBe(1);
			expect(locked.stdout).toContain(`${lockedKey} is protected by a passphrase and ssh runs in batch mode: load it into ssh-agent first (ssh-add ${lockedKey})`);
			expect(labSsh(lab!, 'k8smaster01', 'ls /opt/k8s/bin | wc -l').trim()).toBe('0');
		} finally {
			for (const host of lab!.hosts) {
				labSsh(lab!, host.name, `grep -vF '${publicKey}' /root/.ssh/authorized_keys > /root/.ssh/k && mv /root/.ssh/k /root/.ssh/authorized_keys`);
			}
		}
	});
});
