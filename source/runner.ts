import {accessSync, appendFileSync, closeSync, constants, createReadStream, mkdirSync, openSync, readFileSync} from 'node:fs';
import path from 'node:path';
import {Readable} from 'node:stream';
import {execa} from 'execa';

export type CommandSpec = {
	command: string;
	args: readonly string[];
	/** Standard input, streamed part after part (files as they are read), with progress; kept out of logs. */
	inputParts?: InputPart[];
	timeoutMs?: number;
	/** The master the command concerns, for the log and the view. */
	host?: string;
	step?: string;
	/** What the view and the log show instead of the raw arguments (they may be long scripts). */
	display?: string;
	onInputProgress?: (bytesSent: number) => void;
	/**
	 * Standard output goes straight into this new file (large or binary output: an etcd snapshot),
	 * created with mode 0600 before the first byte; an existing file is refused (EEXIST), never
	 * replaced. The result's stdout is then empty: nothing of it reaches memory, a log or a view.
	 */
	outputFile?: string;
	/** Called once, when the command first writes to its standard output. */
	onOutput?: () => void;
};

export type InputPart = {file: string} | {bytes: Buffer};

export type CommandResult = {exitCode: number; stdout: string; stderr: string; durationMs: number; timedOut: boolean; failedToStart?: string};

/** Runs one command for real; tests put a recording executor here instead. */
export type Executor = (spec: CommandSpec) => Promise<CommandResult>;

export type CommandEvent =
	| {type: 'command-start'; id: number; host?: string; step?: string; display: string}
	| {type: 'command-end'; id: number; host?: string; step?: string; display: string; exitCode: number; durationMs: number; timedOut: boolean};

// A block cut short (its END in another stream, or past a tail) is masked to the end of the text.
const privateKeyBlock = /-----BEGIN ([A-Z ]*)PRIVATE KEY-----[\s\S]*?(?:-----END \1PRIVATE KEY-----|$)/g;

/** Commands under way: their own process group keeps the terminal's Ctrl-C from them, so they are stopped here. */
const running = new Set<{kill: (signal?: NodeJS.Signals) => boolean}>();

/** Ends every command under way (the second Ctrl-C); a file being written is discarded by its checksum. */
export function stopRunningCommands(): void {
	for (const subprocess of running) {
		subprocess.kill('SIGTERM');
	}
}

/**
 * util-linux's setpriv, where the workstation has it: each command is started with a parent-death
 * signal, so that a run killed with SIGKILL takes its ssh processes with it instead of leaving them
 * sending to the masters beside the next run (without it, the next run closes their connections).
 */
const setpriv = ['/usr/bin/setpriv', '/bin/setpriv'].find(file => {
	try {
		accessSync(file, constants.X_OK);
		return true;
	} catch {
		return false;
	}
});

function dyingWithThisProcess(command: string, args: readonly string[]): [string, string[]] {
	return setpriv && process.platform === 'linux' ? [setpriv, ['--pdeathsig', 'KILL', '--', command, ...args]] : [command, [...args]];
}

export const execaExecutor: Executor = async spec => {
	const started = performance.now();
	const [command, args] = dyingWithThisProcess(spec.command, spec.args);
	// One file alone is the command's standard input itself: no copy through this process (a tenth of
	// the time of a large upload on a busy workstation); the bytes read so far are its shared offset.
	const [onlyPart] = spec.inputParts ?? [];
	const inputFile = spec.inputParts?.length === 1 && onlyPart && 'file' in onlyPart ? openInput(onlyPart.file) : undefined;
	const outputFile = spec.outputFile === undefined ? undefined : openSync(spec.outputFile, 'wx', 0o600);
	const subprocess = execa(command, args, {
		// Ctrl-C in the terminal means "stop after the action under way": the action must not get it too.
		detached: true,
		// execa hands any descriptor number to spawn as it is; its types name only 0 and 3-9.
		stdin: inputFile === undefined ? (spec.inputParts ? 'pipe' : 'ignore') : inputFile as 0,
		// The file's descriptor itself: the bytes go from the command to the disk, not through this process.
		stdout: outputFile === undefined ? 'pipe' : outputFile as 1,
		timeout: spec.timeoutMs,
		reject: false,
		stripFinalNewline: false,
		maxBuffer: 64 * 1024 * 1024,
	});
	if (spec.onOutput) {
		subprocess.stdout?.once('data', spec.onOutput);
	}

	let progress: NodeJS.Timeout | undefined;
	if (inputFile !== undefined) {
		progress = setInterval(() => {
			const sent = fileOffset(inputFile);
			if (sent !== undefined) {
				spec.onInputProgress?.(sent);
			}
		}, 250);
	} else if (spec.inputParts) {
		let sent = 0;
		const stream = Readable.from(streamParts(spec.inputParts));
		stream.on('data', chunk => {
			sent += chunk.length;
			spec.onInputProgress?.(sent);
		});
		// The reader ends with the command; a broken pipe is reported by the command's exit status.
		stream.on('error', () => subprocess.kill());
		subprocess.stdin?.on('error', () => stream.destroy());
		stream.pipe(subprocess.stdin!);
	}

	running.add(subprocess);
	const result = await subprocess.finally(() => {
		running.delete(subprocess);
		clearInterval(progress);
		if (outputFile !== undefined) {
			closeSync(outputFile);
		}

		if (inputFile !== undefined) {
			const sent = fileOffset(inputFile);
			if (sent !== undefined) {
				spec.onInputProgress?.(sent);
			}

			closeSync(inputFile);
		}
	});
	return {
		exitCode: result.exitCode ?? (result.signal ? 128 : 1),
		stdout: String(result.stdout ?? ''),
		stderr: String(result.stderr ?? ''),
		durationMs: Math.round(performance.now() - started),
		timedOut: result.timedOut === true,
		failedToStart: result.failed && result.exitCode === undefined && !result.timedOut && !result.signal ? result.shortMessage : undefined,
	};
};

/** Undefined when it cannot be opened: the stream then fails as any read does, with the command's exit. */
function openInput(file: string): number | undefined {
	try {
		return openSync(file, 'r');
	} catch {
		return undefined;
	}
}

/** How far the command has read an open file (Linux: /proc); undefined where that cannot be told. */
function fileOffset(fd: number): number | undefined {
	try {
		const position = /^pos:\s*(\d+)/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'));
		return position ? Number(position[1]) : undefined;
	} catch {
		return undefined;
	}
}

async function * streamParts(parts: InputPart[]): AsyncGenerator<Buffer> {
	for (const part of parts) {
		if ('file' in part) {
			// Large reads: fewer chunks through the pipe for the same bytes.
			yield * createReadStream(part.file, {highWaterMark: 1024 * 1024}) as AsyncIterable<Buffer>;
		} else {
			yield part.bytes;
		}
	}
}

export type RunnerOptions = {
	executor?: Executor;
	/** JSON-lines file every command and its outcome are appended to. */
	logFile?: string;
	defaultTimeoutMs?: number;
	onEvent?: (event: CommandEvent) => void;
};

/**
 * The one door to the outside: every ssh, scp, tar, kubectl and etcdctl call passes here, so
 * timeouts, logging, redaction and test recording live in one place.
 */
export class Runner {
	private readonly executor: Executor;
	private readonly logFile: string | undefined;
	private readonly defaultTimeoutMs: number;
	private readonly secrets = new Set<string>();
	private readonly listeners = new Set<(event: CommandEvent) => void>();
	private nextId = 1;

	constructor(options: RunnerOptions = {}) {
		this.executor = options.executor ?? execaExecutor;
		this.logFile = options.logFile;
		this.defaultTimeoutMs = options.defaultTimeoutMs ?? 120_000;
		if (options.onEvent) {
			this.listeners.add(options.onEvent);
		}

		if (this.logFile) {
			mkdirSync(path.dirname(this.logFile), {recursive: true, mode: 0o700});
		}
	}

	subscribe(listener: (event: CommandEvent) => void): () => void {
		this.listeners.add(listener);
		return () => this.listeners.delete(listener);
	}

	/** Values that must never reach a log or a view (the encryption key, key material). */
	addSecret(value: string): void {
		if (value.length >= 8) {
			this.secrets.add(value);
		}
	}

	redact(text: string): string {
		let result = text.replaceAll(privateKeyBlock, '[private key]');
		for (const secret of this.secrets) {
			result = result.replaceAll(secret, '[secret]');
		}

		return result;
	}

	describe(spec: CommandSpec): string {
		return this.redact(spec.display ?? [spec.command, ...spec.args].join(' '));
	}

	/** Appends one structured entry to the log, redacted. */
	log(entry: Record<string, unknown>): void {
		if (!this.logFile) {
			return;
		}

		appendFileSync(this.logFile, `${this.redact(JSON.stringify({time: new Date().toISOString(), ...entry}))}\n`, {mode: 0o600});
	}

	async run(spec: CommandSpec): Promise<CommandResult> {
		const id = this.nextId++;
		const display = this.describe(spec);
		this.emit({type: 'command-start', id, host: spec.host, step: spec.step, display});
		const result = await this.executor({...spec, timeoutMs: spec.timeoutMs ?? this.defaultTimeoutMs});
		this.log({
			event: 'command',
			host: spec.host,
			step: spec.step,
			command: display,
			exitCode: result.exitCode,
			durationMs: result.durationMs,
			timedOut: result.timedOut,
			stdout: tail(result.stdout),
			stderr: tail(result.stderr),
			failedToStart: result.failedToStart,
		});
		this.emit({type: 'command-end', id, host: spec.host, step: spec.step, display, exitCode: result.exitCode, durationMs: result.durationMs, timedOut: result.timedOut});
		return result;
	}

	/** An HTTPS call made in-process (an apiserver's API): shown and logged like a command; exit 0 for a 2xx answer. */
	async call<T extends {status: number; error?: string}>(spec: {host?: string; step?: string; display: string}, action: () => Promise<T>): Promise<T> {
		const id = this.nextId++;
		const display = this.redact(spec.display);
		this.emit({type: 'command-start', id, host: spec.host, step: spec.step, display});
		const started = performance.now();
		let answer: T | undefined;
		try {
			answer = await action();
			return answer;
		} finally {
			const durationMs = Math.round(performance.now() - started);
			this.log({event: 'api', host: spec.host, step: spec.step, command: display, status: answer?.status, error: answer?.error, durationMs});
			this.emit({type: 'command-end', id, host: spec.host, step: spec.step, display, exitCode: answer && answer.status >= 200 && answer.status < 300 ? 0 : 1, durationMs, timedOut: false});
		}
	}

	private emit(event: CommandEvent): void {
		for (const listener of this.listeners) {
			listener(event);
		}
	}
}

function tail(text: string, limit = 4000): string | undefined {
	if (!text) {
		return undefined;
	}

	return text.length > limit ? `…${text.slice(-limit)}` : text;
}
