import {describe, expect, test} from 'vitest';
import {loadConfig} from '../../source/config/load.js';
import {Engine, StopRequested} from '../../source/engine/engine.js';
import type {EngineEvent} from '../../source/engine/events.js';
import type {Prompter} from '../../source/engine/prompts.js';
import type {Operation} from '../../source/operations/types.js';
import {Runner} from '../../source/runner.js';
import {preflight} from '../../source/steps/preflight.js';
import type {StepDefinition} from '../../source/steps/types.js';
import {Workspace} from '../../source/workspace.js';
import {FakeCluster} from '../helpers/fake-hosts.js';
import {baseConfig, makeFixture, writeConfig} from '../helpers/fixture.js';

const ips = ['172.24.8.71', '172.24.8.72', '172.24.8.73'];

/** A day-2 operation as a test would add one: a list of steps, nothing in the engine. */
function toyOperation(ran: string[], stopAfter?: {engine?: Engine; host: string}): Operation {
	const rolling: StepDefinition = {
		id: 'rolling',
		title: 'One master after the other, the first two only',
		needs: [],
		scope: 'each-master',
		order: 'rolling',
		hosts: context => context.config.masters.slice(0, 2),
		plan: () => [{kind: 'check', description: 'note the master'}],
		verify: async (_context, _master, record) => ({done: record?.status === 'done', detail: 'noted earlier'}),
		async run(_context, master) {
			ran.push(`start ${master.name}`);
			await new Promise(resolve => setTimeout(resolve, 20));
			ran.push(`end ${master.name}`);
			if (stopAfter?.host === master.name) {
				stopAfter.engine?.requestStop();
			}

			return 'noted';
		},
	};
	const cluster: StepDefinition = {
		id: 'cluster', title: 'Once for the cluster', needs: ['rolling'], scope: 'cluster',
		plan: () => [{kind: 'check', description: 'note the cluster'}],
		verify: async (_context, _master, record) => ({done: record?.status === 'done'}),
		async run(_context, master) {
			ran.push(`cluster via ${master.name}`);
			return 'noted';
		},
	};
	return {
		id: 'toy', title: 'A toy operation', noun: 'toy', command: 'toy', mode: 'recorded',
		steps: [preflight, rolling, cluster],
		words: {question: ({masters}) => `Play with ${masters.join(', ')}?`, done: ({masters}) => `${masters.length} master(s) played with`},
	};
}

async function setup() {
	const fixture = makeFixture();
	const configFile = writeConfig(fixture.dir, baseConfig(fixture.tarball));
	const cluster = new FakeCluster(ips);
	return async (answer = true) => {
		const config = await loadConfig(configFile);
		const events: EngineEvent[] = [];
		const asked: string[] = [];
		const prompter: Prompter = {
			async ask(request) {
				asked.push(request.message);
				return answer as never;
			},
		};
		const engine = new Engine({config, workspace: new Workspace(fixture.stateDir, config.name), runner: new Runner({executor: cluster.executor}), prompter, probe: cluster.probe, api: cluster.api});
		engine.subscribe(event => events.push(event));
		return {engine, events, asked};
	};
}

describe('operations', () => {
	test('a new operation is a list of steps: its steps choose their masters and order, its progress is its own', async () => {
		const engine = await setup();
		const ran: string[] = [];
		const first = await engine();
		await first.engine.run(toyOperation(ran), {confirm: true});
		expect(first.asked).toEqual(['Play with k8smaster01, k8smaster02, k8smaster03?']);
		expect(ran).toEqual(['start k8smaster01', 'end k8smaster01', 'start k8smaster02', 'end k8smaster02', 'cluster via k8smaster01']);
		expect(first.events.find(event => event.type === 'step-start' && event.step === 'rolling')).toMatchObject({hosts: ['k8smaster01', 'k8smaster02']});
		expect(first.events.at(-1)).toMatchObject({type: 'finished', outcome: 'done', message: '3 master(s) played with'});
		const state = first.engine.state.snapshot;
		expect(Object.keys(state.steps).sort()).toEqual(['toy/cluster', 'toy/preflight', 'toy/rolling']);
		expect(state.run).toMatchObject({operation: 'toy', status: 'done'});

		// Done work is verified, not redone.
		const again = await engine();
		await again.engine.run(toyOperation(ran), {confirm: true});
		expect(ran).toHaveLength(5);
	});

	test('a stopped operation is resumed under its own name', async () => {
		const engine = await setup();
		const ran: string[] = [];
		const first = await engine();
		await expect(first.engine.run(toyOperation(ran, {engine: first.engine, host: 'k8smaster01'}), {confirm: true})).rejects.toBeInstanceOf(StopRequested);
		expect(first.engine.state.snapshot.run).toMatchObject({operation: 'toy', status: 'stopped'});

		// A stopped toy is no install to resume: apply asks its own question (refused here, nothing changes).
		const install = await engine(false);
		await expect(install.engine.apply({confirm: true})).rejects.toThrow(/apply not confirmed/);
		expect(install.asked).toEqual([expect.stringMatching(/^Apply the plan to 3 master\(s\)/)]);

		const again = await engine();
		await again.engine.run(toyOperation(ran), {confirm: true});
		expect(again.asked).toEqual([expect.stringMatching(/^Resume the toy stopped at rolling/)]);
		// k8smaster01 finished before the stop: only k8smaster02 is left.
		expect(ran.filter(entry => entry.startsWith('start'))).toEqual(['start k8smaster01', 'start k8smaster02']);
	});
});
