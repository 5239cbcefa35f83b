import {execFileSync} from 'node:child_process';
import {chmodSync, mkdirSync, writeFileSync} from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import {tempDir} from './temp.js';

export const binaryNames = ['apiextensions-apiserver', 'cloud-controller-manager', 'kube-apiserver', 'kube-controller-manager', 'kube-proxy', 'kube-scheduler', 'kubeadm', 'kubectl', 'kubelet', 'mounter'];

/**
 * A stand-in for a release binary that is never run: a 64-byte ELF header (x86-64 unless another
 * machine is given: 183 aarch64) followed by a text that tells the binaries apart.
 */
export function elfExecutable(text: string, machine = 62): Buffer {
	const header = Buffer.alloc(64);
	header.write('\u007FELF', 0, 'latin1');
	header[4] = 2;
	header[5] = 1;
	header[6] = 1;
	header.writeUInt16LE(2, 16);
	header.writeUInt16LE(machine, 18);
	return Buffer.concat([header, Buffer.from(text)]);
}

/** A temporary folder holding a small tarball with the release's layout, for tests that never start it. */
export function makeFixture(version = 'v1.28.7', names = binaryNames): {dir: string; tarball: string; stateDir: string} {
	const dir = tempDir('k8smi-test-');
	const bin = path.join(dir, 'src', 'kubernetes', 'server', 'bin');
	mkdirSync(bin, {recursive: true});
	for (const name of names) {
		writeFileSync(path.join(bin, name), elfExecutable(`${name} ${version}\n`));
		chmodSync(path.join(bin, name), 0o755);
	}

	writeFileSync(path.join(bin, 'kube-apiserver.docker_tag'), `${version}\n`);
	const tarball = path.join(dir, 'kubernetes-server-linux-amd64.tar.gz');
	execFileSync('tar', ['-czf', tarball, '-C', path.join(dir, 'src'), 'kubernetes']);
	return {dir, tarball, stateDir: path.join(dir, 'state')};
}

export function baseConfig(tarball: string, version = 'v1.28.7'): Record<string, any> {
	return {
		version,
		// Pinned: auto would follow this machine's networks (the lab's bridge may be up).
		binaries: {tarball, transfer: 'compressed'},
		masters: [
			{name: 'k8smaster01', ip: '172.24.8.71'},
			{name: 'k8smaster02', ip: '172.24.8.72'},
			{name: 'k8smaster03', ip: '172.24.8.73'},
		],
		ssh: {user: 'root', port: 22},
		etcd: {endpoints: ['https://172.24.8.71:2379', 'https://172.24.8.72:2379', 'https://172.24.8.73:2379']},
		network: {serviceCidr: '10.254.0.0/16', nodePortRange: '30000-32767'},
		paths: {k8sDir: '/data/k8s/k8s'},
	};
}

export function writeConfig(dir: string, config: unknown, name = 'cluster.yaml'): string {
	const file = path.join(dir, name);
	writeFileSync(file, typeof config === 'string' ? config : YAML.stringify(config));
	return file;
}
