import {closeSync, constants, fstatSync, openSync, readSync, statSync, type Stats} from 'node:fs';
import {lstat, open, stat, type FileHandle} from 'node:fs/promises';
import {InputError} from './errors.js';

/**
 * Every local file this tool reads comes through here: the operator's (config, environment.sh,
 * tarball, CA, etcd and key files, templates) and the state folder's own. Only regular files are
 * read (a symbolic link the operator gave is followed to one), never more than their kind may
 * weigh, and never by a call that can wait on a writer: a device, pipe, socket or folder is
 * refused at once, naming the field, what the path is and the fix.
 */

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;

/** Far above any real file of the kind, far below what would take the memory or the minutes to read. */
const kinds = {
	config: {bytes: 4 * MiB, what: 'a cluster config'},
	'environment.sh': {bytes: 4 * MiB, what: 'an environment.sh'},
	template: {bytes: 1 * MiB, what: 'a template'},
	pem: {bytes: 1 * MiB, what: 'a PEM certificate or key'},
	ssh: {bytes: 1 * MiB, what: 'an ssh key or config file'},
	'encryption key': {bytes: 4 * KiB, what: 'an encryption key file'},
	state: {bytes: 64 * MiB, what: 'a state file'},
	marker: {bytes: 4 * KiB, what: 'a release tag or lock file'},
	tarball: {bytes: 4 * GiB, what: 'a server tarball'},
	binary: {bytes: 1 * GiB, what: 'a server binary'},
	'etcd snapshot': {bytes: 64 * GiB, what: 'an etcd snapshot'},
} as const;

export type FileKind = keyof typeof kinds;

/** What is read and what to tell the operator: the setting that names the file and how to put it right. */
export type LocalFile = {field: string; kind: FileKind; fix: string};

function size(bytes: number): string {
	return bytes >= MiB ? `${(bytes / MiB).toFixed(bytes % MiB === 0 ? 0 : 1)} MiB` : `${Math.ceil(bytes / KiB)} KiB`;
}

/** What a path is when it is not a regular file, in the operator's words. */
function nonRegular(stats: Stats): string | undefined {
	return stats.isFile() ? undefined
		: stats.isDirectory() ? 'a folder'
			: stats.isCharacterDevice() ? 'a character device'
				: stats.isBlockDevice() ? 'a block device'
					: stats.isFIFO() ? 'a named pipe (FIFO)'
						: stats.isSocket() ? 'a socket'
							: stats.isSymbolicLink() ? 'a symbolic link' : 'not a regular file';
}

function refusal(file: string, spec: LocalFile, problem: string): InputError {
	return new InputError(spec.field, file, problem, spec.fix);
}

function checkStats(file: string, spec: LocalFile, stats: Stats): void {
	const kind = nonRegular(stats);
	if (kind) {
		throw refusal(file, spec, `is ${kind}, not a regular file; only regular files are read`);
	}

	const limit = kinds[spec.kind];
	if (stats.size > limit.bytes) {
		throw refusal(file, spec, `is ${size(stats.size)}, more than ${limit.what} may be (${size(limit.bytes)})`);
	}
}

function unreadable(file: string, spec: LocalFile, error: unknown): InputError {
	const code = (error as NodeJS.ErrnoException).code;
	if (code === 'ENOENT') {
		return refusal(file, spec, 'does not exist');
	}

	// O_NOFOLLOW on a link: the caller asked for the file itself, never what it points to.
	return code === 'ELOOP' ? refusal(file, spec, 'is a symbolic link, not a regular file; only regular files are read') : refusal(file, spec, `cannot be read (${code ?? String(error)})`);
}

/** The whole file in one read when its size is known; /proc files say 0, and are read 64 KiB at a time. */
function chunkSize(stats: Stats, limit: number): number {
	return Math.min(limit + 1, Math.max(stats.size + 1, 64 * KiB));
}

// O_NONBLOCK: opening a FIFO (swapped in after the stat) returns at once instead of waiting for a writer.
const openFlags = (noFollow: boolean) => constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY | (noFollow ? constants.O_NOFOLLOW : 0);

/** Refuses a path that is not a regular file of an acceptable size, without opening it (config checks). */
export function checkLocalFile(file: string, spec: LocalFile): void {
	let stats;
	try {
		stats = statSync(file);
	} catch (error) {
		throw unreadable(file, spec, error);
	}

	checkStats(file, spec, stats);
}

/**
 * Opens a regular file for reading. The path is stat'ed first so that a device is refused without
 * being opened (opening one can have effects: a watchdog, a tape); the opened descriptor is what
 * is checked for good, so a file swapped in between is caught too. noFollow: the path itself must be
 * the regular file (members of an unpacked tarball), a link there is refused.
 */
export async function openLocalFile(file: string, spec: LocalFile, options: {noFollow?: boolean} = {}): Promise<{handle: FileHandle; stats: Stats}> {
	let handle: FileHandle;
	try {
		checkStats(file, spec, await (options.noFollow ? lstat(file) : stat(file)));
		handle = await open(file, openFlags(options.noFollow === true));
	} catch (error) {
		throw error instanceof InputError ? error : unreadable(file, spec, error);
	}

	try {
		const stats = await handle.stat();
		checkStats(file, spec, stats);
		return {handle, stats};
	} catch (error) {
		await handle.close();
		throw error;
	}
}

/** The whole file, read off the event loop; a file that grows past its limit while read (or under /proc) is refused. */
export async function readLocalFile(file: string, spec: LocalFile, options: {noFollow?: boolean} = {}): Promise<Buffer> {
	const {handle, stats} = await openLocalFile(file, spec, options);
	try {
		const limit = kinds[spec.kind].bytes;
		const buffer = Buffer.alloc(chunkSize(stats, limit));
		const chunks: Buffer[] = [];
		let total = 0;
		for (;;) {
			const {bytesRead} = await handle.read(buffer, 0, buffer.length, null);
			if (bytesRead === 0) {
				return Buffer.concat(chunks, total);
			}

			total += bytesRead;
			if (total > limit) {
				throw refusal(file, spec, `holds more than ${kinds[spec.kind].what} may (${size(limit)})`);
			}

			chunks.push(Buffer.from(buffer.subarray(0, bytesRead)));
		}
	} catch (error) {
		throw error instanceof InputError ? error : unreadable(file, spec, error);
	} finally {
		await handle.close();
	}
}

export async function readLocalText(file: string, spec: LocalFile): Promise<string> {
	return (await readLocalFile(file, spec)).toString('utf8');
}

/**
 * The same checks for the few readers that are synchronous by design (a template while rendering,
 * the state folder's lock and manifest, the guided setup's imports): bounded by the same limits,
 * and with O_NONBLOCK a read never waits on a writer.
 */
export function readLocalTextSync(file: string, spec: LocalFile): string {
	let descriptor: number;
	try {
		checkStats(file, spec, statSync(file));
		descriptor = openSync(file, openFlags(false));
	} catch (error) {
		throw error instanceof InputError ? error : unreadable(file, spec, error);
	}

	try {
		const stats = fstatSync(descriptor);
		checkStats(file, spec, stats);
		const limit = kinds[spec.kind].bytes;
		const buffer = Buffer.alloc(chunkSize(stats, limit));
		const chunks: Buffer[] = [];
		let total = 0;
		for (let bytesRead = readSync(descriptor, buffer, 0, buffer.length, null); bytesRead > 0; bytesRead = readSync(descriptor, buffer, 0, buffer.length, null)) {
			total += bytesRead;
			if (total > limit) {
				throw refusal(file, spec, `holds more than ${kinds[spec.kind].what} may (${size(limit)})`);
			}

			chunks.push(Buffer.from(buffer.subarray(0, bytesRead)));
		}

		return Buffer.concat(chunks, total).toString('utf8');
	} catch (error) {
		throw error instanceof InputError ? error : unreadable(file, spec, error);
	} finally {
		closeSync(descriptor);
	}
}
