import {lstatSync, mkdirSync, readdirSync, rmSync} from 'node:fs';
import path from 'node:path';
import type {ResolvedConfig} from '../config/load.js';
import type {Bastion} from '../config/network.js';
import type {Master} from '../config/schema.js';
import {StepError} from '../errors.js';
import type {CommandResult, InputPart, Runner} from '../runner.js';
import {processIsAlive} from '../workspace.js';
import type {Api, HealthAnswer, Probe} from './health.js';
import {shellQuote, shellWords} from './quote.js';

/** outputFile: the command's standard output written into this new 0600 file (see CommandSpec). */
export type RemoteOptions = {step: string; timeoutMs?: number; display?: string; inputParts?: InputPart[]; onInputProgress?: (bytes: number) => void; outputFile?: string};

/** The name ssh is given for the master: its sshHost, so that the operator's `Host` blocks apply, else its IP. */
export function sshDestination(master: Master): string {
	return master.sshHost ?? master.ip;
}

/** Who ssh logs in as where, for the views: the user and the jump host only when the config names them. */
export function sshLogin(config: ResolvedConfig, master: Master): string {
	const user = config.ssh.user === undefined ? '' : `${config.ssh.user}@`;
	return `${user}${sshDestination(master)}${config.bastion ? ` through the bastion ${config.bastion.host}` : ''}`;
}

/** The two hops of a connection through a bastion; without one, every failure is the master's. */
export type SshHop = 'bastion' | 'master';

/**
 * Which hop an ssh failure (exit 255) happened on. The ssh that reaches the bastion (the ProxyCommand)
 * writes to the same stderr. Only it opens a TCP connection or resolves a name (the master's ssh talks
 * through it), and it names the bastion in its other failures (host key known for H, user@H: Permission
 * denied); the master's ssh then only reports the lost proxy.
 */
export function failedHop(stderr: string, config: ResolvedConfig): SshHop {
	const host = config.bastion?.host;
	if (host === undefined) {
		return 'master';
	}

	const naming = new RegExp(`(?:^|[\\s@\\[])${host.replaceAll('.', '\\.')}(?:[\\s:\\]]|$)`);
	return stderr.split('\n').some(line => /^ssh: (?:connect to host|Could not resolve hostname) /.test(line.trim())
		|| (naming.test(line) && /host key|Host key|Permission denied|no supported methods remain|Too many authentication failures/.test(line)))
		? 'bastion'
		: 'master';
}

/** What the operator should do about an ssh failure (exit 255), named for the hop that failed. */
export function diagnoseSsh(stderr: string, config: ResolvedConfig, master: Master): string {
	const {bastion} = config;
	const onBastion = bastion !== undefined && failedHop(stderr, config) === 'bastion';
	const host = onBastion ? bastion.host : sshDestination(master);
	const port = onBastion ? bastion.port : config.ssh.port;
	const user = onBastion ? bastion.user : config.ssh.user;
	const who = onBastion ? `the bastion ${bastion.host}` : master.sshHost === undefined ? `${master.name} (${master.ip})` : `${master.name} (${master.sshHost})`;
	if (/REMOTE HOST IDENTIFICATION HAS CHANGED|Host key verification failed/.test(stderr)) {
		const portFlag = port === undefined || port === 22 ? '' : ` -p ${port}`;
		const entry = port === undefined || port === 22 ? host : `'[${host}]:${port}'`;
		const knownHosts = config.ssh.knownHostsFile ?? '~/.ssh/known_hosts';
		// A host key belongs to the name ssh was given: the master's is named so.
		const keyOwner = onBastion ? who : host;
		return /HAS CHANGED/.test(stderr)
			? `the host key of ${keyOwner} differs from the one in known_hosts: check that this is really ${onBastion ? 'your bastion' : master.name} before removing the old key with \`ssh-keygen -f ${knownHosts} -R ${entry}\``
			: `${keyOwner} is not in known_hosts: verify its fingerprint and add it (${onBastion || !bastion
				? `\`ssh-keyscan${portFlag} ${host} >> ${knownHosts}\` after checking`
				: `\`ssh-keyscan${portFlag} ${host}\` run on the bastion, which reaches the masters, its output checked and added to ${knownHosts} here`}), or set ssh.hostKeys: accept-new to trust first use explicitly`;
	}

	if (/Permission denied \(|no supported methods remain|Too many authentication failures/.test(stderr)) {
		const login = user === undefined ? `to ${host}` : `as ${user}@${host}`;
		return `ssh could not log in ${login}${onBastion ? ' (the bastion)' : ''}: ${config.ssh.identityFile ? `check that ${config.ssh.identityFile} is authorized on the host and, if it has a passphrase, that it is loaded in ssh-agent (ssh-add)` : 'set ssh.identityFile, or load your key with ssh-add'}`;
	}

	if (onBastion) {
		return `the bastion ${bastion.host} is not reachable${port === undefined ? '' : ` on port ${port}`}: check ssh.bastion, that the host is up and that this workstation may reach it; progress is kept, run apply again to continue`;
	}

	if (bastion && /open failed|stdio forwarding failed/.test(stderr)) {
		return `the bastion ${bastion.host} could not reach ${who}${port === undefined ? '' : ` on port ${port}`}: check the host is up and that the bastion may connect to it (firewall, AllowTcpForwarding on the bastion); progress is kept, run apply again to continue`;
	}

	if (/timed out|No route to host|Connection refused|Network is unreachable|Connection closed|Broken pipe|timeout/i.test(stderr)) {
		return `${who} is not reachable${port === undefined ? '' : ` on port ${port}`}${bastion ? ` from the bastion ${bastion.host}` : ''}: check the host is up and the network path; progress is kept, run apply again to continue`;
	}

	if (/sudo: a password is required|sudo: .*not found/.test(stderr)) {
		return `${config.ssh.user ?? 'the ssh user'} cannot run sudo without a password on ${master.name}: allow NOPASSWD for it, or connect as root`;
	}

	// ssh's own failures exit 255; when the connection drops under a multiplexed session it may say nothing useful.
	return `${who} is not reachable over ssh${bastion ? ` through the bastion ${bastion.host}` : ''}, or the connection dropped (exit 255): check the host and the network path; progress is kept, run apply again to continue`;
}

/** What to do about a command that ran on the master and failed there, when its output says. */
function diagnoseRemote(output: string, master: Master): string | undefined {
	if (/No space left on device/.test(output)) {
		return `${master.name} ran out of disk space (df -h there): free some and run apply again; the partly written file was removed`;
	}

	if (/Read-only file system/.test(output)) {
		return `the target file system on ${master.name} is read-only: remount it read-write or choose other paths`;
	}

	return undefined;
}

/**
 * Remote execution over the system's own ssh: the operator's ssh config, agent and known_hosts
 * apply, host keys are always checked, and one multiplexed connection per host carries every command.
 */
export class Remote {
	/** Where the shared connections' sockets go: short, as unix socket names are limited to about 100 bytes, and named for this process. */
	private readonly controlDir = `${controlDirBase}/${controlDirPrefix}${process.pid}-${++remotesMade}`;
	private controlDirMade = false;
	private readonly used = new Set<Master>();
	/** Per master, whether its first command got through (its first output, else its exit 0): the shared connection is then up. */
	private readonly connections = new Map<Master, Promise<boolean>>();
	/** Per master and target, the socket forwarded to it (apiserver calls through a bastion). */
	private readonly forwards = new Map<string, Promise<{socket: string} | {error: string}>>();
	private forwardsMade = 0;

	constructor(private readonly runner: Runner, private readonly config: ResolvedConfig) {}

	/** Made before the first command (building arguments makes nothing); refused unless it is this user's own folder. */
	private makeControlDir(): void {
		if (this.controlDirMade) {
			return;
		}

		mkdirSync(this.controlDir, {recursive: true, mode: 0o700});
		const made = lstatSync(this.controlDir);
		if (!made.isDirectory() || made.uid !== process.getuid?.() || (made.mode & 0o077) !== 0) {
			throw new Error(`${this.controlDir} is not a private folder of this user: remove it (it holds ssh's connection sockets)`);
		}

		this.controlDirMade = true;
	}

	/**
	 * The shared connections a killed run left (ControlPersist keeps them for two minutes, with whatever
	 * sessions still run in them): asked to exit, then their folders removed, so that nothing of that
	 * run still works on a master beside this one.
	 */
	async closeLeftovers(): Promise<void> {
		const leftovers = readdirSync(controlDirBase).filter(name => {
			const pid = Number(new RegExp(`^${controlDirPrefix}(\\d+)-`).exec(name)?.[1]);
			return pid > 0 && pid !== process.pid && !processIsAlive(pid);
		});
		await Promise.all(leftovers.map(async name => {
			const folder = path.join(controlDirBase, name);
			let sockets: string[] = [];
			try {
				// Forwarded apiserver sockets go with their connection; only the connections' own are asked to exit.
				sockets = readdirSync(folder).filter(socket => !socket.startsWith(forwardPrefix));
			} catch {
				return; // another user's, or gone meanwhile
			}

			await Promise.all(sockets.map(async socket => this.runner.run({command: 'ssh', args: ['-S', path.join(folder, socket), '-O', 'exit', 'leftover'], timeoutMs: 5000, display: `ssh -O exit (a connection left by a killed run: ${socket})`})));
			rmSync(folder, {recursive: true, force: true});
		}));
	}

	sshArgs(): string[] {
		const {ssh, bastion} = this.config;
		const args = [
			...hopOptions(this.config),
			'-o', 'ControlMaster=auto',
			'-o', `ControlPath=${this.controlDir}/%C`,
			'-o', 'ControlPersist=120',
			'-o', 'ServerAliveInterval=5',
			'-o', 'ServerAliveCountMax=3',
			// OpenSSH's default ciphers, AES-GCM first: with AES-NI (every x86_64 server) they cost less CPU
			// than chacha20 on both ends for the binaries' hundreds of MB (tried on the lab: 2.2 s against 2.7 s for 3 × 120 MB).
			'-o', 'Ciphers=aes128-gcm@openssh.com,aes256-gcm@openssh.com,chacha20-poly1305@openssh.com,aes128-ctr,aes192-ctr,aes256-ctr',
			...ssh.port === undefined ? [] : ['-p', String(ssh.port)],
			...ssh.user === undefined ? [] : ['-l', ssh.user],
		];
		if (bastion) {
			args.push('-o', `ProxyCommand=${proxyCommand(this.config, bastion)}`);
		}

		return args;
	}

	/** Runs a POSIX sh script on the master (through sudo when configured) and returns its result. */
	async run(master: Master, script: string, options: RemoteOptions): Promise<CommandResult> {
		this.makeControlDir();
		this.used.add(master);
		const wrapped = this.config.ssh.sudo ? `sudo -n sh -c ${shellQuote(script)}` : `sh -c ${shellQuote(script)}`;
		const first = !this.connections.has(master);
		let connected: (up: boolean) => void = () => undefined;
		if (first) {
			this.connections.set(master, new Promise(resolve => {
				connected = resolve;
			}));
		}

		const answer = this.runner.run({
			command: 'ssh',
			args: [...this.sshArgs(), sshDestination(master), wrapped],
			host: master.name,
			step: options.step,
			timeoutMs: options.timeoutMs ?? this.config.timeouts.commandSeconds * 1000,
			display: `ssh ${master.name} ${options.display ?? script}`,
			inputParts: options.inputParts,
			onInputProgress: options.onInputProgress,
			outputFile: options.outputFile,
			// The first command's first output: its connection is up, and shared from then on.
			onOutput: first ? () => connected(true) : undefined,
		}).then(async result => (result.exitCode === 255 && this.config.bastion ? {...result, stderr: `${result.stderr.trimEnd()}\n${await this.bastionSays(this.config.bastion)}`} : result));
		if (first) {
			answer.then(result => connected(result.exitCode === 0), () => connected(false));
		}

		return answer;
	}

	/**
	 * What the bastion alone answers, when a connection through it failed: with ControlPersist, ssh
	 * sends its ProxyCommand's stderr to /dev/null, so the failure of the first hop (its host key, the
	 * login, no route) is not in what the master's ssh reports. Empty when the bastion answers.
	 */
	private async bastionSays(bastion: Bastion): Promise<string> {
		const result = await this.runner.run({command: 'ssh', args: [...bastionOptions(this.config, bastion), bastion.host, 'true'], host: bastion.host, timeoutMs: 15_000, display: `ssh ${bastion.host} true (the bastion alone, after a failed connection through it)`});
		return result.exitCode === 0 ? '' : result.stderr.trim();
	}

	/**
	 * Whether the first command sent to the master got through: true once it writes its first output
	 * (while it still runs), else whether it succeeded once it settled. A command sent after that
	 * shares its connection instead of racing it with a second handshake. True when none was sent.
	 */
	async connected(master: Master): Promise<boolean> {
		return this.connections.get(master) ?? true;
	}

	/** Like run, but a non-zero exit becomes a StepError naming the host, the command and the fix. */
	async check(master: Master, script: string, options: RemoteOptions): Promise<CommandResult> {
		const result = await this.run(master, script, options);
		if (result.exitCode !== 0) {
			throw this.failure(master, script, options, result);
		}

		return result;
	}

	/** The StepError for a command that failed on (or on the way to) the master. */
	failure(master: Master, script: string, options: RemoteOptions, result: CommandResult): StepError {
		const output = (result.stderr || result.stdout).trim();
		return new StepError({
			step: options.step,
			host: master.name,
			message: result.timedOut ? `timed out: ${options.display ?? script}` : `exit ${result.exitCode}: ${lastLine(output) || options.display || script}`,
			command: this.runner.describe({command: 'ssh', args: [], display: options.display ?? script}),
			output: this.runner.redact(output.slice(-2000)),
			fix: result.exitCode === 255 ? diagnoseSsh(result.stderr, this.config, master) : diagnoseRemote(output, master),
		});
	}

	/**
	 * A unix socket on this workstation that reaches host:port as the master sees it, forwarded over the
	 * master's shared connection (ssh -O forward): with a bastion the workstation has no route to the
	 * apiservers. TLS still runs from here end to end, so the admin key stays on the workstation and the
	 * server certificate is checked as on a direct connection. Made once per target; renewed when asked.
	 */
	async forward(master: Master, host: string, port: number, renew = false): Promise<{socket: string} | {error: string}> {
		const key = `${master.name} ${host}:${port}`;
		let forwarded = this.forwards.get(key);
		if (!forwarded || renew) {
			// A forward that could not be made is not kept: the next call tries again (the master may be back).
			const opening = this.openForward(master, host, port).then(result => {
				if ('error' in result && this.forwards.get(key) === opening) {
					this.forwards.delete(key);
				}

				return result;
			});
			forwarded = opening;
			this.forwards.set(key, opening);
		}

		return forwarded;
	}

	private async openForward(master: Master, host: string, port: number): Promise<{socket: string} | {error: string}> {
		this.makeControlDir();
		const destination = sshDestination(master);
		// The shared connection ends after two idle minutes (ControlPersist), its forwards with it: a first command opens it again.
		const up = await this.runner.run({command: 'ssh', args: [...this.sshArgs(), '-O', 'check', destination], host: master.name, timeoutMs: 5000, display: `ssh -O check ${master.name}`});
		if (up.exitCode !== 0) {
			const opened = await this.run(master, 'true', {step: 'api', display: 'open the shared connection again (apiserver calls go through it)', timeoutMs: 30_000});
			if (opened.exitCode !== 0) {
				return {error: `no ssh connection to ${master.name}: ${lastLine(opened.stderr) || `exit ${opened.exitCode}`}`};
			}
		}

		const socket = path.join(this.controlDir, `${forwardPrefix}${++this.forwardsMade}`);
		const result = await this.runner.run({
			command: 'ssh', args: [...this.sshArgs(), '-O', 'forward', '-L', `${socket}:${host}:${port}`, destination], host: master.name, timeoutMs: 10_000, display: `ssh -O forward ${master.name} to ${host}:${port}`,
		});
		return result.exitCode === 0 ? {socket} : {error: `ssh could not forward ${host}:${port} through ${master.name}: ${lastLine(result.stderr) || `exit ${result.exitCode}`}`};
	}

	/** Closes the multiplexed connections and removes their sockets. */
	async close(): Promise<void> {
		await Promise.all([...this.used].map(async master => this.runner.run({
			command: 'ssh', args: [...this.sshArgs(), '-O', 'exit', sshDestination(master)], host: master.name, timeoutMs: 5000, display: `ssh -O exit ${master.name}`,
		})));
		if (this.controlDirMade) {
			rmSync(this.controlDir, {recursive: true, force: true});
		}
	}
}

// /tmp, not os.tmpdir(): macOS's long temporary folder would pass the 104-byte socket limit.
const controlDirBase = '/tmp';
let remotesMade = 0;
const controlDirPrefix = 'k8smi-ssh-';
const forwardPrefix = 'api-';

/**
 * probe and api for a workstation without a route to the masters (a bastion): each call goes over a
 * socket forwarded through a master's ssh connection, the master's own for its address, else (the
 * controlPlaneEndpoint) the first of `carriers` that forwards. Forwarding rather than curl on a master:
 * the admin key never leaves the workstation, the answers are the same objects as on a direct call,
 * and a forward is made once per target, then costs nothing per call.
 */
export function throughSsh(remote: Remote, carriers: () => Master[], probe: Probe, api: Api): {probe: Probe; api: Api} {
	async function over(ip: string, port: number, call: (socket: string) => Promise<HealthAnswer>): Promise<HealthAnswer> {
		const own = carriers().filter(master => master.ip === ip);
		let problem = `no master left to reach ${ip}:${port} through`;
		for (const master of own.length > 0 ? own : carriers()) {
			const forwarded = await remote.forward(master, ip, port);
			if ('error' in forwarded) {
				problem = forwarded.error;
				continue;
			}

			const answer = await call(forwarded.socket);
			// Nothing listens on the socket once the shared connection ended (idle, or cut): forwarded again, once.
			if (!answer.error?.includes(forwarded.socket)) {
				return answer;
			}

			const again = await remote.forward(master, ip, port, true);
			return 'error' in again ? {ok: false, status: 0, body: '', error: again.error} : call(again.socket);
		}

		return {ok: false, status: 0, body: '', error: problem};
	}

	return {
		probe: async (ip, port, pathName, tls, timeoutMs) => over(ip, port, async socket => probe(ip, port, pathName, tls, timeoutMs, socket)),
		api: async (ip, port, request, tls, timeoutMs) => over(ip, port, async socket => api(ip, port, request, tls, timeoutMs, socket)),
	};
}

/**
 * What both hops are given: batch mode, the host key checking, known_hosts and identity of the config.
 * The bastion hop needs them passed again, as options on ssh's command line apply to the master only.
 */
function hopOptions(config: ResolvedConfig): string[] {
	const {ssh} = config;
	return [
		...ssh.configFile ? ['-F', ssh.configFile] : [],
		'-o', 'BatchMode=yes',
		'-o', `StrictHostKeyChecking=${ssh.hostKeys === 'accept-new' ? 'accept-new' : 'yes'}`,
		'-o', 'ConnectTimeout=10',
		...ssh.knownHostsFile ? ['-o', `UserKnownHostsFile=${quotedWord(literal(ssh.knownHostsFile))}`] : [],
		// IdentityFile rather than -i: ssh skips a -i file whose name, not yet %-expanded, does not exist.
		...ssh.identityFile ? ['-o', `IdentityFile=${quotedWord(literal(ssh.identityFile))}`, '-o', 'IdentitiesOnly=yes'] : [],
	];
}

/** ssh expands %-tokens in these paths: a literal % is written %%. */
function literal(file: string): string {
	return file.replaceAll('%', '%%');
}

/** ssh's reader of -o settings splits at spaces: a path holding one is quoted as it reads quotes. */
function quotedWord(file: string): string {
	return /[\s"'\\]/.test(file) ? `"${file.replaceAll(/["'\\]/g, '\\$&')}"` : file;
}

/**
 * The ssh that carries the connection to the master through the bastion (-W). A ProxyCommand rather
 * than -J: ssh starts -J's jump connection with none of the options of its own command line, so the
 * known_hosts file and key given here would not apply to the bastion. ssh expands %h and %p to the
 * master's address and port; a literal % in a path is written %%.
 */
export function proxyCommand(config: ResolvedConfig, bastion: Bastion): string {
	return `${shellWords(['ssh', ...bastionOptions(config, bastion)]).replaceAll('%', '%%')} -W %h:%p ${shellQuote(bastion.host)}`;
}

function bastionOptions(config: ResolvedConfig, bastion: Bastion): string[] {
	return [
		...hopOptions(config),
		...bastion.port === undefined ? [] : ['-p', String(bastion.port)],
		...bastion.user === undefined ? [] : ['-l', bastion.user],
	];
}

function lastLine(text: string): string {
	return text.split('\n').map(line => line.trim()).filter(Boolean).at(-1) ?? '';
}
