import path from 'node:path';

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

	binariesDir(version: string): string {
		return path.join(this.root, 'binaries', version);
	}

	get renderedDir(): string {
		return path.join(this.root, 'rendered');
	}
}
