import {render} from 'ink';
import {InputError} from '../errors.js';
import {leafNames} from '../pki/material.js';
import {shellQuote} from '../remote/quote.js';
import {InstallerApp} from './app.js';
import {defaultEngineFactory, Session, type EngineFactory} from './session.js';
import {themeFromEnv} from './theme.js';

export type InteractiveOptions = {
	/** --config (default cluster.yaml): read, or written by the guided setup when missing. */
	configFile: string;
	/** --state-dir, resolved (defaultStateDir() when not given). */
	stateDir: string;
	/** Whether --state-dir was given, so that the printed resume command repeats it. */
	stateDirGiven?: boolean;
	rotate?: string[];
	/** Tests and embedders: how engines are made (default: real ssh, as `apply` does). */
	createEngine?: EngineFactory;
	env?: Record<string, string | undefined>;
	stdin?: NodeJS.ReadStream;
	stdout?: NodeJS.WriteStream;
	stderr?: NodeJS.WriteStream;
};

const rotatable = [...leafNames, 'all'];

/**
 * The guided terminal UI. Mount it only when stdin and stdout are terminals: Ink reads keys in raw
 * mode. Resolves with the exit code (0 done or quit, 1 failed with progress kept, 2 bad input,
 * 130 stopped).
 */
export async function runInteractive(options: InteractiveOptions): Promise<number> {
	const unknown = (options.rotate ?? []).filter(name => !rotatable.includes(name));
	if (unknown.length > 0) {
		throw new InputError('--rotate', unknown.join(','), 'names no certificate', `use ${rotatable.join(', ')}`);
	}

	const session = new Session({
		configFile: options.configFile,
		stateDir: options.stateDir,
		rotate: options.rotate,
		createEngine: options.createEngine ?? defaultEngineFactory(options.stateDir),
		resumeCommand: `k8s-master-install apply --config ${shellQuote(options.configFile)}${options.stateDirGiven ? ` --state-dir ${shellQuote(options.stateDir)}` : ''}`,
	});
	let code = 0;
	let force = false;
	const stdout = options.stdout ?? process.stdout;
	// bin/ drew the first screen before the modules loaded: Ink draws from that line on.
	if ((globalThis as Record<symbol, unknown>)[Symbol.for('k8s-master-install.first-frame')] === true) {
		stdout.write('\u001B[2K');
	}

	const instance = render(
		<InstallerApp
			session={session}
			theme={themeFromEnv(options.env ?? process.env)}
			onExit={(exitCode, forced) => {
				code = exitCode;
				force = forced;
			}}
		/>,
		// Streams not given must be left out: an explicit undefined would replace Ink's process.stdout default.
		{exitOnCtrlC: false, ...(options.stdin ? {stdin: options.stdin} : {}), ...(options.stdout ? {stdout: options.stdout} : {}), ...(options.stderr ? {stderr: options.stderr} : {})},
	);
	// Raw mode swallows Ctrl-C as a key; a SIGTERM (or a SIGINT sent by kill) still stops safely.
	const onSignal = () => session.interrupt('ctrl-c');
	process.on('SIGTERM', onSignal);
	process.on('SIGINT', onSignal);
	try {
		await instance.waitUntilExit();
	} finally {
		process.off('SIGTERM', onSignal);
		process.off('SIGINT', onSignal);
	}

	if (force) {
		// A second Ctrl-C while stopping: do not wait for the command under way.
		process.exit(code);
	}

	return code;
}
