import {once} from 'node:events';
import {createHash} from 'node:crypto';
import {createWriteStream, existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync} from 'node:fs';
import {networkInterfaces} from 'node:os';
import path from 'node:path';
import {PassThrough} from 'node:stream';
import {pipeline} from 'node:stream/promises';
import {createGzip, type ZlibOptions} from 'node:zlib';
import type {ResolvedConfig} from '../config/load.js';
import {InputError} from '../errors.js';
import {sha256OfFile, writeFileAtomic} from '../files.js';
import {openLocalFile, readLocalTextSync, type LocalFile} from '../safe-read.js';
import type {Runner} from '../runner.js';
import {processIsAlive, type Workspace} from '../workspace.js';
import {parseCidr} from '../config/network.js';
import {readTarGz, TarFormatError, type TarMemberType, type TarSink} from './tar-stream.js';
import type {BinaryFile} from './types.js';

/**
 * The binaries the masters run; the tutorial copies the release's others too (kubelet, kube-proxy,
 * kubeadm, ...), which a master only needs when it is also a node: those on request (binaries.include).
 */
const requiredBinaries = ['kube-apiserver', 'kube-controller-manager', 'kube-scheduler', 'kubectl'];

const binPrefix = 'kubernetes/server/bin/';
const maxBinaryBytes = 1024 ** 3;
const releaseFix = 'use the release\'s kubernetes-server-linux-amd64.tar.gz as published (its binaries are x86-64 executables, regular files), and check where this one came from';
const tagMember = `${binPrefix}kube-apiserver.docker_tag`;

/** tarballIdentity: device, inode, size, mtime and ctime (ns) of the tarball when it was hashed. */
type Manifest = {tarballSha256: string; tarballIdentity?: string; files: BinaryFile[]};

/** Undefined where times are whole seconds: a change of the same size within the second would look unchanged. */
function identityOf(file: string): string | undefined {
	const stats = statSync(file, {bigint: true});
	return stats.mtimeNs % 1_000_000_000n === 0n && stats.ctimeNs % 1_000_000_000n === 0n ? undefined : `${stats.dev}:${stats.ino}:${stats.size}:${stats.mtimeNs}:${stats.ctimeNs}`;
}

/** A network this machine is on, and the speed its interface reports (Mbit/s; undefined when it does not say). */
export type LocalLink = {name: string; cidr: string; mbits: number | undefined};

/** Linux tells an interface's speed in /sys (a veth or bridge says 10000, wifi says nothing); elsewhere it is unknown. */
export function localLinks(): LocalLink[] {
	const speed = (name: string) => {
		try {
			const mbits = Number(readLocalTextSync(`/sys/class/net/${name}/speed`, {field: 'network interface', kind: 'marker', fix: ''}).trim());
			return mbits > 0 ? mbits : undefined;
		} catch {
			return undefined;
		}
	};

	return Object.entries(networkInterfaces()).flatMap(([name, addresses]) => (addresses ?? [])
		.filter(address => !address.internal && address.family === 'IPv4' && address.cidr)
		.map(address => ({name, cidr: address.cidr!, mbits: speed(name)})));
}

/** Below this link speed the bytes cost more than a master's gunzip of them. */
const rawFromMbits = 10_000;

/**
 * How the binaries cross the wire. Compressed, a third of the bytes go (3 × 115 MB instead of
 * 3 × 322 MB at real size), the workstation spends about twice the time reading the tarball (it
 * compresses as it reads) and each master about a second of a core unpacking. On the lab (2 cores
 * shared by the workstation and the masters, a 10 Gbit/s bridge) the bytes as they are win: 7.1 s
 * against 11 s and more. On a 1 Gbit/s LAN the link decides: 966 MB take 8 s or more, 345 MB 3 s.
 * `auto`: as they are when every master is on a network of this machine whose interface reports at
 * least 10 Gbit/s and no bastion is in the way; else compressed.
 */
export function transferForm(config: ResolvedConfig, links: LocalLink[] = localLinks()): {compressed: boolean; reason: string} {
	if (config.binaries.transfer !== 'auto') {
		return {compressed: config.binaries.transfer === 'compressed', reason: `binaries.transfer: ${config.binaries.transfer}`};
	}

	if (config.bastion) {
		return {compressed: true, reason: `through the bastion ${config.bastion.host}: sent compressed`};
	}

	for (const master of config.masters) {
		const link = links.find(each => onNetwork(master.ip, each.cidr));
		if (!link) {
			return {compressed: true, reason: `${master.name} (${master.ip}) is not on a network of this machine: sent compressed`};
		}

		if (link.mbits === undefined || link.mbits < rawFromMbits) {
			return {compressed: true, reason: `${master.name} (${master.ip}) is reached through ${link.name} at ${link.mbits === undefined ? 'a speed it does not report' : `${link.mbits} Mbit/s`}: sent compressed (as they are from ${rawFromMbits / 1000} Gbit/s)`};
		}
	}

	return {compressed: false, reason: `every master is on a network of this machine of ${rawFromMbits / 1000} Gbit/s or more: sent as they are`};
}

function onNetwork(ip: string, cidr: string): boolean {
	const network = parseCidr(cidr);
	return network !== undefined && parseCidr(`${ip}/${network.prefix}`)?.network === network.network;
}

/** Every name must be in the tarball: the four the masters run and all of an include list. */
export function binaryNames(config: ResolvedConfig): string[] {
	return config.binaries.include ? [...new Set([...requiredBinaries, ...config.binaries.include])] : requiredBinaries;
}

function manifestPath(workspace: Workspace, config: ResolvedConfig): string {
	return path.join(workspace.binariesDir(config.version), 'manifest.json');
}

/** The binaries of an earlier run, if they are still intact; plan uses them without reading the tarball. */
export function unpackedBinaries(workspace: Workspace, config: ResolvedConfig): BinaryFile[] | undefined {
	const file = manifestPath(workspace, config);
	if (!existsSync(file)) {
		return undefined;
	}

	const manifest = readManifest(file);
	// Kept in the other form (binaries.transfer, or the network, changed): read from the tarball again.
	const {compressed} = transferForm(config);
	const complete = manifest.files.every(entry => (entry.gzipBytes !== undefined) === compressed && existsSync(entry.file) && statSync(entry.file).size === (entry.gzipBytes ?? entry.bytes))
		&& binaryNames(config).every(name => manifest.files.some(entry => entry.name === name));
	return complete ? manifest.files.filter(entry => binaryNames(config).includes(entry.name)) : undefined;
}

function readManifest(file: string): Manifest {
	return JSON.parse(readLocalTextSync(file, {field: '--state-dir', kind: 'state', fix: `remove ${path.dirname(file)}: the tarball is read again`})) as Manifest;
}

const elfMachines: Record<number, string> = {3: '386', 40: 'arm', 62: 'amd64', 183: 'arm64', 21: 'ppc64le', 22: 's390x', 243: 'riscv64'};

/**
 * Why a binary is not an x86-64 executable, from its first 20 bytes, or undefined when it is one: ELF
 * magic, 64-bit, little-endian, an executable or a position-independent one, machine x86-64 (62). A
 * script is refused: the masters run these files as the control plane.
 */
function notAnExecutable(header: Buffer, member: string, tarball: string): InputError | undefined {
	const refuse = (problem: string) => new InputError('binaries.tarball', tarball, `holds ${member}, which ${problem}`, releaseFix);
	if (header.length < 20 || header.subarray(0, 4).toString('latin1') !== '\u007FELF') {
		return refuse(header.subarray(0, 2).toString('latin1') === '#!' ? 'is a script (#!), not an ELF executable' : 'is not an ELF executable');
	}

	const bigEndian = header[5] === 2;
	const machine = bigEndian ? header.readUInt16BE(18) : header.readUInt16LE(18);
	if (machine !== 62) {
		const architecture = elfMachines[machine] ?? `machine ${machine}`;
		return new InputError('binaries.tarball', tarball, `holds ${architecture} binaries (${path.basename(member)} is built for ${architecture})`, 'use kubernetes-server-linux-amd64.tar.gz of the release: the masters must be x86_64 (preflight checks them)');
	}

	const type = bigEndian ? header.readUInt16BE(16) : header.readUInt16LE(16);
	return header[4] !== 2 || bigEndian || (type !== 2 && type !== 3) ? refuse('is an ELF file but not a 64-bit x86-64 executable') : undefined;
}

const memberKinds: Record<Exclude<TarMemberType, 'file'>, string> = {
	'hard link': 'a hard link', 'symbolic link': 'a symbolic link', 'character device': 'a character device', 'block device': 'a block device', fifo: 'a named pipe (FIFO)', directory: 'a folder', other: 'a member of another type',
};

type Taken = Omit<BinaryFile, 'name' | 'file'> & {header: Buffer};

/**
 * A member's bytes hashed and written to the file that is sent to every master, gzip-compressed when
 * `compress` (level 1: Go binaries shrink to about a third, at a few hundred MB/s on crypto's thread
 * pool). Its end does not wait for the file: the next member is read meanwhile; `writes` settle once written.
 */
function binarySink(file: string, compress: boolean, writes: Array<Promise<void>>, onDone: (result: Taken) => void): TarSink {
	const hash = createHash('sha256');
	// A deep input buffer: the tarball is read on while this member is still being written.
	const input = compress ? createGzip({level: 1, chunkSize: 1 << 18, highWaterMark: 8 << 20} as ZlibOptions) : new PassThrough({highWaterMark: 8 << 20});
	const written = pipeline(input, createWriteStream(file, {mode: 0o600}));
	let bytes = 0;
	const head: Buffer[] = [];
	return {
		async write(chunk) {
			hash.update(chunk);
			if (bytes < 20) {
				head.push(Buffer.from(chunk.subarray(0, 20 - bytes)));
			}

			bytes += chunk.length;
			if (!input.write(chunk)) {
				await once(input, 'drain');
			}
		},
		end() {
			input.end();
			writes.push(written.then(() => onDone({sha256: hash.digest('hex'), bytes, gzipBytes: compress ? statSync(file).size : undefined, header: Buffer.concat(head)})));
		},
	};
}

/** A small member's text (the release tag), kept in memory. */
function textSink(onText: (text: string) => void): TarSink {
	const parts: Buffer[] = [];
	return {write: chunk => void parts.push(Buffer.from(chunk)), end: () => onText(Buffer.concat(parts).toString('utf8', 0, 256).trim())};
}

/** Folders a killed run was writing (its pid is gone): removed, never written into again. */
function removeStaleUnpacking(directory: string): void {
	const parent = path.dirname(directory);
	const prefix = `${path.basename(directory)}.unpacking`;
	for (const name of existsSync(parent) ? readdirSync(parent) : []) {
		const pid = Number(/\.unpacking-(\d+)$/.exec(name)?.[1]);
		if (name.startsWith(prefix) && !(pid > 0 && processIsAlive(pid))) {
			rmSync(path.join(parent, name), {recursive: true, force: true});
		}
	}
}

/**
 * Reads the server binaries out of the tarball once per tarball content, in one pass, without
 * unpacking it: each wanted binary is hashed and written (compressed or not) as it streams by. The manifest records
 * the tarball's hash and every binary's, so a changed tarball is read again and a changed binary is seen.
 */
export async function unpackBinaries(config: ResolvedConfig, workspace: Workspace, runner: Runner, tarball: string): Promise<BinaryFile[]> {
	const tarballFile: LocalFile = {field: 'binaries.tarball', kind: 'tarball', fix: 'point binaries.tarball at the release\'s kubernetes-server-linux-amd64.tar.gz itself'};
	// A device, pipe or folder is refused here, before the read or the hash could wait on it for ever.
	await (await openLocalFile(tarball, tarballFile)).handle.close();
	const file = manifestPath(workspace, config);
	const existing = unpackedBinaries(workspace, config);
	const tarballIdentity = identityOf(tarball);
	if (existing) {
		const manifest = readManifest(file);
		// The tarball unchanged since it was hashed (as git and rsync tell): not read again.
		if (tarballIdentity !== undefined && manifest.tarballIdentity === tarballIdentity) {
			return existing;
		}

		const tarballSha256 = await sha256OfFile(tarball, tarballFile);
		if (manifest.tarballSha256 === tarballSha256) {
			writeFileAtomic(file, JSON.stringify({...manifest, tarballIdentity} satisfies Manifest, null, 2), 0o600);
			return existing;
		}
	}

	// Into a folder of this run beside the final one: a wrong tarball (missing binaries, another
	// release or architecture) is refused and leaves no trace, and a killed run's folder is never shared.
	const directory = workspace.binariesDir(config.version);
	removeStaleUnpacking(directory);
	const unpacking = `${directory}.unpacking-${process.pid}`;
	const started = performance.now();
	mkdirSync(unpacking, {recursive: true, mode: 0o700});
	const wanted = new Set(binaryNames(config));
	const form = transferForm(config);
	const fileName = (name: string) => (form.compressed ? `${name}.gz` : name);
	const found = new Map<string, Taken>();
	const writes: Array<Promise<void>> = [];
	let tag = '';
	let tarballSha256: string;
	try {
		try {
			({sha256: tarballSha256} = await readTarGz(tarball, member => {
				// Nothing is unpacked, so no path can leave a folder; a release never holds such a member.
				if (member.name.startsWith('/') || member.name.split('/').includes('..')) {
					throw new InputError('binaries.tarball', tarball, `holds ${member.name}, whose path leaves the folder it is unpacked in`, releaseFix);
				}

				if (member.name === tagMember) {
					return textSink(text => {
						tag = text;
					});
				}

				const name = member.name.startsWith(binPrefix) ? member.name.slice(binPrefix.length) : '';
				if (!wanted.has(name)) {
					return undefined;
				}

				// Checked before a byte is read: no server binary is near a gibibyte; a bomb could be.
				if (member.size > maxBinaryBytes) {
					throw new InputError('binaries.tarball', tarball, `holds ${member.name} of ${member.size} bytes, more than a server binary is (${maxBinaryBytes} at most)`, releaseFix);
				}

				if (member.type !== 'file') {
					throw new InputError('binaries.tarball', tarball, `holds ${member.name} as ${memberKinds[member.type]}${member.linkName ? ` (to ${member.linkName})` : ''}; only regular files are taken as binaries`, releaseFix);
				}

				return binarySink(path.join(unpacking, fileName(name)), form.compressed, writes, result => found.set(name, result));
			}));
		} finally {
			await Promise.allSettled(writes);
		}

		await Promise.all(writes);
	} catch (error) {
		rmSync(unpacking, {recursive: true, force: true});
		const code = (error as NodeJS.ErrnoException).code ?? '';
		if (error instanceof TarFormatError || /^(Z_|ERR_)/.test(code)) {
			throw new InputError('binaries.tarball', tarball, `is not a readable .tar.gz (${(error as Error).message})`, 'download kubernetes-server-linux-amd64.tar.gz again and check its sha256');
		}

		if (code === 'ENOSPC') {
			throw new InputError('--state-dir', workspace.root, 'has no space left for the binaries', 'free some space there (df -h), then run apply again');
		}

		throw error;
	}

	try {
		const missing = [...wanted].filter(name => !found.has(name));
		if (missing.length > 0) {
			throw new InputError('binaries.tarball', tarball, `lacks ${missing.map(name => binPrefix + name).join(', ')}`, 'use the kubernetes-server-linux-amd64.tar.gz of the release, or list what it has in binaries.include');
		}

		// Tags look like v1.28.7; the config's version must be the tarball's release.
		if (tag.startsWith('v') && tag !== config.version) {
			throw new InputError('version', config.version, `does not match the tarball, which holds ${tag}`, `set version: ${tag}, or use the tarball of ${config.version}`);
		}

		for (const name of wanted) {
			const problem = notAnExecutable(found.get(name)!.header, binPrefix + name, tarball);
			if (problem) {
				throw problem;
			}
		}

		rmSync(directory, {recursive: true, force: true});
		renameSync(unpacking, directory);
	} finally {
		rmSync(unpacking, {recursive: true, force: true});
	}

	const files = [...wanted].map((name): BinaryFile => {
		const {header: _header, ...facts} = found.get(name)!;
		return {name, file: path.join(directory, fileName(name)), ...facts};
	});
	writeFileAtomic(file, JSON.stringify({tarballSha256, tarballIdentity, files} satisfies Manifest, null, 2), 0o600);
	runner.log({event: 'unpack', tarball, binaries: files.map(entry => entry.name), bytes: files.reduce((sum, entry) => sum + entry.bytes, 0), gzipBytes: form.compressed ? files.reduce((sum, entry) => sum + (entry.gzipBytes ?? 0), 0) : undefined, transfer: form.reason, durationMs: Math.round(performance.now() - started)});
	return files;
}
