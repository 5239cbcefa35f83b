import {readFileSync, writeFileSync} from 'node:fs';
import path from 'node:path';
import {describe, expect, test} from 'vitest';
import {loadConfig} from '../../source/config/load.js';
import {Engine} from '../../source/engine/engine.js';
import type {EngineEvent} from '../../source/engine/events.js';
import {headlessPrompter, type Prompter} from '../../source/engine/prompts.js';
import {Runner} from '../../source/runner.js';
import {Workspace} from '../../source/workspace.js';
import {FakeCluster} from '../helpers/fake-hosts.js';
import {baseConfig, makeFixture, writeConfig} from '../helpers/fixture.js';

const ips = ['172.24.8.71', '172.24.8.72', '172.24.8.73'];

describe('state', () => {
	test('a state written before operations (schema 1) is migrated without asking: nothing is redone, the resume names the install', async () => {
		const {dir, tarball, stateDir} = makeFixture();
		const configFile = writeConfig(dir, baseConfig(tarball));
		const cluster = new FakeCluster(ips);
		const engine = async (prompter: Prompter) => {
			const config = await loadConfig(configFile);
			const events: EngineEvent[] = [];
			const instance = new Engine({config, workspace: new Workspace(stateDir, config.name), runner: new Runner({executor: cluster.executor}), prompter, probe: cluster.probe, api: cluster.api});
			instance.subscribe(event => events.push(event));
			return {instance, events};
		};

		await (await engine(headlessPrompter({yes: true, overwrite: false}))).instance.apply({confirm: true});
		// The same progress as the release before operations wrote it: bare step ids, a "reset" entry, a run naming no operation.
		const file = path.join(stateDir, 'kubernetes', 'state.json');
		const current = JSON.parse(readFileSync(file, 'utf8')) as {steps: Record<string, unknown>; run: Record<string, unknown>};
		const steps = Object.fromEntries(Object.entries(current.steps).map(([key, record]) => [key.replace(/^install\//, ''), record]));
		const {operation: _operation, ...run} = current.run;
		writeFileSync(file, JSON.stringify({...current, schema: 1, steps: {...steps, reset: {hosts: {}}}, run: {...run, status: 'stopped', step: 'start', host: 'k8smaster02'}}));

		const uploads = cluster.uploads().length;
		const restarts = ips.map(ip => cluster.hosts.get(ip)!.restarts);
		const asked: string[] = [];
		const {instance, events} = await engine({
			async ask(request) {
				asked.push(request.message);
				return true as never;
			},
		});
		expect(instance.state.snapshot.schema).toBe(2);
		expect(Object.keys(instance.state.snapshot.steps)).toEqual(Object.keys(steps).map(step => `install/${step}`));
		expect(instance.state.snapshot.run).toMatchObject({operation: 'install', step: 'start'});
		await instance.apply({confirm: true});
		expect(asked).toEqual([expect.stringMatching(/^Resume the install stopped at start on k8smaster02/)]);
		for (const step of ['binaries', 'certs', 'encryption', 'audit', 'units', 'start', 'rbac']) {
			const outcomes = events.filter(event => event.type === 'host-done' && event.step === step).map(event => event.type === 'host-done' && event.outcome);
			expect(outcomes.length, step).toBeGreaterThan(0);
			expect(outcomes.every(outcome => outcome === 'skipped'), step).toBe(true);
		}

		expect(cluster.uploads().length).toBe(uploads);
		expect(ips.map(ip => cluster.hosts.get(ip)!.restarts)).toEqual(restarts);
		const stored = JSON.parse(readFileSync(file, 'utf8')) as {schema: number; steps: Record<string, unknown>};
		expect(stored.schema).toBe(2);
		expect(Object.keys(stored.steps).every(key => key.startsWith('install/'))).toBe(true);
		expect(stored.steps).not.toHaveProperty('install/reset');
	});
});
