import {execFileSync} from 'node:child_process';
import {readFileSync} from 'node:fs';
import path from 'node:path';
import type {TestProject} from 'vitest/node';

export type LabInfo = {
	dir: string;
	hosts: Array<{name: string; ip: string}>;
	/** The jump host of a lab brought up with LAB_BASTION=1 (test/lab/lab.sh). */
	bastion?: {name: string; ip: string};
	ssh: {user: string; port: number; identityFile: string; knownHostsFile: string};
	ca: {certFile: string; keyFile: string};
	etcd: {endpoints: string[]; caFile: string; certFile: string; keyFile: string};
	tarballs: Record<string, string>;
};

declare module 'vitest' {
	// eslint-disable-next-line @typescript-eslint/consistent-type-definitions
	export interface ProvidedContext {
		lab: LabInfo | undefined;
	}
}

const labScript = path.resolve('test/lab/lab.sh');
const labDir = process.env.LAB_DIR ?? '/run/k8smi-lab';

function lab(...args: string[]): void {
	execFileSync('bash', [labScript, ...args], {stdio: 'inherit', env: {...process.env, LAB_DIR: labDir}});
}

/** Brings the lab up once for the whole end-to-end run and always takes it down again. */
export default function setup(project: TestProject): (() => void) | undefined {
	if (process.getuid?.() !== 0) {
		console.warn('end-to-end tests need root (network namespaces, systemd-nspawn): skipped');
		project.provide('lab', undefined);
		return undefined;
	}

	const started = Date.now();
	lab('deps');
	lab('up');
	console.log(`lab up in ${((Date.now() - started) / 1000).toFixed(1)} s`);
	const info = JSON.parse(readFileSync(path.join(labDir, 'lab.json'), 'utf8')) as Omit<LabInfo, 'dir'>;
	project.provide('lab', {...info, dir: labDir});
	return () => {
		lab('down');
	};
}
