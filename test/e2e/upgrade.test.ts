import {execFileSync} from 'node:child_process';
import path from 'node:path';
import {beforeAll, describe, expect, inject, test} from 'vitest';
import {tempDir} from '../helpers/temp.js';
import {controlPlaneUnits, labSsh, readState, resetMasters, runCli, startProbes, stopProbes, writeLabConfig, type ProbeTally} from './lab-helpers.js';

const lab = inject('lab');

/** What each master's own apiserver says it is (/version on its address, asked on the master with the probe's client certificate). */
function apiserverVersions(): string[] {
	return lab!.hosts.map(host => (JSON.parse(labSsh(lab!, host.name, `curl -q --noproxy '*' -sS --max-time 5 --cacert /etc/kubernetes/cert/ca.pem --cert /etc/kubernetes/cert/kube-controller-manager.pem --key /etc/kubernetes/cert/kube-controller-manager-key.pem https://${host.ip}:6443/version`)) as {gitVersion: string}).gitVersion);
}

/** The release each master's controller-manager and scheduler binaries (the ones their units start) claim. */
function clientVersions(): string[] {
	return lab!.hosts.flatMap(host => ['kube-controller-manager', 'kube-scheduler'].map(name => labSsh(lab!, host.name, `$(sed -n 's/^ExecStart=\\(\\S*\\).*/\\1/p' /etc/systemd/system/${name}.service) --version`).trim()));
}

function expectNoFailedRequest(tallies: ProbeTally[], seconds: number): void {
	for (const tally of tallies) {
		// One request every 0.5 s on each master through the killed run and its resume.
		expect(tally.requests, tally.host).toBeGreaterThan(seconds);
		expect(tally.failures, tally.host).toEqual([]);
	}
}

describe.skipIf(!lab)('upgrades on a running cluster, killed during start and resumed, with a probe through every master\'s kube-nginx', () => {
	// The lab's small tarballs (real size is not what this tests: the order and the resume are); v1.29.2 made here.
	let minorTarball = '';
	beforeAll(() => {
		resetMasters(lab!);
		minorTarball = path.join(tempDir('k8smi-e2e-upgrade-'), 'kubernetes-server-linux-amd64.tar.gz');
		execFileSync('bash', [path.resolve('test/lab/make-tarball.sh'), 'v1.29.2', minorTarball], {stdio: 'inherit'});
	});

	test('v1.28.6 -> v1.28.7 (patch), then v1.28.7 -> v1.29.2 (minor): every master on the new release, no request failed, no component newer than an apiserver', async () => {
		// One install for both upgrades.
		const {stateDir, configFile: installConfig} = writeLabConfig(lab!, 'v1.28.6');
		const install = await runCli(['apply', '--config', installConfig, '--state-dir', stateDir, '--yes']);
		expect(install.code, install.stdout + install.stderr).toBe(0);

		// Skipping a minor release is refused before anything is touched (the tarball is not even read).
		const skipping = await runCli(['apply', '--config', writeLabConfig(lab!, 'v1.30.1', {binaries: {tarball: minorTarball}}).configFile, '--state-dir', stateDir, '--yes']);
		expect(skipping.code, skipping.stderr).toBe(2);
		expect(skipping.stderr).toContain('apply v1.29.x first');

		const upgrades = [
			{name: 'patch v1.28.6 -> v1.28.7', version: 'v1.28.7', config: writeLabConfig(lab!, 'v1.28.7').configFile, kind: 'a patch release'},
			{name: 'minor v1.28.7 -> v1.29.2', version: 'v1.29.2', config: writeLabConfig(lab!, 'v1.29.2', {binaries: {tarball: minorTarball}}).configFile, kind: 'a minor release'},
		];
		for (const upgrade of upgrades) {
			const since = labSsh(lab!, lab!.hosts[0]!.name, 'date +"%Y-%m-%d %H:%M:%S"').trim();
			const plan = await runCli(['plan', '--config', upgrade.config, '--state-dir', stateDir]);
			expect(plan.code, plan.stderr).toBe(0);
			expect(plan.stdout).toContain(`Upgrade to ${upgrade.version} (${upgrade.kind}):`);
			expect(plan.stdout).toContain('then, once every apiserver is ready, kube-controller-manager and kube-scheduler, master by master:');

			startProbes(lab!);
			const started = Date.now();
			// Killed a second into start: the first master's apiserver is restarting (or just restarted).
			let killing = false;
			const killed = await runCli(['apply', '--config', upgrade.config, '--state-dir', stateDir, '--yes'], (line, kill) => {
				if (!killing && line.startsWith('== Start the control plane')) {
					killing = true;
					setTimeout(kill, 1000);
				}
			});
			expect(killed.signal, killed.stdout + killed.stderr).toBe('SIGKILL');
			const resumed = await runCli(['apply', '--config', upgrade.config, '--state-dir', stateDir, '--yes']);
			const elapsed = (Date.now() - started) / 1000;
			const tallies = stopProbes(lab!);
			console.log(`${upgrade.name}: killed and resumed in ${elapsed.toFixed(1)} s; probe ${tallies.map(tally => `${tally.host} ${tally.requests} requests, ${tally.failures.length} failed`).join('; ')}`);
			expect(resumed.code, resumed.stdout + resumed.stderr).toBe(0);
			expect(readState(stateDir).run.status).toBe('done');
			expectNoFailedRequest(tallies, elapsed);

			expect(apiserverVersions()).toEqual(lab!.hosts.map(() => upgrade.version));
			expect(clientVersions()).toEqual(lab!.hosts.flatMap(() => [`Kubernetes ${upgrade.version}`, `Kubernetes ${upgrade.version}`]));
			expect(lab!.hosts.map(host => readState(stateDir).startedReleases[host.name].at(-1))).toEqual(lab!.hosts.map(() => upgrade.version));
			for (const host of lab!.hosts) {
				expect(labSsh(lab!, host.name, `systemctl is-active ${controlPlaneUnits.join(' ')}`).trim().split('\n')).toEqual(['active', 'active', 'active', 'active']);
				// The stand-ins refuse to run newer than an apiserver they reach: none ever did.
				expect(labSsh(lab!, host.name, `journalctl -u kube-controller-manager -u kube-scheduler --since '${since}' --no-pager -o cat | grep -c 'version skew' || true`).trim()).toBe('0');
			}
		}
	});
});
