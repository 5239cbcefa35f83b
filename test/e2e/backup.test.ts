import {execFileSync, spawnSync} from 'node:child_process';
import {createHash} from 'node:crypto';
import {readFileSync, statSync} from 'node:fs';
import path from 'node:path';
import {afterEach, beforeEach, describe, expect, inject, test} from 'vitest';
import {labSsh, readState, resetMasters, runCli, writeLabConfig} from './lab-helpers.js';

const lab = inject('lab');

/** Where a README restore block runs: the values (the test sets the lab's), the copy, every master, every member, once. */
type RestoreStep = {where: 'values' | 'copy' | 'masters' | 'members' | 'once'; script: string};

/** The README's restore commands, block by block, as an operator reads them: each after its `<!-- restore-step: WHERE -->`. */
function readmeRestoreSteps(): RestoreStep[] {
	const readme = readFileSync(path.resolve('README.md'), 'utf8');
	return [...readme.matchAll(/<!-- restore-step: (\w+) -->\n```sh\n([\s\S]*?)\n```/g)].map(match => ({where: match[1] as RestoreStep['where'], script: match[2]!}));
}

/** The values block for one member of the lab (its etcd.service: test/lab/lab.sh). */
function labValues(host: {name: string; ip: string}): string {
	return [
		`NODE_NAME=${host.name} NODE_IP=${host.ip}`,
		`ETCD_NODES=${lab!.hosts.map(each => `${each.name}=https://${each.ip}:2380`).join(',')}`,
		'ETCD_TOKEN=k8smi-lab-etcd',
		'ETCD_DATA_DIR=/data/k8s/etcd/data ETCD_WAL_DIR=/data/k8s/etcd/wal',
		`ETCD_ENDPOINTS=${lab!.etcd.endpoints.join(',')}`,
	].join('\n');
}

describe.skipIf(!lab)('backup and restore on the lab', () => {
	beforeEach(() => resetMasters(lab!));
	// Whatever happened, etcd runs again and the restore leaves nothing behind for the next test.
	afterEach(() => {
		for (const host of lab!.hosts) {
			// A swap cut short gets the old folders back before anything is removed.
			labSsh(lab!, host.name, 'cd /data/k8s/etcd && for d in data wal; do if [ ! -d $d ] && [ -d $d.before-restore ]; then mv $d.before-restore $d; fi; done; rm -rf /root/etcd-snapshot.db data.before-restore wal.before-restore data.restored wal.restored /var/tmp/k8smi-snapshot-*; systemctl start --no-block etcd; true');
		}
	});

	test('an object deleted after a backup is back once etcd is restored by the README\'s commands; one made after it is gone', async () => {
		const {configFile, stateDir} = writeLabConfig(lab!, 'v1.28.7');
		const install = await runCli(['apply', '--config', configFile, '--state-dir', stateDir, '--yes']);
		expect(install.code, install.stdout + install.stderr).toBe(0);
		// A first install takes no snapshot.
		expect(install.stdout).toContain('no snapshot: first install');

		// Debian's real kubectl (test/lab/README.md) with the admin kubeconfig, as an operator runs it.
		const kubectlPath = execFileSync('bash', [path.resolve('test/lab/lab.sh'), 'kubectl-path'], {encoding: 'utf8', env: {...process.env, LAB_DIR: lab!.dir}}).trim();
		const kubeconfig = path.join(stateDir, 'kubernetes', 'rendered', 'admin.kubeconfig');
		const kubectl = (...args: string[]) => spawnSync(kubectlPath, ['--kubeconfig', kubeconfig, '--request-timeout=10s', ...args], {encoding: 'utf8'});
		const created = kubectl('create', 'configmap', 'k8smi-backup', '-n', 'default', '--from-literal=check=before-backup');
		expect(created.status, created.stderr).toBe(0);

		const backup = await runCli(['backup', '--config', configFile, '--state-dir', stateDir]);
		expect(backup.code, backup.stdout + backup.stderr).toBe(0);
		const [snapshot, ...others] = readState(stateDir).snapshots as Array<{path: string; sha256: string; revision: number; keys: number; bytes: number; master: string}>;
		expect(others).toEqual([]);
		expect(snapshot!.path).toMatch(new RegExp(`^${stateDir}/kubernetes/snapshots/kubernetes-\\d{8}T\\d{6}Z\\.db$`));
		expect(statSync(snapshot!.path).mode & 0o777).toBe(0o600);
		expect(createHash('sha256').update(readFileSync(snapshot!.path)).digest('hex')).toBe(snapshot!.sha256);
		expect(snapshot!.bytes).toBe(statSync(snapshot!.path).size);
		expect(snapshot!.keys).toBeGreaterThan(0);
		expect(backup.stdout).toContain(snapshot!.path);
		// Nothing of it left on any master; its content in no log.
		for (const host of lab!.hosts) {
			expect(labSsh(lab!, host.name, 'ls -d /var/tmp/k8smi-snapshot-* 2>/dev/null; true').trim(), host.name).toBe('');
		}

		const status = await runCli(['status', '--config', configFile, '--state-dir', stateDir]);
		expect(status.stdout).toContain(`revision ${snapshot!.revision}`);
		expect(status.stdout).toContain(snapshot!.path);

		expect(kubectl('delete', 'configmap', 'k8smi-backup', '-n', 'default').status).toBe(0);
		expect(kubectl('create', 'configmap', 'k8smi-after-backup', '-n', 'default', '--from-literal=check=after').status).toBe(0);
		expect(kubectl('get', 'configmap', 'k8smi-backup', '-n', 'default').status).not.toBe(0);

		// The README's commands, block by block, on the lab's hosts (each is a master and an etcd member).
		const steps = readmeRestoreSteps();
		expect(steps.map(step => step.where)).toEqual(['values', 'copy', 'masters', 'members', 'members', 'members', 'once', 'masters']);
		for (const {where, script} of steps) {
			switch (where) {
				case 'values': {
					// The tutorial's values; the lab's come from labValues.
					expect(script).toContain('ETCD_TOKEN=');
					break;
				}

				case 'copy': {
					expect(script).toMatch(/^scp -p \S+ root@\S+:\/root\/etcd-snapshot\.db$/);
					for (const host of lab!.hosts) {
						execFileSync('bash', [path.resolve('test/lab/lab.sh'), 'scp', '-p', snapshot!.path, `${host.name}:/root/etcd-snapshot.db`], {env: {...process.env, LAB_DIR: lab!.dir}});
						expect(labSsh(lab!, host.name, 'stat -c %a /root/etcd-snapshot.db').trim()).toBe('600');
					}

					break;
				}

				case 'masters':
				case 'members': {
					for (const host of lab!.hosts) {
						const block = `set -e\n${labValues(host)}\n${script}`;
						try {
							labSsh(lab!, host.name, block);
						} catch (error) {
							// systemd in the lab's containers cannot kill a stopped unit's cgroup ("Failed to kill control group:
							// Input/output error"), and the first start after it can fail with 219/CGROUP; a second start works.
							// Lab-only: any other failure, or a second one, fails the test.
							// Each unit's own last lines: a restored etcd's many lines would push another unit's 219 out of a shared tail.
							const journals = ['kube-apiserver', 'kube-controller-manager', 'kube-scheduler', 'etcd']
								.map(unit => labSsh(lab!, host.name, `journalctl -u ${unit} -n 20 --no-pager -o cat || true`))
								.join('\n');
							if (!journals.includes('status=219/CGROUP')) {
								throw new Error(`${host.name}: ${(error as Error).message}\n${journals}`);
							}

							labSsh(lab!, host.name, block);
						}
					}

					break;
				}

				case 'once': {
					const host = lab!.hosts[0]!;
					// etcdctl 3.4 prints endpoint health on stderr.
					const out = labSsh(lab!, host.name, `${labValues(host)}\n{\n${script}\n} 2>&1`);
					// The loop asks until every member is healthy: its last answer (after any unhealthy one) names each member healthy.
					expect(out.split('Error: unhealthy cluster').at(-1)!.match(/is healthy/g), out).toHaveLength(lab!.hosts.length);
					break;
				}
			}
		}

		// The restored members hold the snapshot's revision (or later: the apiservers write again).
		const revision = Number(/"revision":(\d+)/.exec(labSsh(lab!, lab!.hosts[0]!.name, `ETCDCTL_API=3 etcdctl --endpoints=https://${lab!.hosts[0]!.ip}:2379 --cacert=/etc/kubernetes/cert/ca.pem --cert=/etc/kubernetes/cert/kubernetes.pem --key=/etc/kubernetes/cert/kubernetes-key.pem endpoint status -w json`))?.[1]);
		expect(revision).toBeGreaterThanOrEqual(snapshot!.revision);

		// The apiservers serve again: the object deleted after the backup is back, the one made after it is gone.
		let back = kubectl('get', 'configmap', 'k8smi-backup', '-n', 'default', '-o', 'jsonpath={.data.check}');
		for (let attempt = 0; attempt < 30 && back.status !== 0; attempt++) {
			execFileSync('sleep', ['2']);
			back = kubectl('get', 'configmap', 'k8smi-backup', '-n', 'default', '-o', 'jsonpath={.data.check}');
		}

		expect(back.status, back.stderr).toBe(0);
		expect(back.stdout).toBe('before-backup');
		expect(kubectl('get', 'configmap', 'k8smi-after-backup', '-n', 'default').status).not.toBe(0);

		// The last master's apiserver started a moment ago: verify once it had the seconds the README allows it.
		let verify = await runCli(['verify', '--config', configFile, '--state-dir', stateDir]);
		for (let attempt = 0; attempt < 10 && verify.code !== 0; attempt++) {
			execFileSync('sleep', ['3']);
			verify = await runCli(['verify', '--config', configFile, '--state-dir', stateDir]);
		}

		expect(verify.code, verify.stdout + verify.stderr).toBe(0);
	});

	test('reset takes a snapshot first; one that fails stops reset with the masters untouched', async () => {
		const {configFile, stateDir} = writeLabConfig(lab!, 'v1.28.7');
		expect((await runCli(['apply', '--config', configFile, '--state-dir', stateDir, '--yes'])).code).toBe(0);

		// etcd stopped on every member: no snapshot, so reset changes nothing and says how to go on.
		for (const host of lab!.hosts) {
			labSsh(lab!, host.name, 'systemctl stop etcd');
		}

		const refused = await runCli(['reset', '--config', configFile, '--state-dir', stateDir, '--yes']);
		expect(refused.code).toBe(1);
		expect(refused.stderr).toMatch(/snapshot failed on .*Nothing was changed on the masters\. Fix: .*--no-backup/);
		for (const host of lab!.hosts) {
			// Nothing stopped, disabled or removed.
			expect(labSsh(lab!, host.name, 'systemctl is-enabled kube-apiserver kube-nginx kube-controller-manager kube-scheduler || true').trim().split('\n'), host.name).toEqual(['enabled', 'enabled', 'enabled', 'enabled']);
			expect(labSsh(lab!, host.name, 'systemctl is-active kube-nginx || true').trim(), host.name).toBe('active');
			labSsh(lab!, host.name, 'systemctl start --no-block etcd');
		}

		for (let attempt = 0; attempt < 30; attempt++) {
			if (labSsh(lab!, lab!.hosts[0]!.name, `ETCDCTL_API=3 etcdctl --endpoints=${lab!.etcd.endpoints.join(',')} --cacert=/etc/kubernetes/cert/ca.pem --cert=/etc/kubernetes/cert/kubernetes.pem --key=/etc/kubernetes/cert/kubernetes-key.pem endpoint health 2>&1; true`).match(/is healthy/g)?.length === lab!.hosts.length) {
				break;
			}

			execFileSync('sleep', ['2']);
		}

		const reset = await runCli(['reset', '--config', configFile, '--state-dir', stateDir, '--yes']);
		expect(reset.code, reset.stdout + reset.stderr).toBe(0);
		expect(reset.stdout).toMatch(/snapshot before reset: \S+\.db/);
		expect(readState(stateDir).snapshots).toEqual([expect.objectContaining({occasion: 'before reset'})]);
	});
});
