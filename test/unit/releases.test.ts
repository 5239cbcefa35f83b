import {createHash} from 'node:crypto';
import path from 'node:path';
import {describe, expect, test} from 'vitest';
import {loadConfig} from '../../source/config/load.js';
import {ApplyFailed, Engine} from '../../source/engine/engine.js';
import {headlessPrompter} from '../../source/engine/prompts.js';
import type {Operation} from '../../source/operations/types.js';
import {Runner} from '../../source/runner.js';
import {uploadsStartReads} from '../../source/steps/definitions.js';
import {startStep} from '../../source/steps/services.js';
import {Workspace} from '../../source/workspace.js';
import {FakeCluster} from '../helpers/fake-hosts.js';
import {baseConfig, makeFixture, writeConfig} from '../helpers/fixture.js';

const ips = ['172.24.8.71', '172.24.8.72', '172.24.8.73'];
const masters = ['k8smaster01', 'k8smaster02', 'k8smaster03'];
const names = ['kube-apiserver', 'kube-controller-manager', 'kube-scheduler', 'kubectl'];
const sha256 = (content: Buffer | string) => createHash('sha256').update(content).digest('hex');

/** One cluster and one state folder; `release` switches the config to another release's tarball. */
function setup() {
	const cluster = new FakeCluster(ips);
	const {dir, stateDir} = makeFixture('v1.28.7');
	const configFile = path.join(dir, 'cluster.yaml');
	const release = (version: string) => writeConfig(dir, baseConfig(makeFixture(version).tarball, version));
	release('v1.28.7');
	const engine = async (options: {overwrite?: boolean; allowDowngrade?: boolean} = {}) => {
		const config = await loadConfig(configFile);
		return new Engine({config, workspace: new Workspace(stateDir, config.name), runner: new Runner({executor: cluster.executor}), prompter: headlessPrompter({yes: true, overwrite: options.overwrite ?? false}), probe: cluster.probe, api: cluster.api, allowDowngrade: options.allowDowngrade});
	};

	const file = (ip: string, remotePath: string) => cluster.hosts.get(ip)!.files.get(remotePath);
	/** A master's binaries moved back to where an earlier version of this tool left them (binDir/NAME files); their records. */
	const toOldLayout = (ip: string) => {
		const files: Record<string, string> = {};
		for (const name of names) {
			const binary = cluster.hosts.get(ip)!.files.get(`/opt/k8s/bin/v1.28.7/${name}`)!;
			cluster.hosts.get(ip)!.files.set(`/opt/k8s/bin/${name}`, {...binary});
			cluster.hosts.get(ip)!.files.delete(`/opt/k8s/bin/v1.28.7/${name}`);
			files[`/opt/k8s/bin/${name}`] = sha256(binary.content);
		}

		return files;
	};

	/** Each release applied in turn, as an operator upgrades. */
	const applyReleases = async (...versions: string[]) => {
		for (const version of versions) {
			release(version);
			await (await engine()).apply({confirm: true});
		}
	};

	return {cluster, engine, release, file, applyReleases, toOldLayout};
}

describe('versioned binaries', () => {
	test('each release sits in binDir/VERSION/, the units start it from there, and binDir/NAME links to it', async () => {
		const {cluster, engine, file} = setup();
		await (await engine()).apply({confirm: true});
		for (const ip of ips) {
			for (const name of names) {
				expect(file(ip, `/opt/k8s/bin/v1.28.7/${name}`)).toMatchObject({mode: 0o755, owner: 'root'});
				expect(file(ip, `/opt/k8s/bin/${name}`)?.link).toBe(`v1.28.7/${name}`);
			}

			for (const unit of ['kube-apiserver', 'kube-controller-manager', 'kube-scheduler']) {
				expect(file(ip, `/etc/systemd/system/${unit}.service`)?.content.toString()).toContain(`ExecStart=/opt/k8s/bin/v1.28.7/${unit} \\`);
			}
		}

		const scripts = cluster.calls.filter(call => call.step === 'binaries').map(call => call.args.at(-1)!);
		// The release's folder 0755 root-owned first, then each link made under a temporary name and renamed over the old one.
		expect(scripts.find(script => script.includes('ln -sfn'))).toContain('; chown root:root /opt/k8s/bin/v1.28.7; chmod 755 /opt/k8s/bin/v1.28.7; ln -sfn -- v1.28.7/kube-apiserver ');
		expect(scripts.find(script => script.includes('ln -sfn'))).toContain('rm -f -- /opt/k8s/bin/kube-apiserver.k8smi-link-* ');
		expect(scripts.find(script => script.includes('ln -sfn'))).toContain('ln -sfn -- v1.28.7/kubectl /opt/k8s/bin/kubectl.k8smi-link-$$; mv -T -f -- /opt/k8s/bin/kubectl.k8smi-link-$$ /opt/k8s/bin/kubectl');
		expect(cluster.uploads().every(call => !/\/opt\/k8s\/bin\/kube[\w-]*'? /.test(call.args.at(-1)!.replaceAll('/opt/k8s/bin/v1.28.7/', '')))).toBe(true);

		// Nothing changed: the links are read, not switched again, and their targets are not hashed again.
		cluster.hashedFiles.length = 0;
		const before = cluster.calls.length;
		await (await engine()).apply({confirm: true});
		expect(cluster.calls.slice(before).filter(call => call.args.at(-1)!.includes('ln -sfn'))).toEqual([]);
		expect(cluster.hashedFiles).toEqual([]);
	});

	test('a new release waits beside the running one; its unit change restarts the services, rolling; the old release stays', async () => {
		const {cluster, engine, release, file} = setup();
		release('v1.28.6');
		await (await engine()).apply({confirm: true});
		const oldApiserver = file(ips[0]!, '/opt/k8s/bin/v1.28.6/kube-apiserver')!.content;
		cluster.restartOrder.length = 0;

		release('v1.28.7');
		const upgrade = await engine();
		await upgrade.apply({confirm: true});
		for (const [index, ip] of ips.entries()) {
			const host = cluster.hosts.get(ip)!;
			expect(file(ip, '/etc/systemd/system/kube-controller-manager.service')?.content.toString()).toContain('ExecStart=/opt/k8s/bin/v1.28.7/kube-controller-manager');
			expect(file(ip, '/opt/k8s/bin/kube-apiserver')?.link).toBe('v1.28.7/kube-apiserver');
			expect(file(ip, '/opt/k8s/bin/v1.28.6/kube-apiserver')?.content).toEqual(oldApiserver);
			expect(host.restarts).toBe(2);
			expect(host.unitRestarts.get('kube-scheduler')).toBe(2);
			// kube-nginx runs no release binary: its unit is unchanged, so it keeps running.
			expect(host.unitRestarts.get('kube-nginx')).toBe(1);
			// Every apiserver first, then every controller-manager and scheduler (see startPhases).
			expect(upgrade.state.snapshot.steps['install/start']!.hosts[`k8smaster0${index + 1}`]!.note).toMatch(/^restarted kube-apiserver; all ready/);
			expect(upgrade.state.snapshot.steps['install/start-controllers']!.hosts[`k8smaster0${index + 1}`]!.note).toMatch(/^restarted kube-controller-manager, kube-scheduler; all ready/);
		}

		// A running cluster: one master after the other.
		expect(cluster.restartOrder).toEqual(ips);
	});

	test('release folders before the previous one are removed once start succeeded on that master, never before', async () => {
		const {cluster, engine, release, applyReleases} = setup();
		await applyReleases('v1.28.5', 'v1.28.6');

		const folders = (ip: string) => [...cluster.hosts.get(ip)!.folders.keys()].sort();
		expect(folders(ips[0]!)).toEqual(['/opt/k8s/bin/v1.28.5', '/opt/k8s/bin/v1.28.6']);

		// v1.28.7's start fails on the first master: nothing is removed anywhere (the others wait their turn).
		release('v1.28.7');
		cluster.failRestart.add(ips[0]!);
		await expect((await engine()).apply({confirm: true})).rejects.toBeInstanceOf(ApplyFailed);
		for (const ip of ips) {
			expect(folders(ip)).toEqual(['/opt/k8s/bin/v1.28.5', '/opt/k8s/bin/v1.28.6', '/opt/k8s/bin/v1.28.7']);
		}

		cluster.failRestart.clear();
		await (await engine()).apply({confirm: true});
		for (const ip of ips) {
			// v1.28.6, the way back, is kept; v1.28.5's files, and its folder, are gone.
			expect(folders(ip)).toEqual(['/opt/k8s/bin/v1.28.6', '/opt/k8s/bin/v1.28.7']);
			expect([...cluster.hosts.get(ip)!.files.keys()].filter(file => file.startsWith('/opt/k8s/bin/v1.28.5/'))).toEqual([]);
			expect(cluster.hosts.get(ip)!.files.get('/opt/k8s/bin/v1.28.6/kube-apiserver')).toBeDefined();
		}

		// What was removed is forgotten: the state holds only what is on the masters.
		const recorded = (await engine()).state.snapshot;
		const recordedPaths = Object.values(recorded.steps).flatMap(step => Object.values(step!.hosts).flatMap(host => [...Object.keys(host.files ?? {}), ...Object.keys(host.stats ?? {})]));
		expect(recordedPaths.filter(file => file.startsWith('/opt/k8s/bin/v1.28.5/'))).toEqual([]);
		expect(recordedPaths.filter(file => file.startsWith('/opt/k8s/bin/v1.28.6/'))).not.toEqual([]);

		// Back to v1.28.6: the way back is there, nothing is sent, and v1.28.7 becomes the one kept.
		const binaryUploads = () => cluster.uploads().filter(call => call.args.at(-1)!.includes('/opt/k8s/bin/'));
		const sent = binaryUploads().length;
		release('v1.28.6');
		// A downgrade: refused as bad input unless asked for, before anything is touched.
		const calls = cluster.calls.length;
		await expect((await engine()).apply({confirm: true})).rejects.toMatchObject({field: 'version', value: 'v1.28.6'});
		expect(cluster.calls).toHaveLength(calls);
		await (await engine({allowDowngrade: true})).apply({confirm: true});
		expect(binaryUploads()).toHaveLength(sent);
		expect(cluster.hosts.get(ips[0]!)!.files.get('/opt/k8s/bin/kube-apiserver')?.link).toBe('v1.28.6/kube-apiserver');
		expect(folders(ips[0]!)).toEqual(['/opt/k8s/bin/v1.28.6', '/opt/k8s/bin/v1.28.7']);
	});

	test('the way back is the release that last started healthy, not the newest folder: a killed run\'s upload is removed, not kept', async () => {
		const {cluster, engine, release, applyReleases} = setup();
		await applyReleases('v1.28.5', 'v1.28.6');

		// v1.28.9's run is killed after its uploads, before its links: its folder is the newest on every master.
		release('v1.28.9');
		cluster.beforeCommand = spec => {
			if (spec.args.at(-1)!.includes('ln -sfn -- v1.28.9/')) {
				throw new Error('killed');
			}
		};

		await expect((await engine()).apply({confirm: true})).rejects.toThrow();
		cluster.beforeCommand = () => undefined;
		expect(cluster.hosts.get(ips[0]!)!.files.get('/opt/k8s/bin/v1.28.9/kube-apiserver')).toBeDefined();

		release('v1.28.7');
		await (await engine()).apply({confirm: true});
		for (const ip of ips) {
			expect([...cluster.hosts.get(ip)!.folders.keys()].sort()).toEqual(['/opt/k8s/bin/v1.28.6', '/opt/k8s/bin/v1.28.7']);
		}
	});

	test('a state from before the record of started releases removes nothing until a second release has started healthy', async () => {
		const {cluster, engine, release, applyReleases} = setup();
		await applyReleases('v1.28.5', 'v1.28.6');

		const folders = (ip: string) => [...cluster.hosts.get(ip)!.folders.keys()].sort();
		(await engine()).state.update(state => {
			delete state.startedReleases;
		});
		release('v1.28.7');
		await (await engine()).apply({confirm: true});
		expect(folders(ips[0]!)).toEqual(['/opt/k8s/bin/v1.28.5', '/opt/k8s/bin/v1.28.6', '/opt/k8s/bin/v1.28.7']);

		release('v1.28.8');
		await (await engine()).apply({confirm: true});
		expect(folders(ips[0]!)).toEqual(['/opt/k8s/bin/v1.28.7', '/opt/k8s/bin/v1.28.8']);
	});

	test('a release folder left 0700 (a run killed before its chmod) makes the binaries step not done; apply makes it 0755', async () => {
		const {cluster, engine} = setup();
		await (await engine()).apply({confirm: true});
		cluster.hosts.get(ips[0]!)!.folders.set('/opt/k8s/bin/v1.28.7', {mode: 0o700, owner: 'root'});
		await (await engine()).apply({confirm: true});
		expect(cluster.hosts.get(ips[0]!)!.folders.get('/opt/k8s/bin/v1.28.7')).toEqual({mode: 0o755, owner: 'root'});
	});

	test('an install of the old layout (regular files in binDir) moves over without asking: copied on the master, nothing sent', async () => {
		const {cluster, engine, file, toOldLayout} = setup();
		const first = await engine();
		await first.apply({confirm: true});
		// What an earlier version of this tool left: binDir/NAME regular files, units naming them, and its records.
		first.state.update(state => {
			for (const [index, ip] of ips.entries()) {
				const host = `k8smaster0${index + 1}`;
				const files = toOldLayout(ip);

				state.steps['install/binaries']!.hosts[host] = {status: 'done', at: new Date().toISOString(), inputs: '', files};
				for (const unit of ['kube-apiserver', 'kube-controller-manager', 'kube-scheduler']) {
					const unitFile = cluster.hosts.get(ip)!.files.get(`/etc/systemd/system/${unit}.service`)!;
					unitFile.content = Buffer.from(unitFile.content.toString().replace('/opt/k8s/bin/v1.28.7/', '/opt/k8s/bin/'));
					state.steps['install/units']!.hosts[host]!.files![`/etc/systemd/system/${unit}.service`] = sha256(unitFile.content);
				}

				delete state.steps['install/units']!.hosts[host]!.stats;
				cluster.hosts.get(ip)!.folders.clear();
			}
		});

		const uploads = cluster.uploads().length;
		const restarts = ips.map(ip => cluster.hosts.get(ip)!.restarts);
		await (await engine()).apply({confirm: true});
		// The units were written again (3 per master), no binary was sent.
		expect(cluster.uploads().slice(uploads).filter(call => call.args.at(-1)!.includes('/opt/k8s/bin/'))).toEqual([]);
		for (const [index, ip] of ips.entries()) {
			expect(cluster.copies.filter(copy => copy.startsWith(`${ip} `)).sort()).toEqual(names.map(name => `${ip} /opt/k8s/bin/${name} -> /opt/k8s/bin/v1.28.7/${name}`));
			for (const name of names) {
				expect(file(ip, `/opt/k8s/bin/${name}`)?.link).toBe(`v1.28.7/${name}`);
				expect(file(ip, `/opt/k8s/bin/v1.28.7/${name}`)).toMatchObject({mode: 0o755, owner: 'root'});
			}

			expect(file(ip, '/etc/systemd/system/kube-apiserver.service')?.content.toString()).toContain('ExecStart=/opt/k8s/bin/v1.28.7/kube-apiserver');
			expect(cluster.hosts.get(ip)!.restarts).toBe(restarts[index]! + 1);
		}
	});

	test('an upgrade from the old layout keeps binDir/NAME (the file the loaded units run) until start ran the new release on that master', async () => {
		const {cluster, engine, file, release, toOldLayout} = setup();
		const first = await engine();
		await first.apply({confirm: true});
		first.state.update(state => {
			for (const [index, ip] of ips.entries()) {
				const host = `k8smaster0${index + 1}`;
				state.steps['install/binaries']!.hosts[host] = {status: 'done', at: new Date().toISOString(), inputs: '', files: toOldLayout(ip)};
				for (const unit of ['kube-apiserver', 'kube-controller-manager', 'kube-scheduler']) {
					const unitFile = cluster.hosts.get(ip)!.files.get(`/etc/systemd/system/${unit}.service`)!;
					unitFile.content = Buffer.from(unitFile.content.toString().replace('/opt/k8s/bin/v1.28.7/', '/opt/k8s/bin/'));
					state.steps['install/units']!.hosts[host]!.files![`/etc/systemd/system/${unit}.service`] = sha256(unitFile.content);
				}

				delete state.steps['install/units']!.hosts[host]!.stats;
			}
		});

		// At the first restart (the first master's apiserver), no master's binDir/kube-* names the new release yet.
		const atFirstRestart: Array<string | undefined> = [];
		cluster.beforeCommand = spec => {
			if (atFirstRestart.length === 0 && /systemctl restart kube-apiserver/.test(spec.args.at(-1) ?? '')) {
				atFirstRestart.push(...ips.map(ip => file(ip, '/opt/k8s/bin/kube-controller-manager')?.link));
			}
		};

		release('v1.28.9');
		await (await engine()).apply({confirm: true});
		expect(atFirstRestart).toEqual([undefined, undefined, undefined]);
		for (const ip of ips) {
			for (const name of names) {
				expect(file(ip, `/opt/k8s/bin/${name}`)?.link).toBe(`v1.28.9/${name}`);
			}
		}

		// The links are in place: the next apply has nothing to do on the binaries.
		const before = cluster.calls.length;
		await (await engine()).apply({confirm: true});
		expect(cluster.calls.slice(before).filter(call => call.args.at(-1)!.includes('ln -sfn'))).toEqual([]);
	});

	test('the old layout\'s copy on the master does not replace a file in the release folder this install did not write: it is asked about', async () => {
		const {cluster, engine, file, toOldLayout} = setup();
		const first = await engine();
		await first.apply({confirm: true});
		const theirs = {content: Buffer.from('#!/bin/sh\necho an apiserver of their own\n'), mode: 0o755, owner: 'root'};
		first.state.update(state => {
			for (const [index, ip] of ips.entries()) {
				const files = toOldLayout(ip);

				cluster.hosts.get(ip)!.files.set('/opt/k8s/bin/v1.28.7/kube-apiserver', theirs);
				state.steps['install/binaries']!.hosts[`k8smaster0${index + 1}`] = {status: 'done', at: new Date().toISOString(), inputs: '', files};
			}
		});

		await expect((await engine()).apply({confirm: true})).rejects.toThrow(/\/opt\/k8s\/bin\/v1\.28\.7\/kube-apiserver on k8smaster0\d differs from what this install wrote there/);
		for (const ip of ips) {
			expect(file(ip, '/opt/k8s/bin/v1.28.7/kube-apiserver')).toEqual(theirs);
		}
	});

	test('a file at binDir/NAME this install did not write is asked about, before anything is sent; overwriting keeps a backup', async () => {
		const {cluster, engine, file} = setup();
		const theirs = {content: Buffer.from('#!/bin/sh\necho a kubectl of their own\n'), mode: 0o755, owner: 'root'};
		cluster.hosts.get(ips[1]!)!.files.set('/opt/k8s/bin/kubectl', theirs);
		cluster.hosts.get(ips[2]!)!.files.set('/opt/k8s/bin/kubectl', {content: Buffer.from(''), mode: 0o777, owner: 'root', link: '../../../usr/local/bin/kubectl'});
		cluster.hosts.get(ips[2]!)!.files.set('/usr/local/bin/kubectl', theirs);
		// A link naming nothing (any more).
		cluster.hosts.get(ips[0]!)!.files.set('/opt/k8s/bin/kubectl', {content: Buffer.from(''), mode: 0o777, owner: 'root', link: 'kubectl-1.27/kubectl'});

		// Without --overwrite the question is refused: the run ends naming the file.
		await expect((await engine()).apply({confirm: true})).rejects.toThrow(/\/opt\/k8s\/bin\/kubectl on k8smaster0[123] differs from what this install wrote there/);
		// Asked first: nothing was sent to either, and theirs are as they were.
		expect(cluster.uploads(ips[1]).filter(call => call.args.at(-1)!.includes('/opt/k8s/bin/'))).toEqual([]);
		expect(file(ips[1]!, '/opt/k8s/bin/kubectl')).toEqual(theirs);
		expect(file(ips[2]!, '/opt/k8s/bin/kubectl')?.link).toBe('../../../usr/local/bin/kubectl');

		await (await engine({overwrite: true})).apply({confirm: true});
		expect(cluster.calls.filter(call => call.args.at(-1)!.includes('cp -P -p -- /opt/k8s/bin/kubectl /opt/k8s/bin/kubectl.k8smi-backup-'))).toHaveLength(3);
		// A link is backed up as the link it was, whether or not it names a file.
		const backup = (ip: string) => [...cluster.hosts.get(ip)!.files].find(([remotePath]) => remotePath.startsWith('/opt/k8s/bin/kubectl.k8smi-backup-'))?.[1];
		expect(backup(ips[0]!)?.link).toBe('kubectl-1.27/kubectl');
		expect(backup(ips[1]!)).toEqual(theirs);
		expect(backup(ips[2]!)?.link).toBe('../../../usr/local/bin/kubectl');
		expect(file(ips[0]!, '/opt/k8s/bin/kubectl')?.link).toBe('v1.28.7/kubectl');
		expect(file(ips[1]!, '/opt/k8s/bin/kubectl')?.link).toBe('v1.28.7/kubectl');
		expect(file(ips[2]!, '/opt/k8s/bin/kubectl')?.link).toBe('v1.28.7/kubectl');
	});

	test('reset removes the release folders and the links, and leaves binDir\'s other tools', async () => {
		const {cluster, engine, release} = setup();
		release('v1.28.6');
		await (await engine()).apply({confirm: true});
		release('v1.28.7');
		await (await engine()).apply({confirm: true});
		const etcdctl = {content: Buffer.from('etcdctl'), mode: 0o755, owner: 'root'};
		cluster.hosts.get(ips[0]!)!.files.set('/opt/k8s/bin/etcdctl', etcdctl);
		await (await engine()).reset({confirm: true});
		for (const ip of ips) {
			expect([...cluster.hosts.get(ip)!.files.keys()].filter(file => file.startsWith('/opt/k8s/bin/'))).toEqual(ip === ips[0] ? ['/opt/k8s/bin/etcdctl'] : []);
			expect([...cluster.hosts.get(ip)!.folders.keys()]).toEqual([]);
		}
	});
});

describe('the restart order is data', () => {
	test('an operation can restart every master\'s apiserver, then every controller-manager, then every scheduler', async () => {
		const {cluster, engine} = setup();
		const installed = await engine();
		await installed.apply({confirm: true});
		// As if nothing recorded what the services started with: each group restarts.
		installed.state.update(state => {
			for (const record of Object.values(state.steps['install/start']!.hosts)) {
				delete record.services;
			}
		});
		const before = cluster.calls.length;
		const apiservers = {...startStep(uploadsStartReads, {id: 'start-apiservers', order: [['kube-apiserver']]}), order: 'rolling' as const};
		const controllerManagers = {...startStep(uploadsStartReads, {id: 'start-controller-managers', order: [['kube-controller-manager']]}), order: 'rolling' as const, needs: ['start-apiservers']};
		const schedulers = {...startStep(uploadsStartReads, {id: 'start-schedulers', order: [['kube-scheduler']]}), order: 'rolling' as const, needs: ['start-controller-managers']};
		const upgrade: Operation = {id: 'restart-in-turn', title: 'Restart in turn', noun: 'restart', command: 'apply', steps: [apiservers, controllerManagers, schedulers], mode: 'recorded', words: {question: () => 'Restart?', done: () => 'restarted'}};
		await (await engine()).run(upgrade, {confirm: true});

		const restarts = cluster.calls.slice(before).flatMap(call => {
			const restarted = /systemctl restart ([\w -]+)$/.exec(call.args.at(-1)!.replace(/'$/, ''));
			return restarted ? [`${call.host} ${restarted[1]}`] : [];
		});
		expect(restarts).toEqual([
			...masters.map(name => `${name} kube-apiserver`),
			...masters.map(name => `${name} kube-controller-manager`),
			...masters.map(name => `${name} kube-scheduler`),
		]);
		// Each master's kube-nginx kept running: no group of this operation names it.
		expect(ips.map(ip => cluster.hosts.get(ip)!.unitRestarts.get('kube-nginx'))).toEqual([1, 1, 1]);
	});
});
