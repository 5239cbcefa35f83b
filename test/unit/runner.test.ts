import {execFileSync} from 'node:child_process';
import {readFileSync} from 'node:fs';
import path from 'node:path';
import {describe, expect, test} from 'vitest';
import {loadConfig} from '../../source/config/load.js';
import {shellQuote, shellWords} from '../../source/remote/quote.js';
import {diagnoseSsh, Remote} from '../../source/remote/ssh.js';
import {Runner, type CommandSpec} from '../../source/runner.js';
import {baseConfig, makeFixture, writeConfig} from '../helpers/fixture.js';
import {tempDir} from '../helpers/temp.js';

describe('runner', () => {
	test('runs real commands, logs them as JSON lines with secrets redacted', async () => {
		const dir = tempDir('k8smi-runner-');
		const logFile = path.join(dir, 'log.jsonl');
		const runner = new Runner({logFile});
		runner.addSecret('s3cr3t-value-xyz');
		const result = await runner.run({command: 'sh', args: ['-c', 'echo s3cr3t-value-xyz; echo -----BEGIN RSA PRIVATE KEY-----; echo AAAA; echo -----END RSA PRIVATE KEY----- >&2; exit 3']});
		expect(result.exitCode).toBe(3);
		expect(result.stdout).toContain('s3cr3t-value-xyz');
		const log = readFileSync(logFile, 'utf8');
		expect(log).not.toContain('s3cr3t-value-xyz');
		expect(log).toContain('[secret]');
		expect(log).not.toContain('AAAA');
		const entry = JSON.parse(log.trim().split('\n')[0]!);
		expect(entry).toMatchObject({event: 'command', exitCode: 3});
		expect(entry.command).toBe('sh -c echo [secret]; echo [private key] >&2; exit 3');
	});

	test('private key blocks are masked wherever they appear', () => {
		const runner = new Runner();
		expect(runner.redact('a -----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY----- b')).toBe('a [private key] b');
	});

	test('a command that runs too long is stopped at its timeout', async () => {
		const runner = new Runner();
		const result = await runner.run({command: 'sleep', args: ['5'], timeoutMs: 200});
		expect(result.timedOut).toBe(true);
		expect(result.durationMs).toBeLessThan(4000);
	});

	test('input files are streamed with progress', async () => {
		const {tarball} = makeFixture();
		const seen: number[] = [];
		const result = await new Runner().run({command: 'wc', args: ['-c'], inputParts: [{file: tarball}], onInputProgress: bytes => seen.push(bytes)});
		expect(Number(result.stdout.trim())).toBe(seen.at(-1));
	});
});

describe('remote shell quoting', () => {
	const hostile = ['it\'s', '$(reboot)', '`id`', 'a;b', 'a b', '"', '\\', '*', '\n', '-rf', '$HOME', '\'\'', 'ünïcode'];
	test.each(hostile)('sh reads %j back unchanged', value => {
		expect(execFileSync('sh', ['-c', `printf %s ${shellQuote(value)}`], {encoding: 'utf8'})).toBe(value);
	});

	test('words survive a second shell (the remote login shell, then sh -c)', () => {
		const words = ['a b', 'it\'s', '$(x)'];
		const remote = `sh -c ${shellQuote(`printf '%s|' ${shellWords(words)}`)}`;
		expect(execFileSync('sh', ['-c', remote], {encoding: 'utf8'})).toBe('a b|it\'s|$(x)|');
	});
});

describe('ssh', () => {
	async function remoteWith(change: (config: Record<string, any>) => void = () => undefined) {
		const {dir, tarball} = makeFixture();
		const raw = baseConfig(tarball);
		change(raw);
		const config = await loadConfig(writeConfig(dir, raw));
		const calls: CommandSpec[] = [];
		const runner = new Runner({executor: async spec => {
			calls.push(spec);
			return {exitCode: 0, stdout: '', stderr: '', durationMs: 0, timedOut: false};
		}});
		return {config, calls, remote: new Remote(runner, config)};
	}

	test('checks host keys, never prompts, and multiplexes one connection per host', async () => {
		const {config, calls, remote} = await remoteWith();
		await remote.run(config.masters[0]!, 'true', {step: 'test'});
		const args = calls[0]!.args.join(' ');
		expect(args).toContain('StrictHostKeyChecking=yes');
		expect(args).toContain('BatchMode=yes');
		expect(args).toContain('ControlMaster=auto');
		expect(args).toMatch(/ControlPath=\S+\/%C/);
		expect(args).not.toMatch(/StrictHostKeyChecking=no|UserKnownHostsFile=\/dev\/null/);
		await remote.close();
	});

	test('accept-new is used only when the config asks for it', async () => {
		const {config, calls, remote} = await remoteWith(raw => {
			raw.ssh.hostKeys = 'accept-new';
		});
		await remote.run(config.masters[0]!, 'true', {step: 'test'});
		expect(calls[0]!.args.join(' ')).toContain('StrictHostKeyChecking=accept-new');
		await remote.close();
	});

	test('identity, known_hosts, port and sudo from the config reach ssh', async () => {
		const {config, calls, remote} = await remoteWith(raw => {
			raw.ssh = {user: 'ops', port: 2222, knownHostsFile: './known_hosts', sudo: true};
		});
		await remote.run(config.masters[1]!, 'id -u', {step: 'test'});
		const args = calls[0]!.args;
		expect(args.join(' ')).toMatch(/-p 2222 -l ops/);
		expect(args.join(' ')).toContain(`UserKnownHostsFile=${path.join(path.dirname(config.source), 'known_hosts')}`);
		expect(args.at(-2)).toBe('172.24.8.72');
		expect(args.at(-1)).toBe('sudo -n sh -c \'id -u\'');
		await remote.close();
	});

	test('known ssh failures are explained with the host named', async () => {
		const {config} = await remoteWith();
		const master = config.masters[2]!;
		expect(diagnoseSsh('@@@ WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED! @@@', config, master)).toMatch(/host key of 172\.24\.8\.73 differs/);
		expect(diagnoseSsh('Host key verification failed.', config, master)).toMatch(/not in known_hosts/);
		expect(diagnoseSsh('root@172.24.8.73: Permission denied (publickey).', config, master)).toMatch(/could not log in as root@172\.24\.8\.73/);
		expect(diagnoseSsh('ssh: connect to host 172.24.8.73 port 22: No route to host', config, master)).toMatch(/k8smaster03 \(172\.24\.8\.73\) is not reachable/);
	});
});
