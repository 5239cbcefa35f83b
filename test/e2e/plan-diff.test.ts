import {readFileSync} from 'node:fs';
import path from 'node:path';
import {beforeEach, describe, expect, inject, test} from 'vitest';
import {labSsh, resetMasters, runCli, writeLabConfig} from './lab-helpers.js';

const lab = inject('lab');

const nginxConf = '/opt/k8s/kube-nginx/conf/kube-nginx.conf';
const apiserverUnit = '/etc/systemd/system/kube-apiserver.service';

describe.skipIf(!lab)('plan of a change on a running cluster', () => {
	beforeEach(() => resetMasters(lab!));

	test('a flag change and a hand-edited kube-nginx.conf are each shown as a diff (text and JSON), then applied; --exit-code 0 unchanged, 3 with changes', async () => {
		const {configFile, stateDir} = writeLabConfig(lab!, 'v1.28.7');
		const install = await runCli(['apply', '--config', configFile, '--state-dir', stateDir, '--yes']);
		expect(install.code, install.stdout + install.stderr).toBe(0);
		expect(install.stdout).toMatch(/^▶ Install on 3 master\(s\): /m);

		// Unchanged: nothing would change.
		const unchanged = await runCli(['plan', '--exit-code', '--config', configFile, '--state-dir', stateDir]);
		expect(unchanged.code, unchanged.stdout + unchanged.stderr).toBe(0);
		expect(unchanged.stdout).toMatch(/^Apply changes: plan for cluster kubernetes/);
		expect(unchanged.stdout).toContain('Restarts: none');
		for (const host of lab!.hosts) {
			expect(unchanged.stdout).toContain(`${host.name}: no file differs`);
		}

		// One apiserver flag in the config, and a hand edit of kube-nginx.conf on the second master.
		const changed = writeLabConfig(lab!, 'v1.28.7', {extraFlags: {'kube-apiserver': ['--event-ttl=170h']}}).configFile;
		const edited = lab!.hosts[1]!;
		const dropped = lab!.hosts[2]!.ip;
		labSsh(lab!, edited.name, `sed -i '/server ${dropped.replaceAll('.', '\\.')}:6443/d' ${nginxConf}`);

		const plan = await runCli(['plan', '--exit-code', '--config', changed, '--state-dir', stateDir]);
		expect(plan.code, plan.stdout + plan.stderr).toBe(3);
		const text = plan.stdout;
		for (const host of lab!.hosts) {
			expect(text).toContain(`--- ${host.name}:${apiserverUnit}`);
		}

		expect(text).toMatch(/^ +- {2}--event-ttl=168h/m);
		expect(text).toMatch(/^ +\+ {2}--event-ttl=170h/m);
		expect(text).toContain(`~ ${nginxConf}  [units]  (changed on the master by hand`);
		expect(text).toContain(`--- ${edited.name}:${nginxConf}`);
		expect(text).toMatch(new RegExp(`^ +\\+\\s+server ${dropped.replaceAll('.', '\\.')}:6443`, 'm'));
		expect(text).toContain(`Restarts, one master at a time (${lab!.hosts.map(host => host.name).join(', then ')}; the others keep serving):`);
		expect(text).toContain(`restart kube-apiserver (a file it reads changed: ${apiserverUnit})`);
		expect(text).toMatch(new RegExp(`reload kube-nginx \\(a file it reads differs on the master from what this install wrote: ${nginxConf.replaceAll('/', '\\/').replaceAll('.', '\\.')}\\)`));
		// The install's own restart was timed: the estimate comes from it.
		expect(text).toMatch(/: expected about [\d.]+ (ms|s) \(its last restart, of /);
		// Secrets by their hash only.
		expect(text).not.toMatch(/PRIVATE KEY|secret: [A-Za-z\d+/=]{40}/);
		const key = readFileSync(path.join(stateDir, 'kubernetes', 'pki', 'encryption.key'), 'utf8').trim();
		expect(text).not.toContain(key);

		const json = await runCli(['plan', '--json', '--exit-code', '--config', changed, '--state-dir', stateDir]);
		expect(json.code, json.stderr).toBe(3);
		const view = JSON.parse(json.stdout) as {run: {kind: string; title: string}; changes: {read: boolean; hosts: Array<{host: string; files: Array<{path: string; byHand: boolean; diff?: string}>; services: Array<{name: string; action: string; files: string[]}>}>}};
		expect(view.run).toMatchObject({kind: 'apply-changes', title: 'Apply changes'});
		expect(view.changes.read).toBe(true);
		const second = view.changes.hosts.find(host => host.host === edited.name)!;
		expect(second.files.map(file => file.path).sort()).toEqual([apiserverUnit, nginxConf].sort());
		expect(second.files.find(file => file.path === nginxConf)).toMatchObject({byHand: true});
		expect(second.files.find(file => file.path === apiserverUnit)!.diff).toContain('+  --event-ttl=170h');
		expect(second.services).toEqual(expect.arrayContaining([
			expect.objectContaining({name: 'kube-apiserver', action: 'restart', files: [apiserverUnit]}),
			expect.objectContaining({name: 'kube-nginx', action: 'reload', files: [nginxConf]}),
		]));
		expect(json.stdout).not.toContain(key);

		// Applied (the hand edit put back, with a backup), then nothing left to change.
		const apply = await runCli(['apply', '--config', changed, '--state-dir', stateDir, '--yes', '--overwrite']);
		expect(apply.code, apply.stdout + apply.stderr).toBe(0);
		expect(apply.stdout).toMatch(/^▶ Apply changes on 3 master\(s\): /m);
		expect(labSsh(lab!, edited.name, `cat ${nginxConf}`)).toContain(`server ${dropped}:6443`);
		const after = await runCli(['plan', '--exit-code', '--config', changed, '--state-dir', stateDir]);
		expect(after.code, after.stdout + after.stderr).toBe(0);
	});

	test('a master that cannot be read: plan names it as not read and exits 1 with --exit-code, not 0, 2 or 3', async () => {
		const {configFile, stateDir} = writeLabConfig(lab!, 'v1.28.7');
		const install = await runCli(['apply', '--config', configFile, '--state-dir', stateDir, '--yes']);
		expect(install.code, install.stdout + install.stderr).toBe(0);
		const unreachable = writeLabConfig(lab!, 'v1.28.7', {ssh: {user: lab!.ssh.user, port: 1, identityFile: lab!.ssh.identityFile, knownHostsFile: lab!.ssh.knownHostsFile}}).configFile;
		const plan = await runCli(['plan', '--exit-code', '--config', unreachable, '--state-dir', stateDir]);
		expect(plan.code, plan.stdout + plan.stderr).toBe(1);
		expect(plan.stderr).toMatch(/^warning: plan could not read k8smaster0\d/m);
		expect(plan.stdout).toMatch(/^k8smaster0\d: not read \(172\.24\.8\.7\d: /m);
	});
});
