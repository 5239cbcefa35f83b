import {existsSync, lstatSync, mkdirSync, renameSync, rmSync, statSync} from 'node:fs';
import path from 'node:path';
import type {ResolvedConfig} from '../config/load.js';
import {InputError} from '../errors.js';
import {sha256OfFile, writeFileAtomic} from '../files.js';
import type {Runner} from '../runner.js';
import {openLocalFile, readLocalFile, readLocalTextSync, type LocalFile} from '../safe-read.js';
import type {Workspace} from '../workspace.js';
import type {BinaryFile} from './types.js';

/** The binaries the tutorial copies to every master; releases drop some (cloud-controller-manager left the tarball in 1.16). */
export const defaultBinaries = ['apiextensions-apiserver', 'cloud-controller-manager', 'kube-apiserver', 'kube-controller-manager', 'kube-proxy', 'kube-scheduler', 'kubeadm', 'kubectl', 'kubelet', 'mounter'];

/** Without these the install cannot work (kubectl checks kube-nginx on the masters); always copied. */
const requiredBinaries = ['kube-apiserver', 'kube-controller-manager', 'kube-scheduler', 'kubectl'];

const binPrefix = 'kubernetes/server/bin/';

const releaseFix = 'use the release\'s kubernetes-server-linux-amd64.tar.gz as published (its binaries are x86-64 executables, regular files), and check where this one came from';

/** tarballIdentity: device, inode, size, mtime and ctime (ns) of the tarball when it was hashed. */
type Manifest = {tarballSha256: string; tarballIdentity?: string; files: BinaryFile[]};

/** Undefined where times are whole seconds: a change of the same size within the second would look unchanged. */
function identityOf(file: string): string | undefined {
	const stats = statSync(file, {bigint: true});
	return stats.mtimeNs % 1_000_000_000n === 0n && stats.ctimeNs % 1_000_000_000n === 0n ? undefined : `${stats.dev}:${stats.ino}:${stats.size}:${stats.mtimeNs}:${stats.ctimeNs}`;
}

export function binaryNames(config: ResolvedConfig): string[] {
	return config.binaries.include ? [...new Set([...requiredBinaries, ...config.binaries.include])] : defaultBinaries;
}

/** The names that must be in the tarball: the required ones and all of an explicit include list. */
function mandatoryBinaries(config: ResolvedConfig): string[] {
	return config.binaries.include ? binaryNames(config) : requiredBinaries;
}

function manifestPath(workspace: Workspace, config: ResolvedConfig): string {
	return path.join(workspace.binariesDir(config.version), 'manifest.json');
}

/** The unpacked binaries of an earlier run, if they are still intact; plan uses them without unpacking. */
export function unpackedBinaries(workspace: Workspace, config: ResolvedConfig): BinaryFile[] | undefined {
	const file = manifestPath(workspace, config);
	if (!existsSync(file)) {
		return undefined;
	}

	const manifest = JSON.parse(readLocalTextSync(file, {field: '--state-dir', kind: 'state', fix: `remove ${path.dirname(file)}: the tarball is unpacked again`})) as Manifest;
	// lstat: an unpacked binary replaced by a link or anything but the file written is not intact.
	const intact = (entry: BinaryFile) => {
		const stats = lstatSync(entry.file, {throwIfNoEntry: false});
		return stats?.isFile() === true && stats.size === entry.bytes;
	};

	const complete = manifest.files.every(entry => intact(entry)) && mandatoryBinaries(config).every(name => manifest.files.some(entry => entry.name === name));
	return complete ? manifest.files.filter(entry => binaryNames(config).includes(entry.name)) : undefined;
}

const elfMachines: Record<number, string> = {3: '386', 40: 'arm', 62: 'amd64', 183: 'arm64', 21: 'ppc64le', 22: 's390x', 243: 'riscv64'};

/**
 * Why an unpacked binary is not an x86-64 executable, or undefined when it is one: ELF magic,
 * 64-bit, little-endian, an executable or a position-independent one, machine x86-64 (62). A script
 * is refused: the masters run these files as the control plane.
 */
async function notAnExecutable(file: string, member: string, tarball: string): Promise<InputError | undefined> {
	const {handle, stats} = await openLocalFile(file, {field: 'binaries.tarball', kind: 'binary', fix: releaseFix}, {noFollow: true});
	const header = Buffer.alloc(20);
	try {
		await handle.read(header, 0, header.length, 0);
	} finally {
		await handle.close();
	}

	const refuse = (problem: string) => new InputError('binaries.tarball', tarball, `holds ${member}, which ${problem}`, releaseFix);
	// A hard link to another member the tarball held (one to a file outside is never made by tar).
	if (stats.nlink > 1) {
		return refuse('is a hard link; only regular files are taken as binaries');
	}

	if (header.subarray(0, 4).toString('latin1') !== '\u007FELF') {
		return refuse(header.subarray(0, 2).toString('latin1') === '#!' ? 'is a script (#!), not an ELF executable' : 'is not an ELF executable');
	}

	const bigEndian = header[5] === 2;
	const machine = bigEndian ? header.readUInt16BE(18) : header.readUInt16LE(18);
	if (machine !== 62) {
		const architecture = elfMachines[machine] ?? `machine ${machine}`;
		return new InputError('binaries.tarball', tarball, `holds ${architecture} binaries (${path.basename(member)} is built for ${architecture})`, 'use kubernetes-server-linux-amd64.tar.gz of the release: the masters must be x86_64 (preflight checks them)');
	}

	const type = bigEndian ? header.readUInt16BE(16) : header.readUInt16LE(16);
	if (header[4] !== 2 || bigEndian || (type !== 2 && type !== 3)) {
		return refuse('is an ELF file but not a 64-bit x86-64 executable');
	}

	return undefined;
}

/** GNU tar's verbose listing (-vv) of a member taken: "TYPE+MODE OWNER SIZE DATE TIME NAME", then " -> TARGET" or " link to TARGET". */
const listingLine = /^(.)\S{9}\S*\s+\S+\s+\S+\s+\d{4}-\d\d-\d\d \d\d:\d\d (.+)$/;
const memberKinds: Record<string, string> = {h: 'a hard link', l: 'a symbolic link', c: 'a character device', b: 'a block device', p: 'a named pipe (FIFO)', d: 'a folder'};

/** Only regular files are taken: a link (to a file of this machine), a device or a folder where a binary belongs is refused, named. */
function refuseOddMembers(listing: string, tarball: string): void {
	for (const line of listing.split('\n')) {
		const [, type, rest] = listingLine.exec(line) ?? [];
		if (type === undefined || rest === undefined || type === '-') {
			continue;
		}

		const [member, target] = type === 'l' ? rest.split(' -> ') : type === 'h' ? rest.split(' link to ') : [rest];
		throw new InputError('binaries.tarball', tarball, `holds ${member} as ${memberKinds[type] ?? `a member of type ${type}`}${target ? ` (to ${target})` : ''}; only regular files are taken as binaries`, releaseFix);
	}
}

/**
 * Unpacks the server binaries from the tarball once per tarball content; the manifest records the
 * tarball's hash and every binary's, so a changed tarball is unpacked again and a changed binary is seen.
 */
export async function unpackBinaries(config: ResolvedConfig, workspace: Workspace, runner: Runner, tarball: string): Promise<BinaryFile[]> {
	const tarballFile: LocalFile = {field: 'binaries.tarball', kind: 'tarball', fix: 'point binaries.tarball at the release\'s kubernetes-server-linux-amd64.tar.gz itself'};
	// A device, pipe or folder is refused here, before tar or the hash could wait on it for ever.
	await (await openLocalFile(tarball, tarballFile)).handle.close();
	const file = manifestPath(workspace, config);
	const existing = unpackedBinaries(workspace, config);
	const tarballIdentity = identityOf(tarball);
	if (existing) {
		const manifest = JSON.parse(readLocalTextSync(file, {field: '--state-dir', kind: 'state', fix: `remove ${path.dirname(file)}: the tarball is unpacked again`})) as Manifest;
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

	// Hashed while tar reads it: two readers of one file, side by side.
	const hashing = sha256OfFile(tarball, tarballFile);
	// Awaited once tar is through; a read error surfaces there, not as an unhandled rejection before.
	hashing.catch(() => undefined);

	// One pass over the archive, into a folder beside the final one: a wrong tarball (missing
	// binaries, links, scripts, another release or architecture) is refused and leaves no trace.
	// Only the named members are taken; GNU tar strips a leading / and refuses a member with "..".
	const tagMember = `${binPrefix}kube-apiserver.docker_tag`;
	const directory = workspace.binariesDir(config.version);
	const unpacking = `${directory}.unpacking`;
	rmSync(unpacking, {recursive: true, force: true});
	mkdirSync(unpacking, {recursive: true, mode: 0o700});
	try {
		const result = await runner.run({command: 'tar', args: ['-xvvzf', tarball, '-C', unpacking, '--no-same-owner', ...binaryNames(config).map(name => binPrefix + name), tagMember], step: 'binaries', display: `tar -xzf ${tarball}`, timeoutMs: 600_000});
		// Before tar's status: a link or device is named as such, also where tar could not make it.
		refuseOddMembers(result.stdout, tarball);
		const escaping = /^tar: (.+): Member name contains '\.\.'/m.exec(result.stderr);
		if (escaping) {
			throw new InputError('binaries.tarball', tarball, `holds ${escaping[1]!}, whose path leaves the folder it is unpacked in`, releaseFix);
		}

		// Optional binaries may be absent from a release ("Not found in archive"); anything else is a broken tarball.
		const problems = result.stderr.split('\n').filter(line => line.trim() && !/Not found in archive|Exiting with failure status due to previous errors/.test(line));
		if (result.exitCode !== 0 && problems.length > 0) {
			throw new InputError('binaries.tarball', tarball, `is not a readable .tar.gz (${problems.at(-1)!.trim()})`, 'download kubernetes-server-linux-amd64.tar.gz again and check its sha256, and check free disk space in the state folder');
		}

		// lstat: a member is there as itself, never through a link.
		const unpacked = (name: string) => lstatSync(path.join(unpacking, binPrefix, name), {throwIfNoEntry: false}) !== undefined;
		const missing = mandatoryBinaries(config).filter(name => !unpacked(name));
		if (missing.length > 0) {
			throw new InputError('binaries.tarball', tarball, `lacks ${missing.map(name => binPrefix + name).join(', ')}`, 'use the kubernetes-server-linux-amd64.tar.gz of the release, or list what it has in binaries.include');
		}

		// Tags look like v1.28.7; the config's version must be the tarball's release.
		const tag = unpacked('kube-apiserver.docker_tag') ? (await readLocalFile(path.join(unpacking, tagMember), {field: 'binaries.tarball', kind: 'marker', fix: releaseFix}, {noFollow: true})).toString('utf8').trim() : '';
		if (tag.startsWith('v') && tag !== config.version) {
			throw new InputError('version', config.version, `does not match the tarball, which holds ${tag}`, `set version: ${tag}, or use the tarball of ${config.version}`);
		}

		for (const name of binaryNames(config).filter(each => unpacked(each))) {
			const problem = await notAnExecutable(path.join(unpacking, binPrefix, name), binPrefix + name, tarball);
			if (problem) {
				throw problem;
			}
		}

		rmSync(directory, {recursive: true, force: true});
		renameSync(unpacking, directory);
	} finally {
		rmSync(unpacking, {recursive: true, force: true});
	}

	const unpackedFile: LocalFile = {field: '--state-dir', kind: 'binary', fix: `remove ${directory}: the tarball is unpacked again`};
	const wanted = binaryNames(config).filter(name => existsSync(path.join(directory, binPrefix, name)));
	const files: BinaryFile[] = [];
	for (const name of wanted) {
		const binary = path.join(directory, binPrefix, name);
		files.push({name, file: binary, sha256: await sha256OfFile(binary, unpackedFile), bytes: statSync(binary).size});
	}

	writeFileAtomic(file, JSON.stringify({tarballSha256: await hashing, tarballIdentity, files} satisfies Manifest, null, 2), 0o600);
	return files;
}
