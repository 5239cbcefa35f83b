import {describe, expect, test} from 'vitest';
import {waves} from '../../source/engine/step-runner.js';
import {install} from '../../source/operations/install.js';
import type {StepDefinition} from '../../source/steps/types.js';

const step = (id: string, needs: string[] = [], afterWhenLive?: string[]): StepDefinition => ({id, title: id, needs, afterWhenLive, scope: 'each-master', plan: () => [], verify: async () => ({done: false}), run: async () => undefined});

describe('waves', () => {
	test('a need waited for only on a running cluster shares its wave; any other need starts a new one', () => {
		const grouped = waves([step('a'), step('b', ['a'], ['a']), step('c', ['a']), step('d', ['c'])]);
		expect(grouped.map(wave => wave.map(each => each.id))).toEqual([['a', 'b'], ['c'], ['d']]);
	});

	test('afterWhenLive naming a step that is not before it in its wave is refused, not silently left unwaited', () => {
		expect(() => waves([step('a', [], ['b']), step('b')])).toThrow(/step a: afterWhenLive names b/);
		expect(() => waves([step('a'), step('c', ['a']), step('b', [], ['a'])])).toThrow(/step b: afterWhenLive names a/);
	});

	test('the install: units beside the binaries, the controllers\' binaries and units beside start', () => {
		expect(waves(install.steps).map(wave => wave.map(each => each.id))).toEqual([
			['preflight'], ['distinct-machines'], ['snapshot', 'leave'],
			['binaries', 'certs', 'encryption', 'audit', 'units'],
			['start', 'controller-binaries', 'controller-units'],
			['start-controllers', 'rbac'],
			['etcd-check', 'verify', 'verify-cluster'],
		]);
	});
});
