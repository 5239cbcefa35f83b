import {createHash} from 'node:crypto';
import {readFileSync} from 'node:fs';
import {createServer, type Server} from 'node:http';
import type {AddressInfo} from 'node:net';
import path from 'node:path';
import {afterEach, describe, expect, test} from 'vitest';
import {downloadTarball} from '../../source/steps/download.js';
import {Workspace} from '../../source/workspace.js';
import {makeFixture} from '../helpers/fixture.js';

let server: Server | undefined;

afterEach(() => {
	server?.close();
});

/** A server on loopback that serves the fixture tarball and its .sha256, as dl.k8s.io does. */
async function serve(body: Buffer, checksum: string): Promise<string> {
	server = createServer((request, response) => {
		if (request.url === '/k.tar.gz') {
			response.writeHead(200, {'content-length': body.length});
			response.end(body);
		} else if (request.url === '/k.tar.gz.sha256') {
			response.end(`${checksum}\n`);
		} else {
			response.writeHead(404).end();
		}
	});
	await new Promise<void>(resolve => server!.listen(0, '127.0.0.1', resolve));
	return `http://127.0.0.1:${(server.address() as AddressInfo).port}/k.tar.gz`;
}

describe('download', () => {
	test('downloads with progress, checks the published sha256, and reuses the file next time', async () => {
		const {tarball, stateDir} = makeFixture();
		const body = readFileSync(tarball);
		const sha = createHash('sha256').update(body).digest('hex');
		const url = await serve(body, sha);
		const workspace = new Workspace(stateDir, 'kubernetes');
		const progress: number[] = [];
		const file = await downloadTarball(url, undefined, workspace, bytes => progress.push(bytes));
		expect(readFileSync(file)).toEqual(body);
		expect(progress.at(-1)).toBe(body.length);
		expect(path.basename(file)).toBe(`${sha}.tar.gz`);
		const again: number[] = [];
		await downloadTarball(url, undefined, workspace, bytes => again.push(bytes));
		expect(again).toEqual([]);
	});

	test('a wrong checksum discards the download and names the field', async () => {
		const {tarball, stateDir} = makeFixture();
		const url = await serve(readFileSync(tarball), 'a'.repeat(64));
		await expect(downloadTarball(url, undefined, new Workspace(stateDir, 'kubernetes'), () => undefined)).rejects.toThrow(/binaries\.url: downloaded a file whose sha256 is [a-f\d]{64}, not a{64}/);
	});
});
