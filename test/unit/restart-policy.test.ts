import {spawnSync} from 'node:child_process';
import {readFileSync, writeFileSync} from 'node:fs';
import path from 'node:path';
import {describe, expect, test} from 'vitest';
import {restartPolicy, type ServiceFacts} from '../../source/steps/restart-policy.js';
import {restartScript} from '../../source/steps/services.js';
import {tempDir} from '../helpers/temp.js';

const running = {active: 'active', needsReload: 'no'};
const steady = (name: ServiceFacts['name'], change: Partial<ServiceFacts> = {}): ServiceFacts => ({name, inputs: 'f1', recorded: 'f1', written: [], unit: running, ...change});
const all = (change: Partial<Record<ServiceFacts['name'], Partial<ServiceFacts>>> = {}) => (['kube-apiserver', 'kube-nginx', 'kube-controller-manager', 'kube-scheduler'] as const).map(name => steady(name, change[name]));

describe('restart policy', () => {
	test('nothing changed and every unit active: nothing restarts', () => {
		expect(restartPolicy(all())).toEqual([]);
	});

	test('a service this install never started, or whose files changed since, restarts, saying why', () => {
		expect(restartPolicy(all({'kube-apiserver': {recorded: undefined}, 'kube-scheduler': {inputs: 'f2'}}))).toEqual([
			{name: 'kube-apiserver', action: 'restart', reason: 'not started by this install'},
			{name: 'kube-scheduler', action: 'restart', reason: 'a file it reads changed'},
		]);
	});

	test('a file written in this run restarts its readers even when the recorded fingerprint matches (put back with --overwrite)', () => {
		expect(restartPolicy(all({'kube-controller-manager': {written: ['/etc/kubernetes/kube-controller-manager.kubeconfig']}}))).toEqual([
			{name: 'kube-controller-manager', action: 'restart', reason: 'a file it reads was written in this run'},
		]);
	});

	test('a unit that is not active, or that systemd holds an old copy of, restarts', () => {
		expect(restartPolicy(all({'kube-nginx': {unit: {active: 'failed', needsReload: 'no'}}, 'kube-scheduler': {unit: {active: 'active', needsReload: 'yes'}}}))).toEqual([
			{name: 'kube-nginx', action: 'restart', reason: 'it is failed'},
			{name: 'kube-scheduler', action: 'restart', reason: 'its unit changed on disk'},
		]);
		expect(restartPolicy([steady('kube-apiserver', {unit: undefined})])).toEqual([{name: 'kube-apiserver', action: 'restart', reason: 'it is unknown'}]);
	});

	test('kube-nginx whose config alone was written is reloaded, only while it runs from an unchanged unit', () => {
		const config = {inputs: 'f2', written: ['/opt/k8s/kube-nginx/conf/kube-nginx.conf']};
		expect(restartPolicy(all({'kube-nginx': config}))).toEqual([{name: 'kube-nginx', action: 'reload', reason: 'a file it reads changed'}]);
		expect(restartPolicy(all({'kube-nginx': {...config, unit: {active: 'inactive', needsReload: 'no'}}}))[0]).toMatchObject({action: 'restart'});
		expect(restartPolicy(all({'kube-nginx': {...config, unit: {active: 'active', needsReload: 'yes'}}}))[0]).toMatchObject({action: 'restart'});
		expect(restartPolicy(all({'kube-nginx': {...config, written: [...config.written, '/etc/systemd/system/kube-nginx.service']}}))[0]).toMatchObject({action: 'restart'});
		// Another service's config is never reloaded.
		expect(restartPolicy(all({'kube-scheduler': config}))[0]).toMatchObject({action: 'restart'});
	});
});

describe('the restart script, run by sh against a systemctl that answers as told', () => {
	// systemctl on PATH: logs its arguments, answers show with SHOW, fails enable when told.
	const run = (show: string, failEnable = false) => {
		const bin = tempDir('k8smi-systemctl-');
		writeFileSync(path.join(bin, 'systemctl'), `#!/bin/sh\necho "$*" >> ${bin}/calls\ncase "$1" in show) printf '%s\\n' "$SHOW";; enable) ${failEnable ? 'exit 1' : 'true'};; esac\n`, {mode: 0o755});
		const result = spawnSync('sh', ['-c', restartScript(['kube-apiserver', 'kube-nginx'], ['kube-apiserver', 'kube-nginx'])], {env: {PATH: `${bin}:/usr/bin:/bin`, SHOW: show}, encoding: 'utf8'});
		return {status: result.status, calls: readFileSync(path.join(bin, 'calls'), 'utf8').trim().split('\n').map(line => line.split(' ')[0])};
	};

	const loaded = (reload: string) => `LoadState=loaded\nNeedDaemonReload=${reload}\n\nLoadState=loaded\nNeedDaemonReload=no`;

	test('units systemd holds as they are on disk, or has not loaded yet: no daemon-reload', () => {
		expect(run(loaded('no'))).toEqual({status: 0, calls: ['enable', 'show', 'restart']});
	});

	test('a unit changed on disk, or given up on before its file was there: one daemon-reload before the restart', () => {
		expect(run(loaded('yes'))).toEqual({status: 0, calls: ['enable', 'show', 'daemon-reload', 'restart']});
		expect(run('LoadState=not-found\nNeedDaemonReload=no\n\nLoadState=loaded\nNeedDaemonReload=no')).toEqual({status: 0, calls: ['enable', 'show', 'daemon-reload', 'restart']});
	});

	test('enable failing restarts nothing', () => {
		expect(run(loaded('yes'), true)).toEqual({status: 1, calls: ['enable']});
	});
});
