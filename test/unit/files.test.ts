import {execFileSync, spawnSync} from 'node:child_process';
import {createHash} from 'node:crypto';
import {gzipSync} from 'node:zlib';
import {existsSync, mkdirSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync} from 'node:fs';
import path from 'node:path';
import {describe, expect, test} from 'vitest';
import {batches, fileFactsScript, uploadScript, widenStdinPipe, type Upload} from '../../source/steps/files.js';
import {tempDir} from '../helpers/temp.js';

const MiB = 1024 * 1024;
const upload = (name: string, bytes: number): Upload => ({kind: 'upload', path: `/opt/k8s/bin/${name}`, mode: 0o755, sha256: '0'.repeat(64), bytes, secret: false, source: {gzipFile: name, gzipBytes: bytes}, label: name});

test('uploads share round trips: small files up to 8 MiB together, each large file with at most 8 MiB of small ones', () => {
	const names = (groups: Upload[][]) => groups.map(group => group.map(each => each.label));
	// The lab's release: one large kubectl among small stand-ins, all in one round trip.
	expect(names(batches([upload('a', 1000), upload('kubectl', 37 * MiB), upload('b', 2000), upload('c', 3000)]))).toEqual([['a', 'b', 'c', 'kubectl']]);
	// A real release: every server binary is large, each goes in its own round trip.
	expect(names(batches([upload('kube-apiserver', 120 * MiB), upload('mounter', 2 * MiB), upload('kubelet', 110 * MiB), upload('kubectl', 50 * MiB)]))).toEqual([['mounter', 'kube-apiserver'], ['kubelet'], ['kubectl']]);
	// Small files past 8 MiB start another round trip.
	expect(names(batches([upload('a', 5 * MiB), upload('b', 5 * MiB), upload('c', 1 * MiB)]))).toEqual([['a'], ['b', 'c']]);
	expect(batches([])).toEqual([]);
});

describe.each(['dash', 'bash'])('the scripts run by %s on this machine', shell => {
	const run = (script: string, input?: Buffer) => spawnSync(shell, ['-c', script], {input, encoding: 'buffer'});

	test('file facts: regular files and links to them, a folder\'s mode and owner alone, not dangling links (a link names its target); a known identity is not hashed', () => {
		const dir = tempDir('k8smi-facts-');
		writeFileSync(path.join(dir, 'known'), 'known\n');
		writeFileSync(path.join(dir, 'with space'), 'space\n');
		symlinkSync(path.join(dir, 'with space'), path.join(dir, 'link'));
		symlinkSync(path.join(dir, 'absent'), path.join(dir, 'dangling'));
		mkdirSync(path.join(dir, 'folder'));
		const identity = (file: string) => execFileSync('stat', ['-c', '%d:%i:%s:%.9Y:%.9Z', path.join(dir, file)], {encoding: 'utf8'}).trim();
		const paths = ['known', 'with space', 'link', 'dangling', 'folder', 'missing'].map(file => path.join(dir, file));
		const result = run(fileFactsScript(paths, {[path.join(dir, 'known')]: {stat: identity('known')}}));
		expect(result.status).toBe(0);
		const lines = result.stdout.toString().trim().split('\n');
		const sha = (text: string) => createHash('sha256').update(text).digest('hex');
		expect(lines).toEqual([
			expect.stringMatching(new RegExp(`^F \\d+:\\w+ ${identity('known')} ${dir}/known$`)),
			expect.stringMatching(new RegExp(`^F \\d+:\\w+ ${identity('with space')} ${dir}/with space$`)),
			`L ${dir}/link\t${dir}/with space`,
			expect.stringMatching(new RegExp(`^F 777:\\w+ \\S+ ${dir}/link$`)),
			`L ${dir}/dangling\t${dir}/absent`,
			expect.stringMatching(new RegExp(`^D \\d+:\\w+ ${dir}/folder$`)),
			`${sha('space\n')}  ${dir}/with space`,
			`${sha('space\n')}  ${dir}/link`,
		]);
	});

	test.skipIf(process.getuid?.() !== 0)('uploads: a whole batch lands with its modes; a batch cut short changes nothing and leaves no temporary file', () => {
		const dir = tempDir('k8smi-upload-');
		const content = (text: string): Upload => ({...upload(text, Buffer.byteLength(text)), path: path.join(dir, 'sub dir', text), mode: text === 'secret' ? 0o600 : 0o644, sha256: createHash('sha256').update(text).digest('hex'), source: {content: text}});
		const batch = [content('public'), content('secret')];
		const landed = run(uploadScript(batch), Buffer.from('publicsecret'));
		expect(landed.status).toBe(0);
		expect(landed.stdout.toString()).toMatch(new RegExp(`^S \\S+ ${dir}/sub dir/public\\nS \\S+ ${dir}/sub dir/secret\\n$`));
		expect(readFileSync(path.join(dir, 'sub dir', 'secret'), 'utf8')).toBe('secret');
		expect(statSync(path.join(dir, 'sub dir', 'secret')).mode & 0o777).toBe(0o600);
		expect(statSync(path.join(dir, 'sub dir', 'public')).mode & 0o777).toBe(0o644);

		const changed = [content('public'), {...content('secret'), sha256: createHash('sha256').update('SECRET').digest('hex')}];
		const cut = run(uploadScript(changed), Buffer.from('publicsec'));
		expect(cut.status).toBe(3);
		expect(readdirSync(path.join(dir, 'sub dir')).sort()).toEqual(['public', 'secret']);
		expect(readFileSync(path.join(dir, 'sub dir', 'secret'), 'utf8')).toBe('secret');
	});

	test('a batch of 1 MiB or more first asks for a 1 MiB stdin pipe, with perl, else python3; with neither, the pipe stays as it was', () => {
		const large = uploadScript([upload('kube-apiserver', MiB)]);
		expect(large).toContain(widenStdinPipe);
		expect(uploadScript([upload('unit', MiB - 1)])).not.toContain(widenStdinPipe);
		// The system's own (a version manager's shim is a script that needs more than PATH gives it here).
		const system = (name: string) => ['/usr/bin', '/bin'].map(dir => path.join(dir, name)).find(file => existsSync(file))!;
		// Only the interpreter under test is on PATH: the snippet itself needs nothing else.
		const only = (name?: string) => {
			const bin = tempDir('k8smi-bin-');
			if (name) {
				symlinkSync(system(name), path.join(bin, name));
			}

			return bin;
		};

		const shellPath = system(shell);
		const python = system('python3');
		const pipeSize = (bin: string) => {
			// Through a pipe the shell makes: node gives a child a socket, which no pipe size applies to.
			const result = spawnSync(shellPath, ['-c', `set -e; : | { ${widenStdinPipe}; ${python} -c 'import fcntl; print(fcntl.fcntl(0, 1032))'; }`], {stdio: ['ignore', 'pipe', 'pipe'], env: {PATH: bin}, encoding: 'utf8'});
			expect(result.status, result.stderr).toBe(0);
			return Number(result.stdout.trim());
		};

		expect(pipeSize(only('perl'))).toBe(MiB);
		expect(pipeSize(only('python3'))).toBe(MiB);
		expect(pipeSize(only())).toBe(64 * 1024);
	});

	test.skipIf(process.getuid?.() !== 0)('uploads: temporary names are this upload\'s own; what a cut-off session left is removed', () => {
		const dir = tempDir('k8smi-upload-');
		const file: Upload = {...upload('unit', 4), path: path.join(dir, 'unit'), mode: 0o600, sha256: createHash('sha256').update('unit').digest('hex'), source: {content: 'unit'}};
		// A session of an earlier run, cut off mid-stream, still owns its temporary file.
		writeFileSync(path.join(dir, 'unit.k8smi-new-0ld0ld00'), 'half');
		const script = uploadScript([file]);
		expect(script).not.toBe(uploadScript([file]));
		expect(run(script, Buffer.from('unit')).status).toBe(0);
		expect(readdirSync(dir)).toEqual(['unit']);
		expect(readFileSync(path.join(dir, 'unit'), 'utf8')).toBe('unit');
	});

	test.skipIf(process.getuid?.() !== 0)('uploads: a compressed binary is unpacked by the master and checked; cut short, it replaces nothing', () => {
		const dir = tempDir('k8smi-upload-');
		const binary = Buffer.from('\u007FELF'.repeat(5000));
		const packed = gzipSync(binary, {level: 1});
		const compressed: Upload = {...upload('kube-apiserver', binary.length), path: path.join(dir, 'kube-apiserver'), sha256: createHash('sha256').update(binary).digest('hex'), source: {gzipFile: 'unused here', gzipBytes: packed.length}};
		const small: Upload = {...upload('unit', 4), path: path.join(dir, 'unit'), mode: 0o600, sha256: createHash('sha256').update('unit').digest('hex'), source: {content: 'unit'}};
		for (const batch of [[compressed], [small, compressed]]) {
			const input = Buffer.concat([...(batch.length > 1 ? [Buffer.from('unit')] : []), packed]);
			const landed = run(uploadScript(batch), input);
			expect(landed.status, landed.stderr.toString()).toBe(0);
			expect(readFileSync(path.join(dir, 'kube-apiserver')).equals(binary)).toBe(true);
			expect(statSync(path.join(dir, 'kube-apiserver')).mode & 0o777).toBe(0o755);
		}

		const before = statSync(path.join(dir, 'kube-apiserver')).ino;
		const cut = run(uploadScript([small, compressed]), Buffer.concat([Buffer.from('unit'), packed.subarray(0, packed.length - 10)]));
		expect(cut.status).not.toBe(0);
		expect(statSync(path.join(dir, 'kube-apiserver')).ino).toBe(before);
		expect(readdirSync(dir).sort()).toEqual(['kube-apiserver', 'unit']);
	});
});
