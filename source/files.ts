import {createHash, randomBytes} from 'node:crypto';
import {chmodSync, linkSync, mkdirSync, renameSync, rmSync, writeFileSync} from 'node:fs';
import path from 'node:path';
import {openLocalFile, type LocalFile} from './safe-read.js';

export function sha256(data: string | Buffer): string {
	return createHash('sha256').update(data).digest('hex');
}

export async function sha256OfFile(file: string, spec: LocalFile): Promise<string> {
	const {handle} = await openLocalFile(file, spec);
	const hash = createHash('sha256');
	// Large chunks: fewer turns of an event loop that may be busy with key pairs meanwhile.
	for await (const chunk of handle.createReadStream({highWaterMark: 1024 * 1024})) {
		hash.update(chunk as Buffer);
	}

	return hash.digest('hex');
}

/** Writes through a temporary file and a rename, so a kill never leaves half a file; the mode is set before the content lands. */
export function writeFileAtomic(file: string, data: string | Buffer, mode: number): void {
	mkdirSync(path.dirname(file), {recursive: true, mode: 0o700});
	const temporary = `${file}.${randomBytes(4).toString('hex')}.tmp`;
	writeFileSync(temporary, data, {mode});
	chmodSync(temporary, mode);
	renameSync(temporary, file);
}

/**
 * Writes a file that must not exist yet, whole or not at all: a hard link, unlike a rename, fails
 * (EEXIST) rather than replace what is there.
 */
export function writeFileExclusive(file: string, data: string | Buffer, mode: number): void {
	mkdirSync(path.dirname(file), {recursive: true, mode: 0o700});
	const temporary = `${file}.${randomBytes(4).toString('hex')}.tmp`;
	try {
		writeFileSync(temporary, data, {mode});
		chmodSync(temporary, mode);
		linkSync(temporary, file);
	} finally {
		rmSync(temporary, {force: true});
	}
}
