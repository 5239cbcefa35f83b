import {execFileSync} from 'node:child_process';
import {readFileSync, statSync, writeFileSync} from 'node:fs';
import path from 'node:path';
import {describe, expect, test} from 'vitest';
import {loadConfig} from '../../source/config/load.js';
import {shellQuote, shellWords} from '../../source/remote/quote.js';
import {diagnoseSsh, failedHop, Remote, throughSsh} from '../../source/remote/ssh.js';
import type {HealthAnswer} from '../../source/remote/health.js';
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

	test('onOutput is called once, at the first output, while the command still runs', async () => {
		const runner = new Runner();
		const started = performance.now();
		const calls: number[] = [];
		const result = await runner.run({command: 'sh', args: ['-c', 'echo up; sleep 0.5; echo again'], onOutput: () => calls.push(performance.now() - started)});
		expect(result).toMatchObject({exitCode: 0, stdout: 'up\nagain\n'});
		expect(calls).toHaveLength(1);
		expect(calls[0]).toBeLessThan(result.durationMs - 300);
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
		// wc -c alone would take a regular file's size without reading it.
		const result = await new Runner().run({command: 'sh', args: ['-c', 'cat | wc -c'], inputParts: [{file: tarball}], onInputProgress: bytes => seen.push(bytes)});
		expect(Number(result.stdout.trim())).toBe(seen.at(-1));
	});

	test.runIf(process.platform === 'linux')('a file alone is the command\'s own input: progress is how far the command has read it', async () => {
		const file = path.join(tempDir('k8smi-test-'), 'binary');
		writeFileSync(file, Buffer.alloc(1024 * 1024, 7));
		const seen: number[] = [];
		// One block read, a pause longer than the progress period, then the rest.
		const result = await new Runner().run({command: 'sh', args: ['-c', 'dd bs=65536 count=1 of=/dev/null 2>/dev/null; sleep 0.6; cat | wc -c'], inputParts: [{file}], onInputProgress: bytes => seen.push(bytes)});
		expect(Number(result.stdout.trim())).toBe((1024 * 1024) - 65_536);
		expect(seen).toContain(65_536);
		expect(seen.at(-1)).toBe(1024 * 1024);
	});

	test('several parts reach the command one after the other', async () => {
		const {tarball} = makeFixture();
		const result = await new Runner().run({command: 'sh', args: ['-c', 'head -c 4; echo; wc -c'], inputParts: [{bytes: Buffer.from('abcd')}, {file: tarball}]});
		expect(result.stdout).toBe(`abcd\n${statSync(tarball).size}\n`);
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
	async function remoteWith(change: (config: Record<string, any>, dir: string) => void = () => undefined, exitCode: (spec: CommandSpec) => number = () => 0) {
		const {dir, tarball} = makeFixture();
		const raw = baseConfig(tarball);
		change(raw, dir);
		const config = await loadConfig(writeConfig(dir, raw));
		const calls: CommandSpec[] = [];
		const runner = new Runner({executor: async spec => {
			calls.push(spec);
			return {exitCode: exitCode(spec), stdout: '', stderr: '', durationMs: 0, timedOut: false};
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

	test('without ssh.user and ssh.port, ssh is given neither: the operator\'s ssh config decides', async () => {
		const {config, calls, remote} = await remoteWith(raw => {
			raw.ssh = {};
		});
		await remote.run(config.masters[0]!, 'true', {step: 'test'});
		expect(calls[0]!.args).not.toContain('-l');
		expect(calls[0]!.args).not.toContain('-p');
		expect(calls[0]!.args).not.toContain('-J');
		expect(calls[0]!.args.join(' ')).not.toContain('ProxyCommand');
		await remote.close();
	});

	test('sshHost is the destination ssh is given, for the commands and the closing of the connection', async () => {
		const {config, calls, remote} = await remoteWith(raw => {
			raw.masters[1].sshHost = 'cp-2.Example_alias';
		});
		await remote.run(config.masters[1]!, 'true', {step: 'test'});
		await remote.run(config.masters[0]!, 'true', {step: 'test'});
		expect(calls[0]!.args.at(-2)).toBe('cp-2.Example_alias');
		expect(calls[0]!.args).not.toContain('172.24.8.72');
		expect(calls[1]!.args.at(-2)).toBe('172.24.8.71');
		await remote.close();
		expect(calls.find(call => call.args.includes('-O') && call.host === 'k8smaster02')?.args.at(-1)).toBe('cp-2.Example_alias');
	});

	test('through a bastion both hops check host keys against the same known_hosts, with the same key', async () => {
		const {config, calls, remote} = await remoteWith((raw, dir) => {
			writeConfig(dir, 'a key', 'id');
			raw.ssh = {knownHostsFile: './known hosts 100%', identityFile: './id', bastion: 'jump@bastion.example.com:2222'};
		});
		await remote.run(config.masters[0]!, 'true', {step: 'test'});
		const args = calls[0]!.args;
		expect(args).not.toContain('-J');
		const proxy = args.find(arg => arg.startsWith('ProxyCommand='))!.slice('ProxyCommand='.length);
		// As ssh runs it: %h and %p expanded, %% made %, then read by a shell.
		const expanded = proxy.replaceAll('%h', '172.24.8.71').replaceAll('%p', '22').replaceAll('%%', '%');
		const argv = execFileSync('sh', ['-c', `printf '%s\\n' ${expanded.replace(/^ssh /, '')}`], {encoding: 'utf8'}).trimEnd().split('\n');
		// ssh expands % in these paths (%% is one %), and splits the known_hosts setting at spaces unless quoted.
		const knownHosts = path.join(path.dirname(config.source), 'known hosts 100%%');
		for (const hop of [argv, args]) {
			expect(hop).toContain('StrictHostKeyChecking=yes');
			expect(hop).toContain('BatchMode=yes');
			expect(hop).toContain(`UserKnownHostsFile="${knownHosts}"`);
			expect(hop.join(' ')).toContain(`IdentityFile=${path.join(path.dirname(config.source), 'id')} -o IdentitiesOnly=yes`);
		}

		expect(argv.join(' ')).toContain('-p 2222 -l jump -W 172.24.8.71:22 bastion.example.com');
		expect(argv.join(' ')).not.toContain('ControlMaster');
		await remote.close();
	});

	test('accept-new applies to the bastion too, and only when asked', async () => {
		const {config, calls, remote} = await remoteWith(raw => {
			raw.ssh = {hostKeys: 'accept-new', bastion: 'bastion'};
		});
		await remote.run(config.masters[0]!, 'true', {step: 'test'});
		const proxy = calls[0]!.args.find(arg => arg.startsWith('ProxyCommand='))!;
		expect(proxy).toContain('StrictHostKeyChecking=accept-new');
		expect(proxy).toMatch(/-W %h:%p bastion$/);
		expect(proxy).not.toMatch(/ -l | -p /);
		await remote.close();
	});

	test('a failure on the bastion is told apart from one on the master, each with its fix', async () => {
		const {config} = await remoteWith(raw => {
			raw.ssh = {bastion: 'jump@bastion.example.com:2222'};
		});
		const master = config.masters[2]!;
		const bastionFailures = [
			['ssh: connect to host bastion.example.com port 2222: Connection refused\r\nkex_exchange_identification: Connection closed by remote host', /the bastion bastion\.example\.com is not reachable on port 2222: check ssh\.bastion/],
			['ssh: Could not resolve hostname bastion.example.com: Name or service not known', /the bastion bastion\.example\.com is not reachable/],
			// A Host alias whose HostName ssh connects to: still the bastion, the only hop that connects.
			['ssh: connect to host 10.9.8.7 port 2222: Connection timed out\r\nConnection closed by UNKNOWN port 65535', /the bastion bastion\.example\.com is not reachable on port 2222/],
			['No ED25519 host key is known for [bastion.example.com]:2222 and you have requested strict checking.\r\nHost key verification failed.', /the bastion bastion\.example\.com is not in known_hosts: .*ssh-keyscan -p 2222 bastion\.example\.com/],
			['Host key for [bastion.example.com]:2222 has changed\n@@@ WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED! @@@', /host key of the bastion bastion\.example\.com differs.*-R '\[bastion\.example\.com\]:2222'/],
			['jump@bastion.example.com: Permission denied (publickey).', /could not log in as jump@bastion\.example\.com \(the bastion\)/],
		] as const;
		for (const [stderr, fix] of bastionFailures) {
			expect(failedHop(stderr, config), stderr).toBe('bastion');
			expect(diagnoseSsh(stderr, config, master)).toMatch(fix);
		}

		const masterFailures = [
			['No ED25519 host key is known for 172.24.8.73 and you have requested strict checking.\r\nHost key verification failed.', /^172\.24\.8\.73 is not in known_hosts: .*run on the bastion/],
			['172.24.8.73: Permission denied (publickey).', /could not log in to 172\.24\.8\.73:/],
			['channel 0: open failed: connect failed: No route to host\r\nstdio forwarding failed\r\nConnection closed by UNKNOWN port 65535', /the bastion bastion\.example\.com could not reach k8smaster03/],
		] as const;
		for (const [stderr, fix] of masterFailures) {
			expect(failedHop(stderr, config), stderr).toBe('master');
			expect(diagnoseSsh(stderr, config, master)).toMatch(fix);
		}
	});

	test('an apiserver is reached over a socket forwarded through its master\'s shared connection, opened first when it is down', async () => {
		const {config, calls, remote} = await remoteWith(raw => {
			raw.ssh = {bastion: 'bastion'};
		}, spec => (spec.args.includes('check') ? 255 : 0));
		const seen: Array<{ip: string; port: number; via?: string}> = [];
		const answer = async (ip: string, port: number, via?: string): Promise<HealthAnswer> => {
			seen.push({ip, port, via});
			return {ok: true, status: 200, body: 'ok'};
		};

		const {probe, api} = throughSsh(remote, () => config.masters, async (ip, port, _path, _tls, _timeout, via) => answer(ip, port, via), async (ip, port, _request, _tls, _timeout, via) => answer(ip, port, via));
		const tls = {ca: '', cert: '', key: ''};
		await probe('172.24.8.72', 6443, '/readyz', tls);
		await api('172.24.8.72', 6443, {method: 'GET', path: '/api'}, tls);
		expect(calls.map(call => call.args.includes('-O') ? call.args[call.args.indexOf('-O') + 1] : call.args.at(-1))).toEqual(['check', 'sh -c true', 'forward']);
		const forward = calls[2]!.args;
		expect(forward.at(-1)).toBe('172.24.8.72');
		const socket = forward[forward.indexOf('-L') + 1]!.replace(/:172\.24\.8\.72:6443$/, '');
		expect(socket).toMatch(/^\/tmp\/k8smi-ssh-\d+-\d+\/api-\d+$/);
		expect(seen).toEqual([{ip: '172.24.8.72', port: 6443, via: socket}, {ip: '172.24.8.72', port: 6443, via: socket}]);
		await remote.close();
	});

	test('a forward that could not be made is tried again by the next call', async () => {
		let masterUp = false;
		const {config, calls, remote} = await remoteWith(raw => {
			raw.ssh = {bastion: 'bastion'};
		}, spec => (masterUp || spec.args.includes('exit') ? 0 : 255));
		const {probe} = throughSsh(remote, () => config.masters, async () => ({ok: true, status: 200, body: 'ok'}), async () => ({ok: false, status: 0, body: ''}));
		const tls = {ca: '', cert: '', key: ''};
		expect(await probe('172.24.8.71', 6443, '/readyz', tls)).toMatchObject({ok: false, error: expect.stringMatching(/^no ssh connection to k8smaster01/)});
		masterUp = true;
		expect((await probe('172.24.8.71', 6443, '/readyz', tls)).ok).toBe(true);
		expect(calls.filter(call => call.args.includes('forward'))).toHaveLength(1);
		await remote.close();
	});

	test('a forward gone with its connection is made again, once; a target no master has goes through the first', async () => {
		const {config, calls, remote} = await remoteWith(raw => {
			raw.ssh = {bastion: 'bastion'};
		});
		const sockets: string[] = [];
		const {probe} = throughSsh(remote, () => config.masters.slice(1), async (_ip, _port, _path, _tls, _timeout, via) => {
			sockets.push(via!);
			return sockets.length === 1 ? {ok: false, status: 0, body: '', error: `connect ENOENT ${via}`} : {ok: true, status: 200, body: 'ok'};
		}, async () => ({ok: false, status: 0, body: ''}));
		expect((await probe('172.24.8.70', 6443, '/readyz', {ca: '', cert: '', key: ''})).ok).toBe(true);
		expect(sockets).toHaveLength(2);
		expect(sockets[0]).not.toBe(sockets[1]);
		const forwards = calls.filter(call => call.args.includes('forward'));
		expect(forwards.map(call => call.args.at(-1))).toEqual(['172.24.8.72', '172.24.8.72']);
		expect(forwards[0]!.args.join(' ')).toContain(':172.24.8.70:6443');
		await remote.close();
	});
});
