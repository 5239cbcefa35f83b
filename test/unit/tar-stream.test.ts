import {execFileSync} from 'node:child_process';
import {mkdirSync, readFileSync, symlinkSync, writeFileSync} from 'node:fs';
import path from 'node:path';
import {gzipSync} from 'node:zlib';
import {describe, expect, test} from 'vitest';
import {readTarGz, TarFormatError, type TarMember} from '../../source/steps/tar-stream.js';
import {tempDir} from '../helpers/temp.js';

/** Every member with the bytes of the files, as read from the archive. */
async function members(file: string): Promise<Array<TarMember & {content?: string}>> {
	const seen: Array<TarMember & {content?: string}> = [];
	await readTarGz(file, member => {
		const entry: TarMember & {content?: string} = {...member};
		seen.push(entry);
		const parts: Buffer[] = [];
		return member.type === 'file' ? {write: chunk => void parts.push(Buffer.from(chunk)), end: () => void (entry.content = Buffer.concat(parts).toString())} : undefined;
	});
	return seen;
}

describe('reading a .tar.gz as GNU tar writes it', () => {
	test.each(['gnu', 'pax', 'ustar'])('format %s: files with their bytes, long names, links as links; the sha256 of the file', async format => {
		const dir = tempDir('k8smi-tar-');
		const bin = path.join(dir, 'src', 'kubernetes', 'server', 'bin');
		mkdirSync(bin, {recursive: true});
		writeFileSync(path.join(bin, 'kube-apiserver'), 'x'.repeat(70_000));
		const long = `${'very-long-name-'.repeat(6)}kube-scheduler`;
		if (format !== 'ustar') {
			writeFileSync(path.join(bin, long), 'scheduler\n'); // ustar cannot hold a name this long
		}

		symlinkSync('/etc/hostname', path.join(bin, 'kubectl'));
		const tarball = path.join(dir, 'server.tar.gz');
		execFileSync('tar', [`--format=${format}`, '-czf', tarball, '-C', path.join(dir, 'src'), 'kubernetes']);
		const seen = await members(tarball);
		const byName = new Map(seen.map(member => [member.name.replace(/\/$/, ''), member]));
		expect(byName.get('kubernetes/server/bin/kube-apiserver')).toMatchObject({type: 'file', size: 70_000, content: 'x'.repeat(70_000)});
		expect(byName.get('kubernetes/server/bin')).toMatchObject({type: 'directory'});
		expect(byName.get('kubernetes/server/bin/kubectl')).toMatchObject({type: 'symbolic link', linkName: '/etc/hostname'});
		if (format !== 'ustar') {
			expect(byName.get(`kubernetes/server/bin/${long}`)).toMatchObject({type: 'file', content: 'scheduler\n'});
		}

		const {sha256} = await readTarGz(tarball, () => undefined);
		expect(sha256).toBe(execFileSync('sha256sum', [tarball], {encoding: 'utf8'}).split(' ')[0]);
	});

	test('a damaged header, an archive cut short and a file that is not gzip are refused', async () => {
		const dir = tempDir('k8smi-tar-');
		mkdirSync(path.join(dir, 'src'));
		writeFileSync(path.join(dir, 'src', 'kube-apiserver'), 'y'.repeat(10_000));
		const plain = execFileSync('tar', ['-cf', '-', '-C', path.join(dir, 'src'), 'kube-apiserver']);
		const damaged = Buffer.from(plain);
		damaged[10] = 0x41;
		writeFileSync(path.join(dir, 'damaged.tar.gz'), gzipSync(damaged));
		await expect(readTarGz(path.join(dir, 'damaged.tar.gz'), () => undefined)).rejects.toThrow(TarFormatError);
		writeFileSync(path.join(dir, 'cut.tar.gz'), gzipSync(plain.subarray(0, 4096)));
		await expect(readTarGz(path.join(dir, 'cut.tar.gz'), () => undefined)).rejects.toThrow(/ends inside kube-apiserver/);
		writeFileSync(path.join(dir, 'text.tar.gz'), readFileSync(path.join(dir, 'src', 'kube-apiserver')));
		await expect(readTarGz(path.join(dir, 'text.tar.gz'), () => undefined)).rejects.toThrow(/incorrect header check/);
	});
});
