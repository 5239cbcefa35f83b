import {execFileSync, spawnSync} from 'node:child_process';
import path from 'node:path';
import {beforeEach, describe, expect, inject, test} from 'vitest';
import {labSsh, resetMasters, runCli, writeLabConfig} from './lab-helpers.js';

const lab = inject('lab');

describe.skipIf(!lab)('kubectl with the admin kubeconfig on the lab', () => {
	beforeEach(() => resetMasters(lab!));

	test('with the first master\'s apiserver stopped, kubectl reaches the cluster through another master\'s context', async () => {
		const {configFile, stateDir} = writeLabConfig(lab!, 'v1.28.7');
		const run = await runCli(['apply', '--config', configFile, '--state-dir', stateDir, '--yes']);
		expect(run.code, run.stdout + run.stderr).toBe(0);
		const kubeconfig = path.join(stateDir, 'kubernetes', 'rendered', 'admin.kubeconfig');
		// Said where the file is written.
		expect(run.stdout).toContain(`kubectl: ${kubeconfig} has one context per master (k8smaster01, k8smaster02, k8smaster03), k8smaster01 current; while k8smaster01 is down: kubectl --kubeconfig ${kubeconfig} --context k8smaster02.`);

		// Debian's real kubectl (test/lab/README.md), as an operator runs it.
		const kubectlPath = execFileSync('bash', [path.resolve('test/lab/lab.sh'), 'kubectl-path'], {encoding: 'utf8', env: {...process.env, LAB_DIR: lab!.dir}}).trim();
		const kubectl = (...args: string[]) => spawnSync(kubectlPath, ['--kubeconfig', kubeconfig, '--request-timeout=10s', ...args], {encoding: 'utf8'});
		expect(kubectl('config', 'current-context').stdout.trim()).toBe('k8smaster01');
		for (const host of lab!.hosts) {
			expect(kubectl('--context', host.name, 'get', '--raw', '/readyz').stdout.trim(), host.name).toBe('ok');
		}

		labSsh(lab!, 'k8smaster01', 'systemctl stop kube-apiserver');
		const current = kubectl('get', '--raw', '/readyz');
		expect(current.status).not.toBe(0);
		expect(current.stderr).toMatch(/172\.24\.8\.71:6443.*(connection refused|was refused)/);

		// Written through one surviving master, read through the other: the cluster kept serving.
		const created = kubectl('--context', 'k8smaster02', 'create', 'secret', 'generic', 'k8smi-failover', '--from-literal=check=ok', '-n', 'default');
		expect(created.status, created.stderr).toBe(0);
		const read = kubectl('--context', 'k8smaster03', 'get', 'secret', 'k8smi-failover', '-n', 'default', '-o', 'name');
		expect(read.stdout.trim(), read.stderr).toBe('secret/k8smi-failover');
		const deleted = kubectl('--context', 'k8smaster03', 'delete', 'secret', 'k8smi-failover', '-n', 'default');
		expect(deleted.status, deleted.stderr).toBe(0);
	});
});
