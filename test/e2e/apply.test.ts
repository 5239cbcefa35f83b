import {execFileSync} from 'node:child_process';
import {readFileSync} from 'node:fs';
import path from 'node:path';
import {beforeEach, describe, expect, inject, test} from 'vitest';
import {getHealth} from '../../source/remote/health.js';
import {controlPlaneUnits, labCommand, labSsh, readState, remoteFacts, resetMasters, runCli, writeLabConfig} from './lab-helpers.js';

const lab = inject('lab');

const cert = (file: string) => `/etc/kubernetes/cert/${file}`;
const secretFiles = [
	...['ca-key.pem', 'kubernetes-key.pem', 'proxy-client-key.pem', 'kube-controller-manager-key.pem', 'kube-scheduler-key.pem', 'sa.key'].map(cert),
	'/etc/kubernetes/encryption-config.yaml', '/etc/kubernetes/kube-controller-manager.kubeconfig', '/etc/kubernetes/kube-scheduler.kubeconfig',
];
const publicFiles = [
	...['ca.pem', 'kubernetes.pem', 'proxy-client.pem', 'kube-controller-manager.pem', 'kube-scheduler.pem', 'sa.pub'].map(cert),
	'/etc/kubernetes/audit-policy.yaml', '/etc/kubernetes/kube-scheduler.yaml', '/opt/k8s/kube-nginx/conf/kube-nginx.conf',
	...controlPlaneUnits.map(unit => `/etc/systemd/system/${unit}.service`),
];

function tls(stateDir: string) {
	const pki = (file: string) => readFileSync(path.join(stateDir, 'kubernetes', 'pki', file), 'utf8');
	return {ca: readFileSync(lab!.ca.certFile, 'utf8'), cert: pki('admin.pem'), key: pki('admin-key.pem')};
}

/** The main PID of every control-plane unit on every master: equal lists mean nothing restarted. */
function mainPids(): string[] {
	return lab!.hosts.flatMap(host => labSsh(lab!, host.name, controlPlaneUnits.map(unit => `systemctl show -p MainPID --value ${unit}`).join('; ')).trim().split('\n'));
}

function activeUnits(host: string): string[] {
	return labSsh(lab!, host, `systemctl is-active ${controlPlaneUnits.join(' ')} || true`).trim().split('\n');
}

function encryptionConfigs(): string[] {
	return lab!.hosts.map(host => labSsh(lab!, host.name, 'sha256sum /etc/kubernetes/encryption-config.yaml | cut -d" " -f1').trim());
}

describe.skipIf(!lab)('apply on the lab\'s three masters', () => {
	// Every test starts from an empty lab with its own state folder, as a new operator would.
	beforeEach(() => resetMasters(lab!));

	test('a full install from an empty lab at real size, checked on every master', async () => {
		const {configFile, stateDir} = writeLabConfig(lab!, 'v1.28.7', {binaries: {tarball: lab!.tarballs['v1.28.7-real-size']}});
		const started = Date.now();
		const run = await runCli(['apply', '--config', configFile, '--state-dir', stateDir, '--yes']);
		console.log(`full apply: ${((Date.now() - started) / 1000).toFixed(1)} s`);
		expect(run.code, run.stdout + run.stderr).toBe(0);
		expect(run.stdout).toMatch(/Done: 3 master\(s\) installed/);
		expect(run.stdout).toMatch(/keys under \/registry\//);

		for (const host of lab!.hosts) {
			const facts = remoteFacts(lab!, host.name, [...secretFiles, ...publicFiles, '/opt/k8s/bin/v1.28.7/kube-apiserver']);
			for (const file of secretFiles) {
				expect(facts.get(file), `${host.name}:${file}`).toMatchObject({mode: '600', owner: 'root:root'});
			}

			// profile: cis (the default): the public files are 0600 too (CIS 1.1).
			for (const file of publicFiles) {
				expect(facts.get(file), `${host.name}:${file}`).toMatchObject({mode: '600', owner: 'root:root'});
			}

			// The release's binaries in a folder of its own, 0755 root:root; binDir's name links to it, and the unit starts the release's.
			expect(facts.get('/opt/k8s/bin/v1.28.7/kube-apiserver')).toMatchObject({mode: '755', owner: 'root:root'});
			expect(labSsh(lab!, host.name, 'stat -c \'%a %U:%G\' /opt/k8s/bin/v1.28.7; readlink /opt/k8s/bin/kube-apiserver; systemctl show -p ExecStart kube-apiserver | grep -o \'{ path=[^ ;]*\' | cut -c3-').trim().split('\n')).toEqual(['755 root:root', 'v1.28.7/kube-apiserver', 'path=/opt/k8s/bin/v1.28.7/kube-apiserver']);
			expect(activeUnits(host.name)).toEqual(['active', 'active', 'active', 'active']);
			// Secure ports only: the apiserver on the master's address; kube-nginx, controller-manager and scheduler on loopback (CIS 1.3.7, 1.4.2); no insecure 10251/10252.
			const listening = labSsh(lab!, host.name, 'ss -Hltn | awk \'{print $4}\' | sort').trim().split('\n');
			expect(listening).toEqual(expect.arrayContaining([`${host.ip}:6443`, '127.0.0.1:8443', '127.0.0.1:10257', '127.0.0.1:10259']));
			expect(listening.filter(address => /:1025[79]$/.test(address) && !address.startsWith('127.0.0.1:'))).toEqual([]);
			// What the running processes were started with, read as the benchmark reads it.
			const args = (unit: string) => labSsh(lab!, host.name, `tr '\\0' '\\n' < /proc/$(systemctl show -p MainPID --value ${unit})/cmdline`).trim().split('\n');
			expect(args('kube-apiserver')).toEqual(expect.arrayContaining(['--profiling=false', '--audit-log-maxage=30', '--audit-log-maxbackup=10', '--enable-admission-plugins=NodeRestriction,DenyServiceExternalIPs']));
			expect(args('kube-controller-manager')).toEqual(expect.arrayContaining(['--profiling=false', '--bind-address=127.0.0.1']));
			expect(args('kube-scheduler')).toEqual(expect.arrayContaining(['--profiling=false', '--bind-address=127.0.0.1']));
			expect(listening.filter(address => /:1025[12]$/.test(address))).toEqual([]);
			const ready = await getHealth(host.ip, 6443, '/readyz', tls(stateDir));
			expect(ready, host.name).toMatchObject({ok: true});
			// Without a client certificate the apiserver refuses (anonymous-auth=false).
			const anonymous = await getHealth(host.ip, 6443, '/readyz', {...tls(stateDir), cert: '', key: ''});
			expect(anonymous.ok).toBe(false);
		}

		expect(new Set(encryptionConfigs()).size).toBe(1);
		expect(readState(stateDir).run.status).toBe('done');
		// verify ran last: every check on every master and the cluster passed.
		expect(run.stdout).toMatch(/== Verify the control plane \[verify\]/);
		expect(run.stdout).toMatch(/secrets encrypted in etcd\s+ok/);
		expect(run.stdout).toMatch(/leader kube-scheduler\s+ok/);
		expect(run.stdout).toMatch(/^ +CIS benchmark +- +ok +ok +ok$/m);
		expect(run.stdout).not.toMatch(/FAIL/);

		// The benchmark's checks, read back from the masters: no automated check fails.
		const cis = await runCli(['cis', '--config', configFile, '--state-dir', stateDir]);
		expect(cis.code, cis.stdout + cis.stderr).toBe(0);
		expect(cis.stdout).toMatch(/^1\.2\.15 +--profiling=false +PASS +PASS +PASS$/m);
		expect(cis.stdout).toMatch(/^1\.1\.20 +certificate files 600 or stricter +PASS +PASS +PASS$/m);
		expect(cis.stdout).toMatch(/^SKIP 1\.1\.7 every master: etcd is external/m);
		expect(cis.stdout).not.toMatch(/FAIL/);
	});

	test('with one apiserver stopped, kube-nginx serves its master\'s components from the others; verify names it; apply restarts only it', async () => {
		const {configFile, stateDir} = writeLabConfig(lab!, 'v1.28.7');
		expect((await runCli(['apply', '--config', configFile, '--state-dir', stateDir, '--yes'])).code).toBe(0);
		const pids = mainPids();
		labSsh(lab!, 'k8smaster01', 'systemctl stop kube-apiserver');
		const verify = await runCli(['verify', '--config', configFile, '--state-dir', stateDir]);
		expect(verify.code, verify.stdout + verify.stderr).toBe(1);
		expect(verify.stdout).toMatch(/^apiserver ready\s+-\s+FAIL\s+ok\s+ok$/m);
		expect(verify.stdout).toMatch(/^via kube-nginx\s+-\s+ok\s+ok\s+ok$/m);
		expect(verify.stdout).toMatch(/FAIL k8smaster01 apiserver ready: connect ECONNREFUSED 172\.24\.8\.71:6443\n\s+fix: journalctl -u kube-apiserver on k8smaster01/);
		expect(verify.stdout).toMatch(/^ok cluster secrets encrypted in etcd: raw value starts k8s:enc:aescbc:v1:key1:$/m);

		const repaired = await runCli(['apply', '--config', configFile, '--state-dir', stateDir, '--yes']);
		expect(repaired.code, repaired.stdout + repaired.stderr).toBe(0);
		expect(repaired.stdout).toMatch(/✔ k8smaster01( \[start\])? done in .*: restarted kube-apiserver; all ready/);
		const after = mainPids();
		// Only the apiserver of k8smaster01 has a new process.
		expect(after.filter((pid, index) => pid !== pids[index])).toHaveLength(1);
		expect(after[0]).not.toBe(pids[0]);
		expect((await runCli(['verify', '--config', configFile, '--state-dir', stateDir])).code).toBe(0);
	});

	test('a second apply on the finished cluster changes nothing on any host', async () => {
		const {configFile, stateDir} = writeLabConfig(lab!, 'v1.28.7');
		const first = await runCli(['apply', '--config', configFile, '--state-dir', stateDir, '--yes']);
		expect(first.code, first.stdout + first.stderr).toBe(0);
		const pids = mainPids();
		const before = lab!.hosts.map(host => [...remoteFacts(lab!, host.name, [...secretFiles, ...publicFiles]).values()]);
		const started = Date.now();
		const second = await runCli(['apply', '--config', configFile, '--state-dir', stateDir, '--yes']);
		console.log(`unchanged re-apply: ${((Date.now() - started) / 1000).toFixed(1)} s`);
		expect(second.code, second.stdout + second.stderr).toBe(0);
		// Preflight and the etcd check run every time; nothing is written and no apiserver restarts.
		expect(second.stdout).not.toMatch(/[1-9]\d* written/);
		expect(second.stdout).not.toMatch(/done in .*: ready/);
		// The start is two steps: the apiservers (with kube-nginx), then the controller-managers and schedulers.
		expect(second.stdout).toMatch(/↷ k8smaster01( \[start\])? skipped in .*: kube-apiserver, kube-nginx active and ready/);
		expect(second.stdout).toMatch(/↷ k8smaster01( \[start-controllers\])? skipped in .*: kube-controller-manager, kube-scheduler active and ready/);
		expect(mainPids()).toEqual(pids);
		expect(lab!.hosts.map(host => [...remoteFacts(lab!, host.name, [...secretFiles, ...publicFiles]).values()])).toEqual(before);

		// A master without curl is asked through the release's kubectl instead: the same answers.
		labSsh(lab!, 'k8smaster02', 'chmod 0 /usr/bin/curl');
		try {
			const verify = await runCli(['verify', '--config', configFile, '--state-dir', stateDir]);
			expect(verify.code, verify.stdout + verify.stderr).toBe(0);
			expect(verify.stdout).toMatch(/^via kube-nginx +- +ok +ok +ok$/m);
			expect(verify.stdout).toMatch(/^scheduler healthy +- +ok +ok +ok$/m);
		} finally {
			labSsh(lab!, 'k8smaster02', 'chmod 755 /usr/bin/curl');
		}
	});

	test.each([
		['binaries', /== Copy kube-apiserver and kubectl/, /k8smaster0\d( \[binaries\])?: .* \(25%\)/],
		['start', /== Start the control plane/, /== Start the control plane/],
	])('apply killed with SIGKILL during %s, then resumed, ends the same', async (_, stepLine, killLine) => {
		const {configFile, stateDir} = writeLabConfig(lab!, 'v1.28.7');
		let inStep = false;
		const killed = await runCli(['apply', '--config', configFile, '--state-dir', stateDir, '--yes'], (line, kill) => {
			inStep ||= stepLine.test(line);
			if (inStep && killLine.test(line)) {
				setTimeout(kill, 150);
			}
		});
		expect(killed.signal, killed.stdout).toBe('SIGKILL');
		const key = readFileSync(path.join(stateDir, 'kubernetes', 'pki', 'encryption.key'), 'utf8');
		const resumed = await runCli(['apply', '--config', configFile, '--state-dir', stateDir, '--yes']);
		expect(resumed.code, resumed.stdout + resumed.stderr).toBe(0);
		expect(readFileSync(path.join(stateDir, 'kubernetes', 'pki', 'encryption.key'), 'utf8')).toBe(key);
		expect(new Set(encryptionConfigs()).size).toBe(1);
		const onMaster = labSsh(lab!, lab!.hosts[0]!.name, 'cat /etc/kubernetes/encryption-config.yaml');
		expect(onMaster).toContain(key.trim());
		const ca = lab!.hosts.map(host => labSsh(lab!, host.name, 'cat /etc/kubernetes/cert/ca.pem'));
		expect(new Set([...ca, readFileSync(lab!.ca.certFile, 'utf8')]).size).toBe(1);
		for (const host of lab!.hosts) {
			expect(activeUnits(host.name)).toEqual(['active', 'active', 'active', 'active']);
		}
	});

	test('a master whose link is cut during apply is named; the others keep their work; a retry completes', async () => {
		const {configFile, stateDir} = writeLabConfig(lab!, 'v1.28.7');
		let cut = false;
		try {
			const failed = await runCli(['apply', '--config', configFile, '--state-dir', stateDir, '--yes'], line => {
				if (!cut && /== Copy kube-apiserver and kubectl/.test(line)) {
					cut = true;
					labCommand(lab!, 'cut', 'k8smaster02');
				}
			});
			expect(failed.code, failed.stdout + failed.stderr).toBe(1);
			expect(failed.stdout).toMatch(/✘ k8smaster02 \[binaries\] failed/);
			expect(failed.stdout + failed.stderr).toMatch(/k8smaster02 \(172\.24\.8\.72\) is not reachable/);
			const state = readState(stateDir);
			expect(state.run).toMatchObject({status: 'failed', step: 'binaries', host: 'k8smaster02'});
			expect(state.steps['install/binaries'].hosts.k8smaster01.status).toBe('done');
			expect(state.steps['install/binaries'].hosts.k8smaster03.status).toBe('done');
		} finally {
			labCommand(lab!, 'heal', 'k8smaster02');
		}

		// A healed link needs a moment (neighbour entries) before k8smaster02 reaches its peers again;
		// preflight would rightly refuse before that.
		const probe = lab!.etcd.endpoints.map(endpoint => endpoint.replace('https://', '').replace(':', '/')).map(target => `timeout 2 bash -c 'exec 3<>/dev/tcp/${target}'`).join(' && ');
		// This machine's own neighbour entry for the host may still say "unreachable" for a moment too.
		for (let attempt = 1; ; attempt++) {
			try {
				labSsh(lab!, 'k8smaster02', `for i in $(seq 60); do if ${probe}; then exit 0; fi; sleep 0.5; done; exit 1`);
				break;
			} catch (error) {
				if (attempt >= 30) {
					throw error;
				}

				execFileSync('sleep', ['1']);
			}
		}

		const retry = await runCli(['apply', '--config', configFile, '--state-dir', stateDir, '--yes']);
		expect(retry.code, retry.stdout + retry.stderr).toBe(0);
		expect(retry.stdout).toMatch(/↷ k8smaster01 \[binaries\] skipped/);
	});

	test('v1.14.2 with profile: tutorial installs with the tutorial\'s flags, and the benchmark names what they leave; a tarball of another release is refused before any host is touched', async () => {
		const {configFile, stateDir} = writeLabConfig(lab!, 'v1.14.2', {profile: 'tutorial'});
		const run = await runCli(['apply', '--config', configFile, '--state-dir', stateDir, '--yes']);
		expect(run.code, run.stdout + run.stderr).toBe(0);
		const unit = labSsh(lab!, 'k8smaster01', 'cat /etc/systemd/system/kube-apiserver.service');
		expect(unit).toContain('--feature-gates=DynamicAuditing=true');
		expect(unit).toContain('--insecure-port=0');
		// v1.14 has no /readyz: readiness was read from /healthz.
		expect(await getHealth(lab!.hosts[0]!.ip, 6443, '/healthz', tls(stateDir))).toMatchObject({ok: true});
		// Its controller-manager and scheduler started with the flags and config kind of 1.14, and elected leaders (Endpoints then).
		expect(labSsh(lab!, 'k8smaster01', 'cat /etc/kubernetes/kube-scheduler.yaml')).toMatch(/^apiVersion: kubescheduler\.config\.k8s\.io\/v1alpha1$/m);
		// Its plain-HTTP port exists in 1.14 and is ignored by --port with --config: only loopback.
		expect(labSsh(lab!, 'k8smaster01', 'ss -Hltn | awk \'{print $4}\' | grep :10251 || true').trim()).toBe('127.0.0.1:10251');
		expect(run.stdout).toMatch(/leader kube-controller-manager\s+ok/);
		expect(run.stdout).not.toMatch(/FAIL/);
		// The tutorial's settings, as the benchmark sees them: a warning in verify, failures in `cis`.
		expect(run.stdout).toMatch(/WARN k8smaster01 CIS benchmark: CIS 1\.10 control plane: \d+ pass, \d+ fail \(1\.1\.1, .*1\.2\.15, 1\.2\.17, 1\.2\.18, .*1\.4\.2\)/);
		const cis = await runCli(['cis', '--config', configFile, '--state-dir', stateDir]);
		expect(cis.code).toBe(1);
		expect(cis.stdout).toMatch(/^FAIL 1\.2\.17 every master: --audit-log-maxage=15 \(wanted: >= 30\)$/m);
		expect(cis.stdout).toMatch(/^FAIL 1\.3\.7 k8smaster01: --bind-address=172\.24\.8\.71 \(wanted: 127\.0\.0\.1\)$/m);
		expect(labSsh(lab!, 'k8smaster01', 'stat -c %a /etc/kubernetes/cert/ca.pem').trim()).toBe('644');
		const pids = mainPids();

		const wrong = writeLabConfig(lab!, 'v1.28.7', {binaries: {tarball: lab!.tarballs['v1.14.2']}});
		const mismatch = await runCli(['apply', '--config', wrong.configFile, '--state-dir', wrong.stateDir, '--yes']);
		expect(mismatch.code).toBe(2);
		expect(mismatch.stderr).toMatch(/version: does not match the tarball, which holds v1\.14\.2 \(got v1\.28\.7\)\. Fix: set version: v1\.14\.2/);
		expect(mainPids()).toEqual(pids);
		expect(labSsh(lab!, 'k8smaster01', 'cat /etc/systemd/system/kube-apiserver.service')).toBe(unit);
	});

	test('a file changed on a master by hand is not overwritten without asking; --overwrite keeps a backup', async () => {
		const {configFile, stateDir} = writeLabConfig(lab!, 'v1.28.7');
		expect((await runCli(['apply', '--config', configFile, '--state-dir', stateDir, '--yes'])).code).toBe(0);
		labSsh(lab!, 'k8smaster02', 'echo "# local change" >> /etc/kubernetes/audit-policy.yaml');
		const edited = labSsh(lab!, 'k8smaster02', 'sha256sum /etc/kubernetes/audit-policy.yaml');
		const refused = await runCli(['apply', '--config', configFile, '--state-dir', stateDir, '--yes']);
		expect(refused.code).toBe(2);
		expect(refused.stderr).toMatch(/\/etc\/kubernetes\/audit-policy\.yaml on k8smaster02 differs from what this install wrote there\. Not overwritten\. Pass --overwrite/);
		expect(labSsh(lab!, 'k8smaster02', 'sha256sum /etc/kubernetes/audit-policy.yaml')).toBe(edited);
		const overwritten = await runCli(['apply', '--config', configFile, '--state-dir', stateDir, '--yes', '--overwrite']);
		expect(overwritten.code, overwritten.stdout + overwritten.stderr).toBe(0);
		expect(labSsh(lab!, 'k8smaster02', 'tail -1 /etc/kubernetes/audit-policy.yaml')).not.toContain('local change');
		expect(labSsh(lab!, 'k8smaster02', 'cat /etc/kubernetes/audit-policy.yaml.k8smi-backup-*')).toContain('# local change');
	});
});

describe.skipIf(!lab)('reset on the lab', () => {
	beforeEach(() => resetMasters(lab!));

	test('reset stops and removes the install on every master, keeps the local keys; apply then brings back the same cluster', async () => {
		const {configFile, stateDir} = writeLabConfig(lab!, 'v1.28.7');
		const installed = await runCli(['apply', '--config', configFile, '--state-dir', stateDir, '--yes']);
		expect(installed.code, installed.stdout + installed.stderr).toBe(0);
		const key = readFileSync(path.join(stateDir, 'kubernetes', 'pki', 'encryption.key'), 'utf8');
		const refused = await runCli(['reset', '--config', configFile, '--state-dir', stateDir]);
		expect(refused.code).toBe(2);
		expect(refused.stderr).toMatch(/Pass --yes to answer it/);
		expect(labSsh(lab!, 'k8smaster01', 'systemctl is-active kube-apiserver').trim()).toBe('active');

		const reset = await runCli(['reset', '--config', configFile, '--state-dir', stateDir, '--yes']);
		expect(reset.code, reset.stdout + reset.stderr).toBe(0);
		expect(reset.stdout).toMatch(/✔ k8smaster03 done in .*: units stopped and disabled, \d+ file\(s\) removed/);
		for (const host of lab!.hosts) {
			const left = labSsh(lab!, host.name, `systemctl is-active ${controlPlaneUnits.join(' ')} || true; ls /etc/systemd/system | grep -c kube- || true; ls /opt/k8s/bin | wc -l; test -e /etc/kubernetes && echo left || echo gone`).trim().split('\n');
			expect(left, host.name).toEqual(['inactive', 'inactive', 'inactive', 'inactive', '0', '0', 'gone']);
			// etcd is the operator's: untouched and healthy.
			expect(labSsh(lab!, host.name, 'systemctl is-active etcd').trim()).toBe('active');
		}

		expect(readFileSync(path.join(stateDir, 'kubernetes', 'pki', 'encryption.key'), 'utf8')).toBe(key);
		const again = await runCli(['apply', '--config', configFile, '--state-dir', stateDir, '--yes']);
		expect(again.code, again.stdout + again.stderr).toBe(0);
		expect(labSsh(lab!, 'k8smaster02', 'grep -o "secret: .*" /etc/kubernetes/encryption-config.yaml').trim()).toBe(`secret: ${key.trim()}`);
	});
});
