import {describe, expect, test} from 'vitest';
import type {InstallState} from '../../source/state/store.js';
import {recordedReleases, releaseChange, releaseMove, skewRefusal} from '../../source/upgrade/skew.js';
import {parseVersion, supportedMinors} from '../../source/versions.js';

const v = (text: string) => parseVersion(text)!;
const masters = ['k8smaster01', 'k8smaster02', 'k8smaster03'];
/** Every master recorded on these releases (one per master, in order; the last repeats). */
const onReleases = (...releases: string[]): Pick<InstallState, 'version' | 'startedReleases' | 'steps'> => ({
	version: releases.at(-1),
	steps: {},
	startedReleases: Object.fromEntries(masters.map((master, index) => [master, [releases[Math.min(index, releases.length - 1)]!]])),
});

const minors = Array.from({length: supportedMinors.newest - supportedMinors.oldest + 1}, (_, index) => supportedMinors.oldest + index);

describe('version skew: every pair of releases in the table', () => {
	// Written out from the policy, not from the code: one minor up is an upgrade, two or more is
	// refused naming the next minor, any minor down is refused even with --allow-downgrade, a patch
	// down only with it.
	for (const from of minors) {
		test(`from v1.${from}.x to every supported release`, () => {
			for (const to of minors) {
				for (const [fromPatch, toPatch] of [[3, 3], [3, 7], [7, 3], [0, 0]] as const) {
					const source = `v1.${from}.${fromPatch}`;
					const target = `v1.${to}.${toPatch}`;
					const state = onReleases(source);
					const refusal = skewRefusal(state, masters, v(target), false);
					const allowed = skewRefusal(state, masters, v(target), true);
					const pair = `${source} -> ${target}`;
					if (to - from >= 2) {
						expect(releaseMove(v(source), v(target)), pair).toBe('skips-minor');
						expect(refusal?.field, pair).toBe('version');
						expect(refusal?.value, pair).toBe(target);
						expect(refusal?.fix, pair).toContain(`apply v1.${from + 1}.x first`);
						expect(allowed, pair).toBeDefined();
					} else if (to - from === 1) {
						expect(releaseMove(v(source), v(target)), pair).toBe('minor-upgrade');
						expect(refusal, pair).toBeUndefined();
						expect(releaseChange(state, masters, v(target))?.minor, pair).toBe(true);
					} else if (to < from) {
						expect(releaseMove(v(source), v(target)), pair).toBe('minor-downgrade');
						expect(refusal?.message, pair).toMatch(/not supported, not even with --allow-downgrade/);
						expect(allowed?.message, pair).toMatch(/not supported, not even with --allow-downgrade/);
						expect(refusal?.fix, pair).toContain(`set version back to ${source}`);
					} else if (toPatch > fromPatch) {
						expect(releaseMove(v(source), v(target)), pair).toBe('patch-upgrade');
						expect(refusal, pair).toBeUndefined();
						expect(releaseChange(state, masters, v(target))).toMatchObject({minor: false, downgrade: false, to: target});
					} else if (toPatch < fromPatch) {
						expect(releaseMove(v(source), v(target)), pair).toBe('patch-downgrade');
						expect(refusal?.fix, pair).toContain('--allow-downgrade');
						expect(allowed, pair).toBeUndefined();
						expect(releaseChange(state, masters, v(target))?.downgrade).toBe(true);
					} else {
						expect(releaseMove(v(source), v(target)), pair).toBe('same');
						expect(refusal, pair).toBeUndefined();
						expect(releaseChange(state, masters, v(target)), pair).toBeUndefined();
					}
				}
			}
		});
	}
});

describe('version skew: masters on different releases (a stopped upgrade)', () => {
	test('resuming a minor upgrade is allowed whichever masters finished it', () => {
		const state = onReleases('v1.29.2', 'v1.28.7');
		expect(skewRefusal(state, masters, v('v1.29.2'), false)).toBeUndefined();
		expect(releaseChange(state, masters, v('v1.29.2'))?.masters).toEqual([
			{host: 'k8smaster01', from: 'v1.29.2', move: 'same'},
			{host: 'k8smaster02', from: 'v1.28.7', move: 'minor-upgrade'},
			{host: 'k8smaster03', from: 'v1.28.7', move: 'minor-upgrade'},
		]);
	});

	test('the next minor is refused while a master is still on the previous one: finish the upgrade first', () => {
		const refusal = skewRefusal(onReleases('v1.29.2', 'v1.28.7'), masters, v('v1.30.0'), false);
		expect(refusal?.message).toMatch(/k8smaster02 runs v1\.28\.7, k8smaster03 runs v1\.28\.7/);
		expect(refusal?.fix).toContain('apply v1.29.x first');
	});

	test('going back to the release every master still runs needs nothing (the stopped upgrade finished no master)', () => {
		expect(skewRefusal(onReleases('v1.28.7'), masters, v('v1.28.7'), false)).toBeUndefined();
	});

	test('the way back from a patch upgrade some masters finished needs --allow-downgrade', () => {
		const state = onReleases('v1.28.9', 'v1.28.7');
		expect(skewRefusal(state, masters, v('v1.28.7'), false)?.message).toMatch(/k8smaster01 runs v1\.28\.9: a downgrade/);
		expect(skewRefusal(state, masters, v('v1.28.7'), true)).toBeUndefined();
	});

	test('a state from before the started-release record: the recorded version of the masters start was done on', () => {
		const done = {status: 'done' as const, at: '', inputs: ''};
		const state = {version: 'v1.27.3', steps: {'install/start': {hosts: {k8smaster01: done, k8smaster02: done}}}};
		expect([...recordedReleases(state, masters)].map(([host, version]) => `${host} ${version.text}`)).toEqual(['k8smaster01 v1.27.3', 'k8smaster02 v1.27.3']);
		expect(skewRefusal(state, masters, v('v1.29.0'), false)?.fix).toContain('apply v1.28.x first');
		// A fresh install (nothing started anywhere) has no release to step from.
		expect(skewRefusal({steps: {}, startedReleases: {}}, masters, v('v1.29.0'), false)).toBeUndefined();
	});
});
