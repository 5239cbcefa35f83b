import {beforeEach, describe, expect, inject, test} from 'vitest';
import {resetMasters, runCli, startProbes, stopProbes, writeLabConfig, type ProbeTally} from './lab-helpers.js';

const lab = inject('lab');

/** Seconds each master spent in start, from the line reporter's "✔ <master> done in X s" lines of that step. */
/** Each master's start step time: its line under the step's heading, or tagged [start] while other steps run beside it (the binaries that follow). */
function startSeconds(output: string): Map<string, number> {
	const seconds = new Map<string, number>();
	let section = '';
	for (const line of output.split('\n')) {
		section = /^== .* \[(\S+)\]$/.exec(line)?.[1] ?? section;
		const done = /✔ (\S+)(?: \[(\S+)\])? done in ([\d.]+) (ms|s)/.exec(line);
		if (done && (done[2] ?? section) === 'start') {
			seconds.set(done[1]!, Number(done[3]) / (done[4] === 'ms' ? 1000 : 1));
		}
	}

	return seconds;
}

function expectNoFailedRequest(tallies: ProbeTally[], seconds: number): void {
	for (const tally of tallies) {
		// One request every 0.5 s on each master for the whole change (each takes some ms).
		expect(tally.requests, tally.host).toBeGreaterThan(seconds);
		expect(tally.failures, tally.host).toEqual([]);
	}
}

describe.skipIf(!lab)('changes on a running cluster, with a probe through every master\'s kube-nginx', () => {
	beforeEach(() => resetMasters(lab!));

	test('one apiserver flag, then a patch upgrade: each master in at most 15 s, no request fails', async () => {
		// At real size: the patch upgrade sends 338 MB of binaries to every master.
		const realSize = (version: string) => ({binaries: {tarball: lab!.tarballs[`${version}-real-size`]}});
		const {configFile, stateDir} = writeLabConfig(lab!, 'v1.28.6', realSize('v1.28.6'));
		const install = await runCli(['apply', '--config', configFile, '--state-dir', stateDir, '--yes']);
		expect(install.code, install.stdout + install.stderr).toBe(0);

		const changes: Array<{name: string; config: string}> = [
			{name: 'one apiserver flag', config: writeLabConfig(lab!, 'v1.28.6', {...realSize('v1.28.6'), extraFlags: {'kube-apiserver': ['--event-ttl=170h']}}).configFile},
			{name: 'patch upgrade v1.28.6 -> v1.28.7', config: writeLabConfig(lab!, 'v1.28.7', {...realSize('v1.28.7'), extraFlags: {'kube-apiserver': ['--event-ttl=170h']}}).configFile},
		];
		for (const change of changes) {
			startProbes(lab!);
			const started = Date.now();
			const run = await runCli(['apply', '--config', change.config, '--state-dir', stateDir, '--yes']);
			const elapsed = (Date.now() - started) / 1000;
			const tallies = stopProbes(lab!);
			expect(run.code, run.stdout + run.stderr).toBe(0);
			const perMaster = startSeconds(run.stdout);
			console.log(`${change.name}: ${elapsed.toFixed(1)} s; start per master ${[...perMaster].map(([host, value]) => `${host} ${value} s`).join(', ')}; probe ${tallies.map(tally => `${tally.host} ${tally.requests} requests, ${tally.failures.length} failed`).join('; ')}`);
			expect([...perMaster.keys()].sort()).toEqual(lab!.hosts.map(host => host.name));
			for (const [host, value] of perMaster) {
				expect(value, `${change.name}: ${host}`).toBeLessThanOrEqual(15);
			}

			expect(run.stdout).toMatch(/restarted kube-apiserver/);
			expectNoFailedRequest(tallies, elapsed);
		}
	});
});
