import {expect, test} from 'vitest';
import {lineReporter} from '../../source/reporters/line.js';

test('the line reporter names the step on a line that belongs to another step than the last heading (steps side by side)', () => {
	const lines: string[] = [];
	const report = lineReporter(line => lines.push(line));
	report({type: 'step-start', step: 'binaries', title: 'Copy the server binaries', hosts: ['k8smaster01']});
	report({type: 'step-start', step: 'certs', title: 'Place certificates and keys', hosts: ['k8smaster01']});
	report({type: 'host-done', step: 'certs', host: 'k8smaster01', outcome: 'done', detail: '12 written, 0 already in place', durationMs: 80});
	report({type: 'step-done', step: 'certs', outcome: 'done', durationMs: 90});
	report({type: 'host-progress', step: 'binaries', host: 'k8smaster01', bytes: 30, total: 100});
	report({type: 'host-done', step: 'binaries', host: 'k8smaster01', outcome: 'failed', durationMs: 900, failure: {step: 'binaries', host: 'k8smaster01', message: 'exit 255', command: 'ssh', output: ''}});
	report({type: 'step-start', step: 'start', title: 'Start the control plane and wait until ready', hosts: ['k8smaster01']});
	report({type: 'host-done', step: 'start', host: 'k8smaster01', outcome: 'done', durationMs: 3000});
	expect(lines).toEqual([
		'== Copy the server binaries [binaries]',
		'== Place certificates and keys [certs]',
		'   ✔ k8smaster01 done in 80 ms: 12 written, 0 already in place',
		'   k8smaster01 [binaries]: 30 B of 100 B (25%)',
		'   ✘ k8smaster01 [binaries] failed in 900 ms',
		'     exit 255',
		'     command: ssh',
		'== Start the control plane and wait until ready [start]',
		'   ✔ k8smaster01 done in 3.0 s',
	]);
});

test('the line reporter prints the checks of steps side by side (verify and its cluster checks) as one grid, once both finished', () => {
	const lines: string[] = [];
	const report = lineReporter(line => lines.push(line));
	report({type: 'step-start', step: 'verify', title: 'Verify the control plane', hosts: ['k8smaster01']});
	report({type: 'step-start', step: 'verify-cluster', title: 'Verify the cluster as a whole', hosts: ['cluster']});
	report({type: 'check', step: 'verify-cluster', host: 'cluster', check: 'secrets encrypted in etcd', level: 'pass', detail: 'raw value starts k8s:enc:aescbc:v1:key1:'});
	report({type: 'host-done', step: 'verify-cluster', host: 'cluster', outcome: 'done', detail: '1 checks passed', durationMs: 40});
	report({type: 'step-done', step: 'verify-cluster', outcome: 'done', durationMs: 40});
	report({type: 'check', step: 'verify', host: 'k8smaster01', check: 'CIS benchmark', level: 'pass', detail: '47 checks passed'});
	report({type: 'host-done', step: 'verify', host: 'k8smaster01', outcome: 'done', detail: '1 checks passed', durationMs: 90});
	report({type: 'step-done', step: 'verify', outcome: 'done', durationMs: 90});
	expect(lines).toEqual([
		'== Verify the control plane [verify]',
		'== Verify the cluster as a whole [verify-cluster]',
		'   ✔ cluster done in 40 ms: 1 checks passed',
		'   ✔ k8smaster01 [verify] done in 90 ms: 1 checks passed',
		expect.stringMatching(/^ {3}check +cluster +k8smaster01$/),
		expect.stringMatching(/^ {3}secrets encrypted in etcd +ok +-$/),
		expect.stringMatching(/^ {3}CIS benchmark +- +ok$/),
	]);
});

test('the line reporter says where the admin kubeconfig is and how kubectl reaches the cluster while a master is down', () => {
	const lines: string[] = [];
	const report = lineReporter(line => lines.push(line));
	const file = '/state/kubernetes/rendered/admin.kubeconfig';
	report({type: 'admin-kubeconfig', file, contexts: ['71', '72'].map((last, index) => ({context: `k8smaster0${index + 1}`, cluster: `kubernetes-k8smaster0${index + 1}`, server: `https://172.24.8.${last}:6443`}))});
	report({type: 'admin-kubeconfig', file, contexts: [{context: 'admin@kubernetes', cluster: 'kubernetes', server: 'https://172.24.8.70:6443'}], endpoint: '172.24.8.70:6443'});
	expect(lines).toEqual([
		`kubectl: ${file} has one context per master (k8smaster01, k8smaster02), k8smaster01 current; while k8smaster01 is down: kubectl --kubeconfig ${file} --context k8smaster02. controlPlaneEndpoint (a virtual IP or a load balancer) gives one address that survives any master`,
		`kubectl: ${file} reaches the apiservers through controlPlaneEndpoint 172.24.8.70:6443`,
	]);
});

