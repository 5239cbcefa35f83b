import {readFileSync} from 'node:fs';
import path from 'node:path';
import {afterAll, beforeAll, beforeEach, describe, expect, inject, test} from 'vitest';
import type {LabInfo} from './global-setup.js';
import {controlPlaneUnits, etcdctl, labCommand, labSsh, readState, resetMasters, runCli, startProbes, stopProbes, writeLabConfig, type ProbeTally} from './lab-helpers.js';

const lab = inject('lab');

/** The lab with other masters: the probes and the resets run on these. */
const withHosts = (hosts: LabInfo['hosts']): LabInfo => ({...lab!, hosts});

function expectNoFailedRequest(tallies: ProbeTally[], seconds: number): void {
	for (const tally of tallies) {
		// One request every 0.5 s on each master for the whole change (each takes some ms).
		expect(tally.requests, tally.host).toBeGreaterThan(seconds);
		expect(tally.failures, tally.host).toEqual([]);
	}
}

/** Whether every control-plane unit runs on the master ("active" four times), or none does. */
const units = (host: string) => labSsh(lab!, host, `for u in ${controlPlaneUnits.join(' ')}; do systemctl is-active $u || true; done`).trim().split('\n');
const upstreams = (host: string) => [...labSsh(lab!, host, 'cat /opt/k8s/kube-nginx/conf/kube-nginx.conf').matchAll(/server (\S+):6443/g)].map(match => match[1]);

/**
 * A change of the masters on a running cluster, with the availability probe through the kube-nginx of
 * every master that serves throughout; answers the run and how long it took.
 */
async function applyProbed(configFile: string, stateDir: string, serving: LabInfo['hosts']) {
	startProbes(withHosts(serving));
	const started = Date.now();
	const run = await runCli(['apply', '--config', configFile, '--state-dir', stateDir, '--yes']);
	const seconds = (Date.now() - started) / 1000;
	const tallies = stopProbes(withHosts(serving));
	console.log(`${seconds.toFixed(1)} s; probe ${tallies.map(tally => `${tally.host} ${tally.requests} requests, ${tally.failures.length} failed`).join('; ')}`);
	expect(run.code, run.stdout + run.stderr).toBe(0);
	expectNoFailedRequest(tallies, seconds);
	return run;
}

/** What etcd holds for the apiservers: the identity leases' host names and the kubernetes Endpoints' addresses. */
function clusterRecords(): {leaseHosts: string[]; endpoints: string} {
	const leases = etcdctl(lab!, 'get', '/registry/leases/kube-system/', '--prefix', '--print-value-only');
	return {
		leaseHosts: [...leases.matchAll(/"kubernetes\.io\/hostname": ?"([\w-]+)"/g)].map(match => match[1]!),
		endpoints: etcdctl(lab!, 'get', '/registry/services/endpoints/default/kubernetes', '--print-value-only'),
	};
}

describe.skipIf(!lab)('masters added, removed and replaced through the config\'s masters: list', () => {
	let fourth: {name: string; ip: string};
	const [first, second, third] = lab?.hosts ?? [];

	beforeAll(() => {
		// The lab grows by one host for this file only (lab.sh add-host), and shrinks back at the end.
		labCommand(lab!, 'add-host', '4');
		const info = JSON.parse(readFileSync(path.join(lab!.dir, 'lab.json'), 'utf8')) as {extraHosts?: LabInfo['hosts']};
		fourth = info.extraHosts![0]!;
	});

	afterAll(() => {
		resetMasters(withHosts([...lab!.hosts, fourth]));
		labCommand(lab!, 'remove-host', '4');
		const info = JSON.parse(readFileSync(path.join(lab!.dir, 'lab.json'), 'utf8')) as {hosts: LabInfo['hosts']; extraHosts?: unknown};
		expect(info.hosts).toHaveLength(3);
		expect(info.extraHosts).toBeUndefined();
	});

	beforeEach(() => resetMasters(withHosts([...lab!.hosts, fourth])));

	test('a fourth master added: it gets everything, the others re-issue their certificate and reload kube-nginx; no request fails', async () => {
		const {configFile, stateDir} = writeLabConfig(lab!, 'v1.28.7');
		const install = await runCli(['apply', '--config', configFile, '--state-dir', stateDir, '--yes']);
		expect(install.code, install.stdout + install.stderr).toBe(0);

		const grown = writeLabConfig(lab!, 'v1.28.7', {masters: [...lab!.hosts, fourth]}).configFile;
		const plan = await runCli(['plan', '--config', grown, '--state-dir', stateDir]);
		expect(plan.stdout).toContain(`${fourth.name} (${fourth.ip}) joins`);
		expect(plan.stdout).toMatch(new RegExp(`kubernetes certificate reissued \\(its SANs changed \\(\\+${fourth.ip.replaceAll('.', '\\.')}\\); same key pair\\)`));
		expect(plan.stdout).toContain('etcd is external to this tool and is not changed');

		const run = await applyProbed(grown, stateDir, lab!.hosts);
		expect(run.stdout).toMatch(/kube-nginx \(reloaded\)/);
		for (const host of [...lab!.hosts, fourth]) {
			expect(units(host.name), host.name).toEqual(controlPlaneUnits.map(() => 'active'));
			expect(upstreams(host.name), host.name).toEqual([...lab!.hosts, fourth].map(each => each.ip));
			expect(labSsh(lab!, host.name, 'openssl x509 -in /etc/kubernetes/cert/kubernetes.pem -noout -ext subjectAltName'), host.name).toContain(`IP Address:${fourth.ip}`);
		}

		const verify = await runCli(['verify', '--config', grown, '--state-dir', stateDir]);
		expect(verify.code, verify.stdout + verify.stderr).toBe(0);
		expect(Object.keys(readState(stateDir).masters).sort()).toEqual([...lab!.hosts, fourth].map(each => each.name).sort());
	});

	test('a master removed: out of kube-nginx everywhere first, then decommissioned, its lease and endpoint gone; no request fails', async () => {
		const four = [...lab!.hosts, fourth];
		const {configFile, stateDir} = writeLabConfig(lab!, 'v1.28.7', {masters: four});
		const install = await runCli(['apply', '--config', configFile, '--state-dir', stateDir, '--yes']);
		expect(install.code, install.stdout + install.stderr).toBe(0);
		// The apiservers wrote their leases and endpoints (the stand-in's loop: every 10 s).
		await new Promise(resolve => setTimeout(resolve, 12_000));
		expect(clusterRecords().leaseHosts).toContain(second!.name);

		const staying = [first!, third!, fourth];
		const shrunk = writeLabConfig(lab!, 'v1.28.7', {masters: staying}).configFile;
		const run = await applyProbed(shrunk, stateDir, staying);
		expect(run.stdout).toContain(`warning: ${second!.name} (${second!.ip}) leaves`);
		expect(run.stdout).toContain(`etcd.endpoints still lists https://${second!.ip}:2379 of a leaving master`);
		expect(units(second!.name)).not.toContain('active');
		expect(labSsh(lab!, second!.name, 'ls /etc/kubernetes /etc/systemd/system/kube-apiserver.service 2>&1 || true')).toMatch(/No such file or directory/);
		for (const host of staying) {
			expect(upstreams(host.name), host.name).toEqual(staying.map(each => each.ip));
			expect(labSsh(lab!, host.name, 'openssl x509 -in /etc/kubernetes/cert/kubernetes.pem -noout -ext subjectAltName'), host.name).not.toMatch(new RegExp(`IP Address:${second!.ip.replaceAll('.', '\\.')}(,|\\s|$)`));
		}

		const records = clusterRecords();
		expect(records.leaseHosts).not.toContain(second!.name);
		expect(records.endpoints).not.toContain(`"${second!.ip}"`);
		const state = readState(stateDir);
		expect(state.masters).not.toHaveProperty(second!.name);
		expect(Object.values(state.steps as Record<string, {hosts: Record<string, unknown>}>).some(step => second!.name in step.hosts)).toBe(false);
		// Nothing left to change.
		const plan = await runCli(['plan', '--config', shrunk, '--state-dir', stateDir, '--exit-code']);
		expect(plan.code, plan.stdout + plan.stderr).toBe(0);
	});

	test('the first master replaced by the fourth: the rest keep serving, the new list everywhere', async () => {
		const {configFile, stateDir} = writeLabConfig(lab!, 'v1.28.7');
		const install = await runCli(['apply', '--config', configFile, '--state-dir', stateDir, '--yes']);
		expect(install.code, install.stdout + install.stderr).toBe(0);

		const replaced = [fourth, second!, third!];
		const replacedConfig = writeLabConfig(lab!, 'v1.28.7', {masters: replaced}).configFile;
		const run = await applyProbed(replacedConfig, stateDir, [second!, third!]);
		expect(run.stdout).toContain(`warning: ${first!.name} (${first!.ip}) leaves`);
		expect(units(first!.name)).not.toContain('active');
		for (const host of replaced) {
			expect(units(host.name), host.name).toEqual(controlPlaneUnits.map(() => 'active'));
			expect(upstreams(host.name), host.name).toEqual(replaced.map(each => each.ip));
		}

		// etcd on the first master is the operator's: still a member, still in use.
		expect(etcdctl(lab!, 'endpoint', 'health')).not.toMatch(/unhealthy/);
		const verify = await runCli(['verify', '--config', replacedConfig, '--state-dir', stateDir]);
		expect(verify.code, verify.stdout + verify.stderr).toBe(0);
		const kubeconfig = readFileSync(path.join(stateDir, 'kubernetes', 'rendered', 'admin.kubeconfig'), 'utf8');
		expect(kubeconfig).toMatch(new RegExp(`current-context: ${fourth.name}`));
	});
});
