import {createHash, type Hash} from 'node:crypto';
import {createReadStream} from 'node:fs';
import {createGunzip} from 'node:zlib';

/** A member of a tar archive, as its header (and any GNU long-name or pax header before it) says. */
export type TarMember = {name: string; type: TarMemberType; size: number; linkName: string};

export type TarMemberType = 'file' | 'directory' | 'symbolic link' | 'hard link' | 'character device' | 'block device' | 'fifo' | 'other';

/** Where a member's bytes go, when the reader wants them; awaited, so a slow consumer slows the reading. */
export type TarSink = {write(chunk: Buffer): Promise<void> | void; end(): Promise<void> | void};

export class TarFormatError extends Error {}

const block = 512;
const types: Record<string, TarMemberType> = {'0': 'file', '\0': 'file', '7': 'file', '5': 'directory', '2': 'symbolic link', '1': 'hard link', '3': 'character device', '4': 'block device', '6': 'fifo'};

function text(header: Buffer, offset: number, length: number): string {
	const field = header.subarray(offset, offset + length);
	const end = field.indexOf(0);
	return field.subarray(0, end === -1 ? length : end).toString('utf8');
}

function octal(header: Buffer, offset: number, length: number): number {
	// GNU base-256 for values an octal field cannot hold.
	if ((header[offset]! & 0x80) !== 0) {
		return header.subarray(offset + 1, offset + length).reduce((value, byte) => (value * 256) + byte, 0);
	}

	const digits = text(header, offset, length).trim();
	return digits === '' ? 0 : Number.parseInt(digits, 8);
}

function checksumOk(header: Buffer): boolean {
	let sum = 0;
	for (let index = 0; index < block; index++) {
		sum += index >= 148 && index < 156 ? 0x20 : header[index]!;
	}

	return sum === octal(header, 148, 8);
}

/** pax records: "LEN key=value\n" one after another. */
function paxRecords(data: Buffer): Map<string, string> {
	const records = new Map<string, string>();
	let offset = 0;
	while (offset < data.length) {
		const space = data.indexOf(0x20, offset);
		const length = Number(data.subarray(offset, space).toString('ascii'));
		if (space === -1 || !Number.isInteger(length) || length <= 0) {
			throw new TarFormatError('a pax extended header is malformed');
		}

		const record = data.subarray(space + 1, offset + length - 1).toString('utf8');
		const equals = record.indexOf('=');
		records.set(record.slice(0, equals), record.slice(equals + 1));
		offset += length;
	}

	return records;
}

/**
 * Reads a .tar.gz once, front to back, without writing it out: every member's header is given to
 * `open`, and the bytes of those it returns a sink for are streamed there. Also hashes the compressed
 * file as it is read (its sha256 is returned). Headers are checked (checksum, size); GNU long names
 * and pax paths are followed, as GNU tar writes them.
 */
export async function readTarGz(file: string, open: (member: TarMember) => TarSink | undefined): Promise<{sha256: string}> {
	const fileHash: Hash = createHash('sha256');
	const input = createReadStream(file, {highWaterMark: 1 << 20});
	input.on('data', chunk => fileHash.update(chunk as Buffer));
	const gunzip = createGunzip({chunkSize: 1 << 20});
	input.on('error', error => gunzip.destroy(error));
	input.pipe(gunzip);

	let pending: Buffer = Buffer.alloc(0);
	let member: TarMember | undefined;
	let sink: TarSink | undefined;
	let remaining = 0;
	let padding = 0;
	let extension: {kind: 'long-name' | 'long-link' | 'pax'; data: Buffer[]; size: number} | undefined;
	let nextName: string | undefined;
	let nextLink: string | undefined;
	let nextSize: number | undefined;
	let ended = false;

	const startMember = async (header: Buffer): Promise<void> => {
		if (!checksumOk(header)) {
			throw new TarFormatError('a tar header has a wrong checksum (the archive is damaged or not a tar)');
		}

		const flag = String.fromCodePoint(header[156]!);
		const size = nextSize ?? octal(header, 124, 12);
		if (!Number.isSafeInteger(size) || size < 0) {
			throw new TarFormatError('a tar header gives an impossible size');
		}

		if (flag === 'L' || flag === 'K' || flag === 'x' || flag === 'g') {
			extension = {kind: flag === 'L' ? 'long-name' : flag === 'K' ? 'long-link' : 'pax', data: [], size};
			remaining = size;
			padding = (block - (size % block)) % block;
			if (flag === 'g') {
				extension = undefined; // global pax headers: nothing here depends on them
			} else if (size === 0) {
				finishExtension();
			}

			return;
		}

		const prefix = text(header, 345, 155);
		const name = nextName ?? (prefix ? `${prefix}/${text(header, 0, 100)}` : text(header, 0, 100));
		member = {name, type: types[flag] ?? 'other', size, linkName: nextLink ?? text(header, 157, 100)};
		nextName = undefined;
		nextLink = undefined;
		nextSize = undefined;
		sink = open(member);
		// Links, devices and folders have no bytes in the archive, whatever their size field says.
		remaining = member.type === 'file' || member.type === 'other' ? size : 0;
		padding = (block - (remaining % block)) % block;
		if (remaining === 0) {
			await sink?.end();
			sink = undefined;
		}
	};

	const finishExtension = (): void => {
		const data = Buffer.concat(extension!.data);
		if (extension!.kind === 'long-name') {
			nextName = text(data, 0, data.length);
		} else if (extension!.kind === 'long-link') {
			nextLink = text(data, 0, data.length);
		} else {
			const records = paxRecords(data);
			nextName = records.get('path') ?? nextName;
			nextLink = records.get('linkpath') ?? nextLink;
			nextSize = records.has('size') ? Number(records.get('size')) : nextSize;
		}

		extension = undefined;
	};

	try {
		for await (const chunk of gunzip as AsyncIterable<Buffer>) {
			pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
			while (!ended) {
				if (remaining > 0) {
					if (pending.length === 0) {
						break;
					}

					const take = pending.subarray(0, Math.min(remaining, pending.length));
					pending = pending.subarray(take.length);
					remaining -= take.length;
					if (extension) {
						extension.data.push(Buffer.from(take));
					} else {
						await sink?.write(take);
					}

					if (remaining === 0) {
						if (extension) {
							finishExtension();
						} else {
							await sink?.end();
							sink = undefined;
						}
					}

					continue;
				}

				if (padding > 0) {
					const skip = Math.min(padding, pending.length);
					pending = pending.subarray(skip);
					padding -= skip;
					if (padding > 0) {
						break;
					}

					continue;
				}

				if (pending.length < block) {
					break;
				}

				const header = pending.subarray(0, block);
				pending = pending.subarray(block);
				if (header.every(byte => byte === 0)) {
					ended = true; // the end-of-archive blocks; what follows is zero padding
					break;
				}

				await startMember(header);
			}
		}
	} finally {
		// A member refused midway ends the reading: the file is closed, not left to the collector.
		input.destroy();
		gunzip.destroy();
	}

	if (!ended && (remaining > 0 || member === undefined)) {
		throw new TarFormatError(member ? `the archive ends inside ${member.name}` : 'no tar member found');
	}

	return {sha256: fileHash.digest('hex')};
}
