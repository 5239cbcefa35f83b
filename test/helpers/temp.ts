import {mkdtempSync, rmSync} from 'node:fs';
import {tmpdir} from 'node:os';
import path from 'node:path';

const made = new Set<string>();

/** A fresh folder in the temporary folder, removed after the test file (test/helpers/cleanup.ts): some hold keys. */
export function tempDir(prefix: string): string {
	const dir = mkdtempSync(path.join(tmpdir(), prefix));
	made.add(dir);
	return dir;
}

export function removeTempDirs(): void {
	for (const dir of made) {
		rmSync(dir, {recursive: true, force: true});
	}

	made.clear();
}
