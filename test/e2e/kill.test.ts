import {execFileSync} from 'node:child_process';
import {readdirSync} from 'node:fs';
import path from 'node:path';
import {beforeEach, describe, expect, inject, test} from 'vitest';
import {controlPlaneUnits, labSsh, readState, resetMasters, runCli, writeLabConfig} from './lab-helpers.js';

const lab = inject('lab');

/** Processes still running that a killed run started (its ssh, the read of the tarball): none may be left. */
function leftoversOf(pid: number): string[] {
	const lines = execFileSync('ps', ['-eo', 'pid=,ppid=,args='], {encoding: 'utf8'}).trim().split('\n');
	return lines.filter(line => line.trim().split(/\s+/)[1] === String(pid));
}

describe.skipIf(!lab)('SIGKILL at real size, resumed at once', () => {
	beforeEach(() => resetMasters(lab!));

	const points: Array<{name: string; when: (line: string) => boolean; delayMs: number}> = [
		{name: 'while the tarball is read', when: line => line.startsWith('unpack '), delayMs: 1500},
		// The first quarter or half of the step's bytes, whichever the progress shows first (a report every 250 ms may pass 25%): kube-apiserver is the first three quarters.
		{name: 'inside the 120 MB kube-apiserver upload', when: line => /\[binaries\]: .* \((25|50)%\)|^ {3}k8smaster0\d: .* MiB of .* \((25|50)%\)/.test(line), delayMs: 0},
		{name: 'during start', when: line => line.startsWith('== Start the control plane'), delayMs: 1000},
	];

	test.each(points)('killed $name: the next run neither races nor repeats what was done, and finishes', async point => {
		const {configFile, stateDir} = writeLabConfig(lab!, 'v1.28.7', {binaries: {tarball: lab!.tarballs['v1.28.7-real-size']}});
		let killedPid = 0;
		const killed = await runCli(['apply', '--config', configFile, '--state-dir', stateDir, '--yes'], (line, kill, pid) => {
			if (killedPid === 0 && point.when(line)) {
				killedPid = pid;
				setTimeout(kill, point.delayMs);
			}
		});
		expect(killed.signal, killed.stdout).toBe('SIGKILL');
		// What the killed run started dies with it (parent-death signal), nothing is left writing.
		await new Promise(resolve => setTimeout(resolve, 300));
		expect(leftoversOf(killedPid)).toEqual([]);

		const started = Date.now();
		const resumed = await runCli(['apply', '--config', configFile, '--state-dir', stateDir, '--yes']);
		console.log(`killed ${point.name}: resumed in ${((Date.now() - started) / 1000).toFixed(1)} s`);
		expect(resumed.code, resumed.stdout + resumed.stderr).toBe(0);
		expect(readState(stateDir).run.status).toBe('done');
		// No folder of the killed run is left beside the binaries.
		expect(readdirSync(path.join(stateDir, 'kubernetes', 'binaries'))).toEqual(['v1.28.7']);
		for (const host of lab!.hosts) {
			expect(labSsh(lab!, host.name, `systemctl is-active ${controlPlaneUnits.join(' ')}`).trim().split('\n')).toEqual(['active', 'active', 'active', 'active']);
			// No temporary upload or link of the killed run is left on a master: the release's folder and binDir's links to it.
			const binaries = ['kube-apiserver', 'kube-controller-manager', 'kube-scheduler', 'kubectl'];
			expect(labSsh(lab!, host.name, 'cd /opt/k8s/bin && find . -mindepth 1').trim().split('\n').sort()).toEqual([...binaries.map(name => `./${name}`), './v1.28.7', ...binaries.map(name => `./v1.28.7/${name}`)].sort());
			expect(labSsh(lab!, host.name, 'readlink /opt/k8s/bin/kube-apiserver').trim()).toBe('v1.28.7/kube-apiserver');
			expect(labSsh(lab!, host.name, 'sha256sum /opt/k8s/bin/v1.28.7/kube-apiserver | cut -c1-64').trim()).toBe(readState(stateDir).steps['install/binaries'].hosts[host.name].files['/opt/k8s/bin/v1.28.7/kube-apiserver']);
		}
	});
});
