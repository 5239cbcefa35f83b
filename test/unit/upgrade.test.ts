import {readFileSync, writeFileSync} from 'node:fs';
import path from 'node:path';
import {describe, expect, test} from 'vitest';
import {loadConfig} from '../../source/config/load.js';
import {ApplyFailed} from '../../source/engine/engine.js';
import type {EngineEvent} from '../../source/engine/events.js';
import {InputError} from '../../source/errors.js';
import {ensureMaterial} from '../../source/pki/material.js';
import {renderArtifacts} from '../../source/render/artifacts.js';
import {releaseMisfits} from '../../source/render/fit.js';
import {formatPlan} from '../../source/reporters/format.js';
import {retiredFlags, supportedMinors} from '../../source/versions.js';
import {Workspace} from '../../source/workspace.js';
import {FakeCluster} from '../helpers/fake-hosts.js';
import {baseConfig, makeFixture, writeConfig} from '../helpers/fixture.js';
import {fakeEngine} from '../helpers/engine.js';

const ips = ['172.24.8.71', '172.24.8.72', '172.24.8.73'];
const masters = ['k8smaster01', 'k8smaster02', 'k8smaster03'];

function setup(first: string) {
	const cluster = new FakeCluster(ips);
	const {dir, stateDir} = makeFixture(first);
	const configFile = path.join(dir, 'cluster.yaml');
	const release = (version: string) => writeConfig(dir, baseConfig(makeFixture(version).tarball, version));
	release(first);
	const events: EngineEvent[] = [];
	const engine = async (options: {allowDowngrade?: boolean} = {}) => {
		const config = await loadConfig(configFile);
		const instance = fakeEngine(cluster, config, stateDir, {allowDowngrade: options.allowDowngrade});
		instance.subscribe(event => events.push(event));
		return instance;
	};

	/** "HOST UNIT …" for every systemctl restart since call `from`, in order. */
	const restartsSince = (from: number) => cluster.calls.slice(from).flatMap(call => {
		const restarted = /systemctl restart ([\w -]+)$/.exec(call.args.at(-1)!.replace(/'$/, ''));
		return restarted ? [`${masters[ips.indexOf(call.host ?? '')] ?? call.host} ${restarted[1]}`] : [];
	});
	return {cluster, engine, release, events, restartsSince, stateFile: path.join(stateDir, 'kubernetes', 'state.json')};
}

describe('upgrades', () => {
	test('a minor upgrade restarts every apiserver, one master at a time, before any controller-manager or scheduler; the plan says so', async () => {
		const {cluster, engine, release, restartsSince} = setup('v1.28.7');
		await (await engine()).apply({confirm: true});
		release('v1.29.2');
		const plan = await (await engine()).plan();
		expect(plan.run).toMatchObject({kind: 'upgrade', from: 'v1.28.7', to: 'v1.29.2'});
		expect(plan.changes?.upgrade).toMatchObject({to: 'v1.29.2', minor: true, downgrade: false});
		const text = formatPlan(plan);
		expect(text).toContain('Upgrade to v1.29.2 (a minor release): k8smaster01 v1.28.7 → v1.29.2, k8smaster02 v1.28.7 → v1.29.2, k8smaster03 v1.28.7 → v1.29.2');
		expect(text).toContain('Restarts, one master at a time');
		const apiservers = text.indexOf('  kube-apiserver and kube-nginx, master by master:');
		const clients = text.indexOf('  then, once every apiserver is ready, kube-controller-manager and kube-scheduler, master by master:');
		expect(apiservers).toBeGreaterThan(0);
		expect(clients).toBeGreaterThan(apiservers);

		const before = cluster.calls.length;
		await (await engine()).apply({confirm: true});
		expect(restartsSince(before)).toEqual([
			...masters.map(master => `${master} kube-apiserver`),
			...masters.map(master => `${master} kube-controller-manager kube-scheduler`),
		]);
		const state = (await engine()).state.snapshot;
		expect(masters.map(master => state.startedReleases?.[master])).toEqual(masters.map(() => ['v1.28.7', 'v1.29.2']));

		// A unit on disk is what systemd starts after any daemon-reload: the new controller-manager's and
		// scheduler's reach a master only once the last apiserver restarted; the apiserver's before its own.
		const calls = cluster.calls.slice(before);
		const lastApiserverRestart = calls.findLastIndex(call => /systemctl restart kube-apiserver/.test(call.args.at(-1) ?? ''));
		const written = (unit: string) => calls.flatMap((call, index) => (call.command === 'ssh' && /(cat|head -c \d+|gzip -dc) > /.test(call.args.at(-1) ?? '') && (call.args.at(-1) ?? '').includes(unit) ? [index] : []));
		for (const unit of ['/etc/systemd/system/kube-controller-manager.service', '/etc/systemd/system/kube-scheduler.service']) {
			expect(written(unit), unit).toHaveLength(masters.length);
			expect(Math.min(...written(unit)), unit).toBeGreaterThan(lastApiserverRestart);
		}

		expect(written('/etc/systemd/system/kube-apiserver.service')).toHaveLength(masters.length);
		expect(Math.max(...written('/etc/systemd/system/kube-apiserver.service'))).toBeLessThan(lastApiserverRestart);

		// On a running cluster the controller binaries go once the apiservers rolled: beside a restart they slow it.
		for (const binary of ['/v1.29.2/kube-controller-manager', '/v1.29.2/kube-scheduler']) {
			expect(written(binary), binary).toHaveLength(masters.length);
			expect(Math.min(...written(binary)), binary).toBeGreaterThan(lastApiserverRestart);
		}

		expect(Math.max(...written('/v1.29.2/kube-apiserver'))).toBeLessThan(calls.findIndex(call => /systemctl restart kube-apiserver/.test(call.args.at(-1) ?? '')));

		// On a running cluster every unit is written after the binaries it names, on every master.
		for (const [unit, binary] of [['kube-apiserver.service', '/v1.29.2/kube-apiserver'], ['kube-controller-manager.service', '/v1.29.2/kube-controller-manager'], ['kube-scheduler.service', '/v1.29.2/kube-scheduler']]) {
			expect(Math.min(...written(`/etc/systemd/system/${unit}`)), unit).toBeGreaterThan(Math.max(...written(binary!)));
		}
	});

	test('a fresh install stays parallel in both start steps: the decision to roll is made once per run', async () => {
		const {engine, events} = setup('v1.28.7');
		await (await engine()).apply({confirm: true});
		// Side by side: every master's controller-manager started before the first one was done.
		const steps = events.filter(event => (event.type === 'host-start' || event.type === 'host-done') && event.step === 'start-controllers').map(event => event.type);
		expect(steps.slice(0, 3)).toEqual(['host-start', 'host-start', 'host-start']);
		// On a new cluster the controller binaries go beside the apiservers' start, not after it.
		const startDone = events.findIndex(event => event.type === 'step-done' && event.step === 'start');
		const sending = events.flatMap((event, index) => (event.type === 'host-start' && event.step === 'controller-binaries' ? [index] : []));
		expect(sending).toHaveLength(3);
		expect(Math.max(...sending)).toBeLessThan(startDone);
		// Nothing is enabled before start on a new cluster: the units go beside the binaries they name.
		const hostStarts = (step: string) => events.flatMap((event, index) => (event.type === 'host-start' && event.step === step ? [index] : []));
		const stepDone = (step: string) => events.findIndex(event => event.type === 'step-done' && event.step === step);
		expect(hostStarts('units')).toHaveLength(3);
		expect(Math.max(...hostStarts('units'))).toBeLessThan(stepDone('binaries'));
		expect(hostStarts('controller-units')).toHaveLength(3);
		expect(Math.max(...hostStarts('controller-units'))).toBeLessThan(Math.min(startDone, stepDone('controller-binaries')));
	});

	test('skipping a minor release is refused before anything is touched, naming the release to apply first', async () => {
		const {cluster, engine, release} = setup('v1.28.7');
		await (await engine()).apply({confirm: true});
		const calls = cluster.calls.length;
		release('v1.30.1');
		await expect((await engine()).plan()).rejects.toThrow(InputError);
		const refusal = await (await engine()).apply({confirm: true}).catch((error: unknown) => error);
		expect(refusal).toMatchObject({field: 'version', value: 'v1.30.1'});
		expect((refusal as InputError).fix).toContain('apply v1.29.x first');
		expect(cluster.calls).toHaveLength(calls);
	});

	test('a failure in the middle names the master, leaves the others serving, and gives the way back; going back works', async () => {
		const {cluster, engine, release, events, restartsSince} = setup('v1.28.7');
		await (await engine()).apply({confirm: true});
		release('v1.28.9');
		cluster.failRestart.add(ips[1]!);
		const before = cluster.calls.length;
		const failure = await (await engine()).apply({confirm: true}).catch((error: unknown) => error);
		expect(failure).toBeInstanceOf(ApplyFailed);
		expect((failure as ApplyFailed).message).toMatch(/start failed on k8smaster02/);
		// k8smaster03 was not touched after the failure, and no controller-manager or scheduler was restarted.
		expect(restartsSince(before)).toEqual(['k8smaster01 kube-apiserver', 'k8smaster02 kube-apiserver']);
		const wayBack = (failure as ApplyFailed).wayBack!;
		expect(wayBack).toContain('failed on k8smaster02; k8smaster01, k8smaster03 were left as they are, serving');
		expect(wayBack).toContain('The way back: set version back to v1.28.7 in the config and run apply again;');
		expect(wayBack).toContain('listed by status');
		const finished = events.findLast(event => event.type === 'finished');
		expect(finished?.type === 'finished' && finished.message).toContain('The way back');

		// The way back: no master finished v1.28.9, so no --allow-downgrade is needed; in the same order (units written twice restart).
		cluster.failRestart.clear();
		release('v1.28.7');
		const back = cluster.calls.length;
		await (await engine()).apply({confirm: true});
		const restarts = restartsSince(back);
		expect(restarts.slice(0, 3)).toEqual(masters.map(master => `${master} kube-apiserver`));
		expect(restarts.slice(3).every(restart => !restart.includes('kube-apiserver'))).toBe(true);
		expect((await engine()).state.snapshot.startedReleases?.k8smaster01?.at(-1)).toBe('v1.28.7');
	});

	test('a state written before the start was split in two (install/start alone) applies as it was: nothing restarts', async () => {
		const {cluster, engine, stateFile} = setup('v1.28.7');
		await (await engine()).apply({confirm: true});
		const state = JSON.parse(readFileSync(stateFile, 'utf8'));
		delete state.steps['install/start-controllers'];
		state.run = {...state.run, status: 'stopped', step: 'start', host: 'k8smaster02'};
		writeFileSync(stateFile, JSON.stringify(state));
		const restarts = ips.map(ip => JSON.stringify([...cluster.hosts.get(ip)!.unitRestarts]));
		const instance = await engine();
		await instance.apply({confirm: true});
		expect(ips.map(ip => JSON.stringify([...cluster.hosts.get(ip)!.unitRestarts]))).toEqual(restarts);
		expect(Object.values(instance.state.snapshot.steps['install/start-controllers']!.hosts).map(host => host.status)).toEqual(['done', 'done', 'done']);
		expect(instance.state.snapshot.run?.status).toBe('done');
	});

	test('a state written before the binaries and the units went in two steps each applies as it was: nothing sent, hashed or restarted', async () => {
		const {cluster, engine, stateFile} = setup('v1.28.7');
		await (await engine()).apply({confirm: true});
		const state = JSON.parse(readFileSync(stateFile, 'utf8'));
		type Host = {files?: Record<string, string>; stats?: Record<string, unknown>};
		for (const [later, earlier] of [['install/controller-binaries', 'install/binaries'], ['install/controller-units', 'install/units']] as const) {
			for (const [name, host] of Object.entries(state.steps[later].hosts as Record<string, Host>)) {
				const into = state.steps[earlier].hosts[name] as Host;
				into.files = {...into.files, ...host.files};
				into.stats = {...into.stats, ...host.stats};
			}

			delete state.steps[later];
		}

		writeFileSync(stateFile, JSON.stringify(state));
		const restarts = ips.map(ip => JSON.stringify([...cluster.hosts.get(ip)!.unitRestarts]));
		const before = cluster.calls.length;
		cluster.hashedFiles.length = 0;
		const instance = await engine();
		await instance.apply({confirm: true});
		expect(ips.map(ip => JSON.stringify([...cluster.hosts.get(ip)!.unitRestarts]))).toEqual(restarts);
		expect(cluster.uploads().filter(call => cluster.calls.indexOf(call) >= before)).toEqual([]);
		expect(cluster.hashedFiles.filter(entry => entry.includes('/opt/k8s/bin/'))).toEqual([]);
		expect(instance.state.snapshot.run?.status).toBe('done');
	});

	test('the units the new release starts with never hold a flag it refuses: written before the restart (v1.19 → v1.20)', async () => {
		const {cluster, engine, release} = setup('v1.19.16');
		await (await engine()).apply({confirm: true});
		const unitAtRestart: string[] = [];
		cluster.beforeCommand = spec => {
			if (/systemctl restart kube-apiserver/.test(spec.args.at(-1) ?? '') && (spec.host === masters[0] || spec.args.join(' ').includes(ips[0]!))) {
				unitAtRestart.push(cluster.hosts.get(ips[0]!)!.files.get('/etc/systemd/system/kube-apiserver.service')!.content.toString());
			}
		};

		release('v1.20.15');
		await (await engine()).apply({confirm: true});
		expect(unitAtRestart).toHaveLength(1);
		expect(unitAtRestart[0]).toContain('ExecStart=/opt/k8s/bin/v1.20.15/kube-apiserver');
		// Without effect from 1.20 (dropped); 1.20 requires the service-account issuer and signing key (added).
		expect(unitAtRestart[0]).not.toContain('--insecure-port');
		expect(unitAtRestart[0]).toContain('--service-account-issuer=');
		expect(unitAtRestart[0]).toContain('--service-account-signing-key-file=');
	});

	test('every minor release in the table: what is rendered for it fits it (no flag it refuses, none it needs missing, config kinds it reads)', async () => {
		const {dir, stateDir, tarball} = makeFixture('v1.28.7');
		for (let minor = supportedMinors.oldest + 1; minor <= supportedMinors.newest; minor++) {
			const version = `v1.${minor}.0`;
			const config = await loadConfig(writeConfig(dir, baseConfig(tarball, version), `cluster-${minor}.yaml`));
			const {material} = await ensureMaterial(config, new Workspace(stateDir, config.name));
			const artifacts = renderArtifacts(config, material);
			expect(releaseMisfits(config, artifacts), version).toEqual([]);
			const units = artifacts.filter(artifact => artifact.name.endsWith('.service')).map(artifact => artifact.content).join('\n');
			for (const retired of retiredFlags.filter(rule => rule.removedIn <= minor && rule.value === undefined)) {
				expect(units, `${version} ${retired.name}`).not.toMatch(new RegExp(`--${retired.name}(=|\\s)`));
			}
		}
	});
});
