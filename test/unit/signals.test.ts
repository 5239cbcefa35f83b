import {spawn, execFileSync} from 'node:child_process';
import {mkdtempSync, openSync, closeSync, constants, rmSync, writeFileSync} from 'node:fs';
import {tmpdir} from 'node:os';
import path from 'node:path';
import {build} from 'esbuild';
import {afterAll, beforeAll, describe, expect, test} from 'vitest';

/** The CLI as shipped: bundled from source/ (as npm run build does), run by node in a process of its own. */
let folder: string;
let cli: string;

beforeAll(async () => {
	folder = mkdtempSync(path.join(tmpdir(), 'k8smi-signals-'));
	await build({
		entryPoints: [path.resolve('source/cli.ts')], bundle: true, splitting: true, format: 'esm', platform: 'node', target: 'node20', outdir: folder,
		external: ['react-devtools-core'], logLevel: 'silent', banner: {js: 'import {createRequire as __createRequire} from \'node:module\'; const require = __createRequire(import.meta.url);'},
	});
	cli = path.join(folder, 'run.js');
	writeFileSync(cli, 'const {main} = await import(\'./cli.js\');\nprocess.exitCode = await main(process.argv.slice(2));\n');
}, 60_000);

afterAll(() => {
	rmSync(folder, {recursive: true, force: true});
});

/** Starts the CLI, sends SIGTERM after delayMs, and tells how long it took to end after the signal (0: it had ended already). */
async function stopDuring(args: string[], delayMs: number): Promise<{code: number | null; signal: NodeJS.Signals | null; afterSignalMs: number; stderr: string}> {
	const child = spawn(process.execPath, [cli, ...args, '--state-dir', path.join(folder, 'state')], {stdio: ['ignore', 'ignore', 'pipe']});
	let stderr = '';
	child.stderr.on('data', chunk => {
		stderr += String(chunk);
	});
	let signalledAt: number | undefined;
	const timer = setTimeout(() => {
		signalledAt = performance.now();
		child.kill('SIGTERM');
	}, delayMs);
	// A process that never ends is killed for good after 5 s, and the test fails on the time.
	const guard = setTimeout(() => child.kill('SIGKILL'), delayMs + 5000);
	const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>(resolve => {
		child.on('exit', (exitCode, exitSignal) => resolve([exitCode, exitSignal]));
	});
	clearTimeout(timer);
	clearTimeout(guard);
	return {code, signal, afterSignalMs: signalledAt === undefined ? 0 : performance.now() - signalledAt, stderr};
}

describe('a stop while reading a hostile input', () => {
	test.each([
		['a config that is /dev/zero', () => ['plan', '--config', '/dev/zero']],
		['init from /dev/urandom', () => ['init', '--from-env', '/dev/urandom', '--out', path.join(folder, 'new.yaml')]],
	])('%s: refused at once, and SIGTERM meanwhile stops the tool within a second', async (_, args) => {
		const refused = await stopDuring(args(), 10_000);
		expect(refused.code, refused.stderr).toBe(2);
		expect(refused.stderr).toMatch(/^error: --(config|from-env): is a character device, not a regular file/);
		// Signalled at once: while node loads the modules, or while the input is being opened.
		for (const delayMs of [100, 300, 600]) {
			const stopped = await stopDuring(args(), delayMs);
			expect(stopped.afterSignalMs, `SIGTERM after ${delayMs} ms: ${stopped.stderr}`).toBeLessThan(1000);
		}
	});

	test('a config that is a pipe someone holds open but never writes: refused, and a SIGTERM stops the tool within a second', async () => {
		const pipe = path.join(folder, 'cluster.fifo');
		execFileSync('mkfifo', [pipe]);
		// A writer that never writes: a blocking read would wait for ever, a blocking open would not.
		const reader = openSync(pipe, constants.O_RDONLY | constants.O_NONBLOCK);
		const writer = openSync(pipe, constants.O_WRONLY);
		try {
			const refused = await stopDuring(['plan', '--config', pipe], 10_000);
			expect(refused.code, refused.stderr).toBe(2);
			expect(refused.stderr).toMatch(/^error: --config: is a named pipe \(FIFO\), not a regular file/);
			for (const delayMs of [100, 300, 600]) {
				const stopped = await stopDuring(['plan', '--config', pipe], delayMs);
				expect(stopped.afterSignalMs, `SIGTERM after ${delayMs} ms: ${stopped.stderr}`).toBeLessThan(1000);
			}
		} finally {
			closeSync(writer);
			closeSync(reader);
		}
	});
});
