import {createHash} from 'node:crypto';
import {createWriteStream, existsSync, mkdirSync, renameSync, rmSync} from 'node:fs';
import path from 'node:path';
import {Readable} from 'node:stream';
import {pipeline} from 'node:stream/promises';
import {InputError} from '../errors.js';
import {sha256OfFile} from '../files.js';
import type {Workspace} from '../workspace.js';

/** fetch, with a network failure reported as bad input naming the field and the fix. */
async function get(url: string): Promise<Response> {
	try {
		return await fetch(url);
	} catch (error) {
		const cause = (error as {cause?: {code?: string; message?: string}}).cause;
		throw new InputError('binaries.url', url, `could not be fetched (${cause?.code ?? cause?.message ?? (error as Error).message})`, 'check the network (Node\'s fetch does not use HTTPS_PROXY), or download the tarball yourself and set binaries.tarball');
	}
}

async function expectedChecksum(url: string, configured: string | undefined): Promise<string> {
	if (configured) {
		return configured;
	}

	const response = await get(`${url}.sha256`);
	const text = response.ok ? (await response.text()).trim().split(/\s+/)[0] ?? '' : '';
	if (!/^[a-f\d]{64}$/.test(text)) {
		throw new InputError('binaries.sha256', '(not set)', `is needed: ${url}.sha256 could not be read (HTTP ${response.status})`, 'copy the sha256 of the tarball from the release notes into binaries.sha256');
	}

	return text;
}

/** Downloads the tarball once into the state folder, with progress, and refuses it unless its sha256 matches. */
export async function downloadTarball(url: string, configuredSha256: string | undefined, workspace: Workspace, onProgress: (bytes: number, total: number) => void): Promise<string> {
	const expected = await expectedChecksum(url, configuredSha256);
	const target = path.join(workspace.root, 'downloads', `${expected}.tar.gz`);
	if (existsSync(target) && await sha256OfFile(target, {field: '--state-dir', kind: 'tarball', fix: `remove ${target}: it is downloaded again`}) === expected) {
		return target;
	}

	mkdirSync(path.dirname(target), {recursive: true, mode: 0o700});
	const response = await get(url);
	if (!response.ok || !response.body) {
		throw new InputError('binaries.url', url, `answered HTTP ${response.status}`, 'check the URL, or download the tarball yourself and set binaries.tarball');
	}

	const total = Number(response.headers.get('content-length') ?? 0);
	const hash = createHash('sha256');
	let received = 0;
	const partial = `${target}.partial`;
	const body = Readable.fromWeb(response.body as import('node:stream/web').ReadableStream<Uint8Array>);
	body.on('data', (chunk: Buffer) => {
		received += chunk.length;
		hash.update(chunk);
		onProgress(received, total);
	});
	await pipeline(body, createWriteStream(partial, {mode: 0o600}));
	const actual = hash.digest('hex');
	if (actual !== expected) {
		rmSync(partial, {force: true});
		throw new InputError('binaries.url', url, `downloaded a file whose sha256 is ${actual}, not ${expected}`, 'check binaries.sha256 and the URL; the download was discarded');
	}

	renameSync(partial, target);
	return target;
}
