import {createHash} from 'node:crypto';
import {mkdirSync, readFileSync, statSync, writeFileSync} from 'node:fs';
import path from 'node:path';
import {describe, expect, test} from 'vitest';
import {loadConfig} from '../../source/config/load.js';
import {Engine} from '../../source/engine/engine.js';
import type {EngineEvent} from '../../source/engine/events.js';
import {headlessPrompter, type Prompter} from '../../source/engine/prompts.js';
import type {MaterialRecord} from '../../source/pki/material.js';
import {Runner} from '../../source/runner.js';
import {StateStore} from '../../source/state/store.js';
import {Workspace} from '../../source/workspace.js';
import {FakeCluster} from '../helpers/fake-hosts.js';
import {baseConfig, makeFixture, writeConfig} from '../helpers/fixture.js';

const ips = ['172.24.8.71', '172.24.8.72', '172.24.8.73'];

/** The material record as releases with one encryption key wrote it. */
function singleKeyRecord(material: MaterialRecord): Record<string, unknown> {
	const {encryptionKeys, ...rest} = material;
	expect(encryptionKeys).toHaveLength(1);
	return {...rest, encryptionKeySha256: encryptionKeys[0]!.sha256};
}

function setup() {
	const {dir, tarball, stateDir} = makeFixture();
	const configFile = writeConfig(dir, baseConfig(tarball));
	const cluster = new FakeCluster(ips);
	const engine = async (prompter: Prompter = headlessPrompter({yes: true, overwrite: false})) => {
		const config = await loadConfig(configFile);
		const events: EngineEvent[] = [];
		const instance = new Engine({config, workspace: new Workspace(stateDir, config.name), runner: new Runner({executor: cluster.executor}), prompter, probe: cluster.probe, api: cluster.api});
		instance.subscribe(event => events.push(event));
		return {instance, events};
	};

	return {stateDir, cluster, engine, file: path.join(stateDir, 'kubernetes', 'state.json'), keyFile: path.join(stateDir, 'kubernetes', 'pki', 'encryption.key')};
}

/** Answers yes to every question and keeps what was asked. */
function recordingPrompter(asked: string[]): Prompter {
	return {
		async ask(request) {
			asked.push(request.message);
			return true as never;
		},
	};
}

describe('state', () => {
	test('a state written before operations (schema 1) is migrated without asking: nothing is redone, the resume names the install', async () => {
		const {stateDir, cluster, engine} = setup();
		await (await engine(headlessPrompter({yes: true, overwrite: false}))).instance.apply({confirm: true});
		// The same progress as the release before operations wrote it: bare step ids, a "reset" entry, a run naming no operation,
		// and no record of the cluster steps that came later (the cross-master preflight check, verify's cluster checks).
		const file = path.join(stateDir, 'kubernetes', 'state.json');
		const current = JSON.parse(readFileSync(file, 'utf8')) as {steps: Record<string, unknown>; run: Record<string, unknown>; material: MaterialRecord};
		const later = ['install/distinct-machines', 'install/verify-cluster'];
		expect(Object.keys(current.steps)).toEqual(expect.arrayContaining(later));
		const steps = Object.fromEntries(Object.entries(current.steps).filter(([key]) => !later.includes(key)).map(([key, record]) => [key.replace(/^install\//, ''), record]));
		const {operation: _operation, ...run} = current.run;
		writeFileSync(file, JSON.stringify({...current, schema: 1, steps: {...steps, reset: {hosts: {}}}, run: {...run, status: 'stopped', step: 'start', host: 'k8smaster02'}, material: singleKeyRecord(current.material)}));

		const uploads = cluster.uploads().length;
		const restarts = ips.map(ip => cluster.hosts.get(ip)!.restarts);
		const asked: string[] = [];
		const {instance, events} = await engine(recordingPrompter(asked));
		expect(instance.state.snapshot.schema).toBe(3);
		expect(instance.state.snapshot.material).toEqual(current.material);
		expect(Object.keys(instance.state.snapshot.steps)).toEqual(Object.keys(steps).map(step => `install/${step}`));
		expect(instance.state.snapshot.run).toMatchObject({operation: 'install', step: 'start'});
		await instance.apply({confirm: true});
		expect(asked).toEqual([expect.stringMatching(/^Resume the install stopped at start on k8smaster02/)]);
		for (const step of ['binaries', 'certs', 'encryption', 'audit', 'units', 'start', 'rbac']) {
			const outcomes = events.filter(event => event.type === 'host-done' && event.step === step).map(event => event.type === 'host-done' && event.outcome);
			expect(outcomes.length, step).toBeGreaterThan(0);
			expect(outcomes.every(outcome => outcome === 'skipped'), step).toBe(true);
		}

		// A cluster step with no record simply runs.
		for (const step of ['distinct-machines', 'verify-cluster']) {
			expect(events.filter(event => event.type === 'host-done' && event.step === step), step).toEqual([expect.objectContaining({host: 'cluster', outcome: 'done'})]);
		}

		expect(cluster.uploads().length).toBe(uploads);
		expect(ips.map(ip => cluster.hosts.get(ip)!.restarts)).toEqual(restarts);
		const stored = JSON.parse(readFileSync(file, 'utf8')) as {schema: number; steps: Record<string, unknown>};
		expect(stored.schema).toBe(3);
		expect(Object.keys(stored.steps).every(key => key.startsWith('install/'))).toBe(true);
		expect(stored.steps).not.toHaveProperty('install/reset');
	});

	test('an install recorded before the cross-master and cluster checks were steps of their own resumes as it is; those steps simply run', async () => {
		const {stateDir, cluster, engine} = setup();
		await (await engine(headlessPrompter({yes: true, overwrite: false}))).instance.apply({confirm: true});
		// As that release left a run stopped during verify: no record of the two cluster steps, the stop named for the cluster.
		const file = path.join(stateDir, 'kubernetes', 'state.json');
		const current = JSON.parse(readFileSync(file, 'utf8')) as {steps: Record<string, unknown>; run: Record<string, unknown>};
		const {'install/distinct-machines': _machines, 'install/verify-cluster': _cluster, ...steps} = current.steps;
		writeFileSync(file, JSON.stringify({...current, steps, run: {...current.run, status: 'stopped', step: 'verify', host: 'cluster'}}));

		const uploads = cluster.uploads().length;
		const asked: string[] = [];
		const {instance, events} = await engine(recordingPrompter(asked));
		await instance.apply({confirm: true});
		expect(asked).toEqual([expect.stringMatching(/^Resume the install stopped at verify on cluster/)]);
		for (const step of ['distinct-machines', 'verify-cluster']) {
			expect(events.filter(event => event.type === 'host-done' && event.step === step), step).toEqual([expect.objectContaining({host: 'cluster', outcome: 'done'})]);
		}

		expect(cluster.uploads().length).toBe(uploads);
		expect(instance.state.snapshot.run).toMatchObject({operation: 'install', status: 'done'});
		expect(Object.keys(instance.state.snapshot.steps)).toEqual(expect.arrayContaining(['install/distinct-machines', 'install/verify-cluster']));
	});
});

describe('writes', () => {
	test('a record written again as it was leaves the file alone; any change is written, also by a store opened later', () => {
		const {stateDir} = makeFixture();
		const folder = path.join(stateDir, 'kubernetes');
		const record = {status: 'done', at: '2026-01-01T00:00:00.000Z', inputs: 'x'} as const;
		const store = new StateStore(folder, 'kubernetes');
		store.progress('install').recordHost('start', 'k8smaster01', record);
		const file = path.join(folder, 'state.json');
		const written = statSync(file, {bigint: true});
		store.progress('install').recordHost('start', 'k8smaster01', {...record});
		new StateStore(folder, 'kubernetes').progress('install').recordHost('start', 'k8smaster01', {...record});
		expect(statSync(file, {bigint: true}).ino).toBe(written.ino);
		expect(statSync(file, {bigint: true}).mtimeNs).toBe(written.mtimeNs);

		store.progress('install').recordHost('start', 'k8smaster02', record);
		expect(Object.keys(new StateStore(folder, 'kubernetes').snapshot.steps['install/start']!.hosts)).toEqual(['k8smaster01', 'k8smaster02']);
		new StateStore(folder, 'kubernetes').progress('install').recordHost('start', 'k8smaster01', {...record, inputs: 'y'});
		expect(new StateStore(folder, 'kubernetes').progress('install').host('start', 'k8smaster01')?.inputs).toBe('y');
	});
});

describe('start over', () => {
	test('forgets the progress, not where the masters are: a master the config dropped is still decommissioned by the next apply', () => {
		const {stateDir} = makeFixture();
		const store = new StateStore(path.join(stateDir, 'kubernetes'), 'kubernetes');
		store.recordMasters([{name: 'k8smaster01', ip: '172.24.8.71'}, {name: 'k8smaster03', ip: '172.24.8.73'}]);
		store.progress('install').recordHost('start', 'k8smaster03', {status: 'done', at: new Date().toISOString(), inputs: 'x'});
		store.clearProgress();
		expect(store.snapshot.steps).toEqual({});
		expect(Object.keys(store.snapshot.masters ?? {})).toEqual(['k8smaster01', 'k8smaster03']);
	});
});

describe('state of one encryption key (schema 2)', () => {
	test('is migrated without asking: the key is the list\'s only key, key1; nothing is redone, and a changed key is still refused', async () => {
		const {cluster, engine, file, keyFile} = setup();
		await (await engine()).instance.apply({confirm: true});
		const current = JSON.parse(readFileSync(file, 'utf8')) as {material: MaterialRecord};
		const key = readFileSync(keyFile, 'utf8');
		expect(current.material.encryptionKeys).toEqual([{name: 'key1', sha256: createHash('sha256').update(key.trim()).digest('hex')}]);
		writeFileSync(file, JSON.stringify({...current, schema: 2, material: singleKeyRecord(current.material)}));

		const uploads = cluster.uploads().length;
		const restarts = ips.map(ip => cluster.hosts.get(ip)!.restarts);
		const {instance, events} = await engine();
		expect(instance.state.snapshot).toMatchObject({schema: 3, material: current.material});
		await instance.apply({confirm: false});
		for (const step of ['binaries', 'certs', 'encryption', 'audit', 'units', 'start', 'rbac']) {
			const outcomes = events.filter(event => event.type === 'host-done' && event.step === step).map(event => event.type === 'host-done' && event.outcome);
			expect(outcomes.length, step).toBeGreaterThan(0);
			expect(outcomes.every(outcome => outcome === 'skipped'), step).toBe(true);
		}

		expect(cluster.uploads().length).toBe(uploads);
		expect(ips.map(ip => cluster.hosts.get(ip)!.restarts)).toEqual(restarts);
		const stored = readFileSync(file, 'utf8');
		expect(JSON.parse(stored)).toMatchObject({schema: 3, material: current.material});
		expect(stored).not.toContain('encryptionKeySha256');
		expect(stored).not.toContain(key.trim());

		writeFileSync(file, JSON.stringify({...current, schema: 2, material: singleKeyRecord(current.material)}));
		writeFileSync(keyFile, `${Buffer.alloc(32, 3).toString('base64')}\n`);
		await expect((await engine()).instance.apply({confirm: false})).rejects.toThrow(/^encryption: is not the key this install already put on the masters .*Fix: restore pki\/encryption\.key/);
	});

	test('a state a newer release wrote is refused, not read as empty', async () => {
		const {engine, file} = setup();
		mkdirSync(path.dirname(file), {recursive: true});
		const newer = JSON.stringify({schema: 4, cluster: 'kubernetes', steps: {}});
		writeFileSync(file, newer);
		await expect(engine()).rejects.toThrow(/^--state-dir: was written by a newer k8s-master-install \(state schema 4; this one reads up to 3\)/);
		expect(readFileSync(file, 'utf8')).toBe(newer);
	});
});
