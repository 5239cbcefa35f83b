import {closeSync, existsSync, mkdirSync, openSync, readFileSync, readSync, rmSync, statSync} from 'node:fs';
import path from 'node:path';
import type {ResolvedConfig} from '../config/load.js';
import {InputError} from '../errors.js';
import {sha256OfFile, writeFileAtomic} from '../files.js';
import type {Runner} from '../runner.js';
import type {Workspace} from '../workspace.js';
import type {BinaryFile} from './types.js';

/** The binaries the tutorial copies to every master; releases drop some (cloud-controller-manager left the tarball in 1.16). */
export const defaultBinaries = ['apiextensions-apiserver', 'cloud-controller-manager', 'kube-apiserver', 'kube-controller-manager', 'kube-proxy', 'kube-scheduler', 'kubeadm', 'kubectl', 'kubelet', 'mounter'];

/** Without these the install cannot work (kubectl checks kube-nginx on the masters); always copied. */
const requiredBinaries = ['kube-apiserver', 'kube-controller-manager', 'kube-scheduler', 'kubectl'];

const binPrefix = 'kubernetes/server/bin/';

type Manifest = {tarballSha256: string; files: BinaryFile[]};

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

	const manifest = JSON.parse(readFileSync(file, 'utf8')) as Manifest;
	const complete = manifest.files.every(entry => existsSync(entry.file) && statSync(entry.file).size === entry.bytes)
		&& mandatoryBinaries(config).every(name => manifest.files.some(entry => entry.name === name));
	return complete ? manifest.files.filter(entry => binaryNames(config).includes(entry.name)) : undefined;
}

const elfMachines: Record<number, string> = {3: '386', 40: 'arm', 62: 'amd64', 183: 'arm64', 21: 'ppc64le', 22: 's390x', 243: 'riscv64'};

/** The architecture an ELF binary is built for; undefined for anything that is not ELF (scripts). */
function elfArchitecture(file: string): string | undefined {
	const header = Buffer.alloc(20);
	const descriptor = openSync(file, 'r');
	try {
		readSync(descriptor, header, 0, 20, 0);
	} finally {
		closeSync(descriptor);
	}

	if (header.subarray(0, 4).toString('latin1') !== '\u007FELF') {
		return undefined;
	}

	const machine = header[5] === 2 ? header.readUInt16BE(18) : header.readUInt16LE(18);
	return elfMachines[machine] ?? `machine ${machine}`;
}

/**
 * Unpacks the server binaries from the tarball once per tarball content; the manifest records the
 * tarball's hash and every binary's, so a changed tarball is unpacked again and a changed binary is seen.
 */
export async function unpackBinaries(config: ResolvedConfig, workspace: Workspace, runner: Runner, tarball: string): Promise<BinaryFile[]> {
	const tarballSha256 = await sha256OfFile(tarball);
	const file = manifestPath(workspace, config);
	const existing = unpackedBinaries(workspace, config);
	if (existing && (JSON.parse(readFileSync(file, 'utf8')) as Manifest).tarballSha256 === tarballSha256) {
		return existing;
	}

	const listing = await runner.run({command: 'tar', args: ['-tzf', tarball], step: 'binaries', display: `tar -tzf ${tarball}`});
	if (listing.exitCode !== 0) {
		throw new InputError('binaries.tarball', tarball, `is not a readable .tar.gz (${listing.stderr.trim().split('\n').at(-1) ?? 'tar failed'})`, 'download kubernetes-server-linux-amd64.tar.gz again and check its sha256');
	}

	const members = new Set(listing.stdout.split('\n'));
	const wanted = binaryNames(config).filter(name => members.has(`${binPrefix}${name}`));
	const missing = mandatoryBinaries(config).filter(name => !members.has(`${binPrefix}${name}`));
	if (missing.length > 0) {
		throw new InputError('binaries.tarball', tarball, `lacks ${missing.map(name => binPrefix + name).join(', ')}`, 'use the kubernetes-server-linux-amd64.tar.gz of the release, or list what it has in binaries.include');
	}

	// The release is checked before anything is unpacked, so a wrong tarball leaves no trace.
	const tagMember = `${binPrefix}kube-apiserver.docker_tag`;
	if (members.has(tagMember)) {
		const tag = (await runner.run({command: 'tar', args: ['-xzOf', tarball, tagMember], step: 'binaries', timeoutMs: 600_000})).stdout.trim();
		// Tags look like v1.28.7; the config's version must be the tarball's release.
		if (tag.startsWith('v') && tag !== config.version) {
			throw new InputError('version', config.version, `does not match the tarball, which holds ${tag}`, `set version: ${tag}, or use the tarball of ${config.version}`);
		}
	}

	const extract = wanted.map(name => binPrefix + name);
	const directory = workspace.binariesDir(config.version);
	mkdirSync(directory, {recursive: true, mode: 0o700});
	const result = await runner.run({command: 'tar', args: ['-xzf', tarball, '-C', directory, '--no-same-owner', ...extract], step: 'binaries', timeoutMs: 600_000});
	if (result.exitCode !== 0) {
		throw new InputError('binaries.tarball', tarball, `could not be unpacked (${result.stderr.trim().split('\n').at(-1) ?? 'tar failed'})`, 'check free disk space in the state folder and the tarball\'s integrity');
	}

	const architecture = elfArchitecture(path.join(directory, binPrefix, 'kube-apiserver'));
	if (architecture !== undefined && architecture !== 'amd64') {
		rmSync(directory, {recursive: true, force: true});
		throw new InputError('binaries.tarball', tarball, `holds ${architecture} binaries (kube-apiserver is built for ${architecture})`, 'use kubernetes-server-linux-amd64.tar.gz of the release: the masters must be x86_64 (preflight checks them)');
	}

	const files: BinaryFile[] = [];
	for (const name of wanted) {
		const binary = path.join(directory, binPrefix, name);
		files.push({name, file: binary, sha256: await sha256OfFile(binary), bytes: statSync(binary).size});
	}

	writeFileAtomic(file, JSON.stringify({tarballSha256, files} satisfies Manifest, null, 2), 0o600);
	return files;
}
