import {lstatSync, mkdirSync, readdirSync, rmSync} from 'node:fs';
import path from 'node:path';
import type {ResolvedConfig} from '../config/load.js';
import type {Master} from '../config/schema.js';
import {StepError} from '../errors.js';
import type {CommandResult, InputPart, Runner} from '../runner.js';
import {processIsAlive} from '../workspace.js';
import {shellQuote} from './quote.js';

export type RemoteOptions = {step: string; timeoutMs?: number; display?: string; inputParts?: InputPart[]; onInputProgress?: (bytes: number) => void};

/** What the operator should do about an ssh failure (exit 255), named for the host. */
export function diagnoseSsh(stderr: string, config: ResolvedConfig, master: Master): string {
	if (/REMOTE HOST IDENTIFICATION HAS CHANGED|Host key verification failed/.test(stderr)) {
		const port = config.ssh.port === 22 ? '' : ` -p ${config.ssh.port}`;
		const entry = config.ssh.port === 22 ? master.ip : `'[${master.ip}]:${config.ssh.port}'`;
		const knownHosts = config.ssh.knownHostsFile ?? '~/.ssh/known_hosts';
		return /HAS CHANGED/.test(stderr)
			? `the host key of ${master.ip} differs from the one in known_hosts: check that this is really ${master.name} before removing the old key with \`ssh-keygen -f ${knownHosts} -R ${entry}\``
			: `${master.ip} is not in known_hosts: verify its fingerprint and add it (\`ssh-keyscan${port} ${master.ip} >> ${knownHosts}\` after checking), or set ssh.hostKeys: accept-new to trust first use explicitly`;
	}

	if (/Permission denied \(|no supported methods remain|Too many authentication failures/.test(stderr)) {
		return `ssh could not log in as ${config.ssh.user}@${master.ip}: ${config.ssh.identityFile ? `check that ${config.ssh.identityFile} is authorized on the host and, if it has a passphrase, that it is loaded in ssh-agent (ssh-add)` : 'set ssh.identityFile, or load your key with ssh-add'}`;
	}

	if (/timed out|No route to host|Connection refused|Network is unreachable|Connection closed|Broken pipe|timeout/i.test(stderr)) {
		return `${master.name} (${master.ip}) is not reachable on port ${config.ssh.port}: check the host is up and the network path; progress is kept, run apply again to continue`;
	}

	if (/sudo: a password is required|sudo: .*not found/.test(stderr)) {
		return `${config.ssh.user} cannot run sudo without a password on ${master.name}: allow NOPASSWD for it, or connect as root`;
	}

	// ssh's own failures exit 255; when the connection drops under a multiplexed session it may say nothing useful.
	return `${master.name} (${master.ip}) is not reachable over ssh, or the connection dropped (exit 255): check the host and the network path; progress is kept, run apply again to continue`;
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
	/** Per master, whether the first command's answer came back with exit 0: the shared connection is then up. */
	private readonly firstAnswers = new Map<Master, Promise<boolean>>();

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
				sockets = readdirSync(folder);
			} catch {
				return; // another user's, or gone meanwhile
			}

			await Promise.all(sockets.map(async socket => this.runner.run({command: 'ssh', args: ['-S', path.join(folder, socket), '-O', 'exit', 'leftover'], timeoutMs: 5000, display: `ssh -O exit (a connection left by a killed run: ${socket})`})));
			rmSync(folder, {recursive: true, force: true});
		}));
	}

	sshArgs(master: Master): string[] {
		const {ssh} = this.config;
		const args = [
			'-o', 'BatchMode=yes',
			'-o', `StrictHostKeyChecking=${ssh.hostKeys === 'accept-new' ? 'accept-new' : 'yes'}`,
			'-o', 'ControlMaster=auto',
			'-o', `ControlPath=${this.controlDir}/%C`,
			'-o', 'ControlPersist=120',
			'-o', 'ConnectTimeout=10',
			'-o', 'ServerAliveInterval=5',
			'-o', 'ServerAliveCountMax=3',
			'-p', String(ssh.port),
			'-l', ssh.user,
		];
		if (ssh.configFile) {
			args.unshift('-F', ssh.configFile);
		}

		if (ssh.knownHostsFile) {
			args.push('-o', `UserKnownHostsFile=${ssh.knownHostsFile}`);
		}

		if (ssh.identityFile) {
			args.push('-i', ssh.identityFile, '-o', 'IdentitiesOnly=yes');
		}

		return args;
	}

	/** Runs a POSIX sh script on the master (through sudo when configured) and returns its result. */
	async run(master: Master, script: string, options: RemoteOptions): Promise<CommandResult> {
		this.makeControlDir();
		this.used.add(master);
		const wrapped = this.config.ssh.sudo ? `sudo -n sh -c ${shellQuote(script)}` : `sh -c ${shellQuote(script)}`;
		const answer = this.runner.run({
			command: 'ssh',
			args: [...this.sshArgs(master), master.ip, wrapped],
			host: master.name,
			step: options.step,
			timeoutMs: options.timeoutMs ?? this.config.timeouts.commandSeconds * 1000,
			display: `ssh ${master.name} ${options.display ?? script}`,
			inputParts: options.inputParts,
			onInputProgress: options.onInputProgress,
		});
		if (!this.firstAnswers.has(master)) {
			this.firstAnswers.set(master, answer.then(result => result.exitCode === 0, () => false));
		}

		return answer;
	}

	/**
	 * Whether the first command sent to the master succeeded, once it settled: a command sent after
	 * it shares that connection instead of racing it with a second handshake. True when none was sent.
	 */
	async firstCommandSucceeded(master: Master): Promise<boolean> {
		return this.firstAnswers.get(master) ?? true;
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

	/** Closes the multiplexed connections and removes their sockets. */
	async close(): Promise<void> {
		await Promise.all([...this.used].map(async master => this.runner.run({
			command: 'ssh', args: [...this.sshArgs(master), '-O', 'exit', master.ip], host: master.name, timeoutMs: 5000, display: `ssh -O exit ${master.name}`,
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

function lastLine(text: string): string {
	return text.split('\n').map(line => line.trim()).filter(Boolean).at(-1) ?? '';
}
