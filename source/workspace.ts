import {mkdirSync, rmSync, writeFileSync} from 'node:fs';
import path from 'node:path';
import {InputError} from './errors.js';
import {readLocalTextSync} from './safe-read.js';

/**
 * The local folder of one cluster's install: its key material (0600), the state file, the logs
 * and the unpacked binaries. Secrets live here as files; the state holds only their paths and
 * hashes. Nothing is created until something is written, so plan leaves no trace.
 */
export class Workspace {
	readonly root: string;

	constructor(stateDir: string, clusterName: string) {
		this.root = path.join(path.resolve(stateDir), clusterName);
	}

	pki(file: string): string {
		return path.join(this.root, 'pki', file);
	}

	get logsDir(): string {
		return path.join(this.root, 'logs');
	}

	/** Where unpacked releases live, one folder per version. */
	get releasesDir(): string {
		return path.join(this.root, 'binaries');
	}

	binariesDir(version: string): string {
		return path.join(this.releasesDir, version);
	}

	get renderedDir(): string {
		return path.join(this.root, 'rendered');
	}

	/**
	 * Holds the install's folder for one run. Two runs at once (a CLI apply beside the UI, a CI
	 * retry) could each make key material and replace the other's; the second is refused instead.
	 * A lock left by a killed run is taken over once its process is gone.
	 */
	lock(): () => void {
		mkdirSync(this.root, {recursive: true, mode: 0o700});
		const file = path.join(this.root, 'lock');
		for (;;) {
			try {
				writeFileSync(file, `${process.pid}\n`, {flag: 'wx', mode: 0o600});
				locksHeld.add(file);
				return () => {
					locksHeld.delete(file);
					rmSync(file, {force: true});
				};
			} catch (error) {
				if ((error as NodeJS.ErrnoException).code !== 'EEXIST') {
					throw error;
				}
			}

			const holder = Number(readLocalTextSync(file, {field: '--state-dir', kind: 'marker', fix: `remove ${file} once no other run of k8s-master-install uses this folder`}).trim());
			const heldByThisProcess = holder === process.pid && locksHeld.has(file);
			if (heldByThisProcess || (holder > 0 && holder !== process.pid && processIsAlive(holder))) {
				throw new InputError('--state-dir', this.root, `is in use by another run of k8s-master-install (pid ${holder})`, 'wait for that run to finish or stop it; two runs at once could replace key material');
			}

			rmSync(file, {force: true});
		}
	}
}

/** Lock files this process holds: a second engine in the same process is refused too. */
const locksHeld = new Set<string>();

export function processIsAlive(pid: number): boolean {
	try {
		process.kill(pid, 0);
		return true;
	} catch (error) {
		return (error as NodeJS.ErrnoException).code === 'EPERM';
	}
}
