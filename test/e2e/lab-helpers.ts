import {execFileSync, spawn} from 'node:child_process';
import {readFileSync} from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import {writeFileSync} from 'node:fs';
import {tempDir} from '../helpers/temp.js';
import type {LabInfo} from './global-setup.js';

const bin = path.resolve('bin/k8s-master-install.js');

export function labSsh(lab: LabInfo, host: string, script: string): string {
	return execFileSync('bash', [path.resolve('test/lab/lab.sh'), 'ssh', host, script], {encoding: 'utf8', env: {...process.env, LAB_DIR: lab.dir}, stdio: ['ignore', 'pipe', 'pipe']});
}

export function labCommand(lab: LabInfo, ...args: string[]): void {
	execFileSync('bash', [path.resolve('test/lab/lab.sh'), ...args], {stdio: 'inherit', env: {...process.env, LAB_DIR: lab.dir}});
}

/** A cluster config for the lab's masters: its CA imported (etcd trusts it), its ssh key and known_hosts. */
export function writeLabConfig(lab: LabInfo, version: string, extra: Record<string, unknown> = {}): {dir: string; configFile: string; stateDir: string} {
	const dir = tempDir('k8smi-e2e-');
	const config = {
		version,
		binaries: {tarball: lab.tarballs[version]},
		masters: lab.hosts,
		ssh: {user: lab.ssh.user, port: lab.ssh.port, identityFile: lab.ssh.identityFile, knownHostsFile: lab.ssh.knownHostsFile},
		etcd: {endpoints: lab.etcd.endpoints},
		network: {serviceCidr: '10.254.0.0/16', nodePortRange: '30000-32767'},
		paths: {k8sDir: '/data/k8s/k8s'},
		ca: lab.ca,
		timeouts: {commandSeconds: 60, readySeconds: 60},
		...extra,
	};
	const configFile = path.join(dir, 'cluster.yaml');
	writeFileSync(configFile, YAML.stringify(config));
	return {dir, configFile, stateDir: path.join(dir, 'state')};
}

export type CliRun = {code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string};

/** Runs the installed CLI as a new operator would; onLine may kill it at a chosen moment. */
export async function runCli(args: string[], onLine: (line: string, kill: () => void, pid: number) => void = () => undefined, env: NodeJS.ProcessEnv = process.env): Promise<CliRun> {
	return new Promise(resolve => {
		const child = spawn(process.execPath, [bin, ...args], {stdio: ['ignore', 'pipe', 'pipe'], env});
		let stdout = '';
		let stderr = '';
		let pending = '';
		const kill = () => child.kill('SIGKILL');
		child.stdout.setEncoding('utf8');
		child.stderr.setEncoding('utf8');
		child.stdout.on('data', (chunk: string) => {
			stdout += chunk;
			pending += chunk;
			const lines = pending.split('\n');
			pending = lines.pop() ?? '';
			for (const line of lines) {
				onLine(line, kill, child.pid!);
			}
		});
		child.stderr.on('data', (chunk: string) => {
			stderr += chunk;
		});
		child.on('close', (code, signal) => resolve({code, signal, stdout, stderr}));
	});
}

export const controlPlaneUnits = ['kube-apiserver', 'kube-nginx', 'kube-controller-manager', 'kube-scheduler'];

/** Everything an install put on a master, removed, so that the next test starts from an empty lab. */
export function resetMasters(lab: LabInfo): void {
	for (const host of lab.hosts) {
		labSsh(lab, host.name, `systemctl disable --now ${controlPlaneUnits.join(' ')} 2>/dev/null; ${controlPlaneUnits.map(unit => `rm -f /etc/systemd/system/${unit}.service;`).join(' ')} systemctl daemon-reload; systemctl reset-failed 2>/dev/null; rm -rf /etc/kubernetes /data/k8s/k8s /opt/k8s/kube-nginx; rm -rf /opt/k8s/bin/v[0-9]*; rm -f /opt/k8s/bin/kube-* /opt/k8s/bin/kubectl /opt/k8s/bin/kubeadm /opt/k8s/bin/kubelet /opt/k8s/bin/mounter /opt/k8s/bin/apiextensions-apiserver /opt/k8s/bin/cloud-controller-manager; true`);
	}

	// The RBAC binding and the apiservers' keys live in etcd: clear them too.
	etcdctl(lab, 'del', '/registry/', '--prefix');
}

/** etcdctl from this machine with the lab's client certificate; tried again while a healed link settles. */
export function etcdctl(lab: LabInfo, ...args: string[]): string {
	for (let attempt = 1; ; attempt++) {
		try {
			return execFileSync('etcdctl', [`--endpoints=${lab.etcd.endpoints.join(',')}`, `--cacert=${lab.etcd.caFile}`, `--cert=${lab.etcd.certFile}`, `--key=${lab.etcd.keyFile}`, ...args], {encoding: 'utf8', env: {...process.env, ETCDCTL_API: '3'}});
		} catch (error) {
			if (attempt >= 5) {
				throw error;
			}

			execFileSync('sleep', ['2']);
		}
	}
}

export function remoteFacts(lab: LabInfo, host: string, files: string[]): Map<string, {mode: string; owner: string; sha256: string}> {
	const out = labSsh(lab, host, files.map(file => `printf '%s %s ' "$(stat -c '%a %U:%G' ${file})" ${file}; sha256sum ${file} | cut -d' ' -f1`).join('; '));
	const facts = new Map<string, {mode: string; owner: string; sha256: string}>();
	for (const line of out.trim().split('\n')) {
		const [mode, owner, file, sha256] = line.split(' ');
		facts.set(file!, {mode: mode!, owner: owner!, sha256: sha256!});
	}

	return facts;
}

export function readState(stateDir: string): any {
	return JSON.parse(readFileSync(path.join(stateDir, 'kubernetes', 'state.json'), 'utf8'));
}

export type ProbeTally = {host: string; requests: number; failures: string[]};

const probeFiles = '/run/k8smi-probe';

/**
 * An availability probe on every master: an API read through that master's kube-nginx every 0.5 s
 * (with the controller-manager's certificate), as the components on it read. Bounded: it stops after
 * 10 minutes or when stopProbes asks. Its log stays on the master (the container's /run).
 */
export function startProbes(lab: LabInfo): void {
	const curl = 'curl -q --noproxy \'*\' -sS -o /dev/null -w \'%{http_code}\' --max-time 5 --cacert /etc/kubernetes/cert/ca.pem --cert /etc/kubernetes/cert/kube-controller-manager.pem --key /etc/kubernetes/cert/kube-controller-manager-key.pem https://127.0.0.1:8443/api/v1/namespaces/kube-system';
	const loop = `i=0; while [ $i -lt 1200 ] && [ ! -e ${probeFiles}.stop ]; do c=$(${curl} 2>>${probeFiles}.err); echo "$(date +%T.%N) $c" >> ${probeFiles}.log; i=$((i+1)); sleep 0.5; done; touch ${probeFiles}.done`;
	for (const host of lab.hosts) {
		labSsh(lab, host.name, `rm -f ${probeFiles}.*; setsid sh -c ${JSON.stringify(loop).replaceAll('$', '\\$')} </dev/null >/dev/null 2>&1 &`);
	}
}

/** Stops the probes, waits for their last request, and counts what did not answer 200. */
export function stopProbes(lab: LabInfo): ProbeTally[] {
	return lab.hosts.map(host => {
		const out = labSsh(lab, host.name, `touch ${probeFiles}.stop; for i in $(seq 50); do [ -e ${probeFiles}.done ] && break; sleep 0.2; done; cat ${probeFiles}.log; echo ==; cat ${probeFiles}.err 2>/dev/null; rm -f ${probeFiles}.*`);
		const [log = '', errors = ''] = out.split('\n==\n');
		const lines = log.trim().split('\n').filter(Boolean);
		const failures = lines.filter(line => !line.endsWith(' 200'));
		return {host: host.name, requests: lines.length, failures: [...failures, ...errors.trim().split('\n').filter(Boolean)]};
	});
}
