import {existsSync} from 'node:fs';
import path from 'node:path';
import meow from 'meow';
import YAML from 'yaml';
import {loadConfig, resolveConfig, type ResolvedConfig} from './config/load.js';
import {configFromEnvironment, saveImportedEncryptionKey} from './config/from-env.js';
import {ApplyFailed, Engine, StopRequested} from './engine/engine.js';
import {headlessPrompter} from './engine/prompts.js';
import {InputError, isInputError, PromptRefused} from './errors.js';
import {writeFileAtomic} from './files.js';
import {formatCheckGrid, formatCisGrid, formatPlan, formatStatus, type CertificateExpiry, type CheckRow} from './reporters/format.js';
import {readCertificate} from './pki/certs.js';
import {leafNames} from './pki/material.js';
import {jsonReporter, lineReporter} from './reporters/line.js';
import {Runner, stopRunningCommands} from './runner.js';
import {readLocalText} from './safe-read.js';
import {defaultStateDir, StateStore} from './state/store.js';
import {Workspace} from './workspace.js';

const help = `
  Usage
    $ k8s-master-install <command> [options]

  Commands
    init --from-env FILE   Write a cluster config from the tutorial's environment.sh
    render                 Write every local artifact (certificates, configs, units) to --out
    preflight              Check every master (ssh, root, arch, ports, clock, etcd) and print a grid
    plan                   Print what apply would do, per step and per master; touches nothing
    apply                  Install on every master; resumes where an earlier apply stopped
    verify                 Check the installed control plane on every master and print a grid
    cis                    The CIS Kubernetes Benchmark's control-plane checks (1.1-1.4) on every master: PASS / FAIL / SKIP
    status                 Print the recorded progress
    reset                  Stop and remove what this install put on the masters (asks first); keeps the CA and keys

  Options
    --config, -c FILE      Cluster config (default: cluster.yaml)
    --state-dir DIR        Where state, key material and logs are kept (default: ${'$'}XDG_CONFIG_HOME/k8s-master-install-nodejs)
    --out DIR              render: target folder; init: config file to write (default: cluster.yaml)
    --yes, -y              apply: do not ask for confirmation
    --overwrite            apply: overwrite files on the masters that changed since this install wrote them (a backup is kept)
    --rotate NAME          render/apply: issue a certificate again (kubernetes, proxy-client, admin, kube-controller-manager, kube-scheduler, or all); keeps the key pair
    --json                 Events or results as JSON lines
    --verbose              Every command as it runs
    --kube-version V      init: the Kubernetes release (default v1.14.2, the tutorial's)
    --tarball FILE         init: the server tarball (default ./kubernetes-server-linux-amd64.tar.gz)
    --force                init: replace an existing config file
    --remove-local         reset: also delete the state folder (CA, keys, encryption key, state)

  Exit codes: 0 done, 1 failed (progress kept), 2 bad input or a question that needs an option, 130 stopped.
`;

type Output = {out: (line: string) => void; err: (line: string) => void};

const defaultOutput: Output = {
	out: line => process.stdout.write(`${line}\n`),
	err: line => process.stderr.write(`${line}\n`),
};

export async function main(argv: string[], output: Output = defaultOutput): Promise<number> {
	const cli = meow(help, {
		importMeta: import.meta,
		argv,
		autoHelp: false,
		autoVersion: false,
		allowUnknownFlags: false,
		flags: {
			config: {type: 'string', shortFlag: 'c', default: 'cluster.yaml'},
			stateDir: {type: 'string'},
			out: {type: 'string'},
			yes: {type: 'boolean', shortFlag: 'y', default: false},
			overwrite: {type: 'boolean', default: false},
			rotate: {type: 'string', isMultiple: true},
			json: {type: 'boolean', default: false},
			verbose: {type: 'boolean', default: false},
			fromEnv: {type: 'string'},
			kubeVersion: {type: 'string', default: 'v1.14.2'},
			tarball: {type: 'string', default: './kubernetes-server-linux-amd64.tar.gz'},
			force: {type: 'boolean', default: false},
			removeLocal: {type: 'boolean', default: false},
			help: {type: 'boolean', shortFlag: 'h', default: false},
		},
	});
	const [command] = cli.input;
	const {flags} = cli;
	if (flags.help || command === undefined || command === 'help') {
		// No command, in a terminal: the guided UI. Pipes, CI, --yes and --json keep the plain behaviour.
		if (command === undefined && !flags.help && !flags.yes && !flags.json && process.stdin.isTTY && process.stdout.isTTY) {
			try {
				// Ink draws only a final frame when the environment says CI; a person is at this terminal,
				// so the live view is wanted. Ink reads the variables once, when it is first imported.
				delete process.env.CI;
				delete process.env.CONTINUOUS_INTEGRATION;
				const {runInteractive} = await import('./ui/index.js');
				return await runInteractive({configFile: flags.config, stateDir: flags.stateDir ?? defaultStateDir(), stateDirGiven: flags.stateDir !== undefined, rotate: flags.rotate});
			} catch (error) {
				return reportError(error, output);
			}
		}

		output.out(cli.help.trim());
		return command === undefined && !flags.help ? 2 : 0;
	}

	try {
		switch (command) {
			case 'init': {
				return await init(flags, output);
			}

			case 'render': {
				return await render(flags, output);
			}

			case 'plan': {
				const engine = makeEngine(await loadConfig(flags.config), flags, output);
				const plan = await engine.plan();
				output.out(flags.json ? JSON.stringify(plan, null, 2) : formatPlan(plan));
				return 0;
			}

			case 'apply': {
				return await apply(flags, output);
			}

			case 'preflight': {
				return await checksCommand(flags, output, async engine => engine.preflight(), false);
			}

			case 'verify': {
				return await checksCommand(flags, output, async engine => engine.verify(), true);
			}

			case 'cis': {
				const engine = makeEngine(await loadConfig(flags.config), flags, output);
				const results = await engine.cis();
				output.out(flags.json ? JSON.stringify(Object.fromEntries(results), null, 2) : formatCisGrid(results).join('\n'));
				// A failed check, or a master that could not be read, is a non-zero exit.
				return [...results.values()].every(value => Array.isArray(value) && value.every(result => result.level !== 'fail')) ? 0 : 1;
			}

			case 'reset': {
				return await reset(flags, output);
			}

			case 'status': {
				const config = await loadConfig(flags.config);
				const workspace = new Workspace(flags.stateDir ?? defaultStateDir(), config.name);
				const state = new StateStore(workspace.root, config.name);
				output.out(flags.json ? JSON.stringify(state.snapshot, null, 2) : formatStatus(state.snapshot, state.path, await certificateExpiries(workspace, config)));
				return 0;
			}

			default: {
				throw new InputError('command', command, 'is not a command', 'use one of init, render, preflight, plan, apply, verify, cis, status, reset (see --help)');
			}
		}
	} catch (error) {
		return reportError(error, output);
	}
}

type Flags = {config: string; stateDir?: string; out?: string; yes: boolean; overwrite: boolean; rotate?: string[]; json: boolean; verbose: boolean; fromEnv?: string; kubeVersion: string; tarball: string; force: boolean; removeLocal: boolean};

function reportError(error: unknown, output: Output): number {
	if (isInputError(error)) {
		output.err(`error: ${error.message}`);
		return 2;
	}

	if (error instanceof PromptRefused) {
		output.err(`error: ${error.message}${error.option ? ` Pass ${error.option} to answer it.` : ''}`);
		return 2;
	}

	if (error instanceof StopRequested) {
		output.err('Stopped. Progress is saved: run the same apply again to resume.');
		return 130;
	}

	if (error instanceof ApplyFailed) {
		output.err(error.failures[0]?.step === 'reset'
			? `error: ${error.message}. What was removed is recorded: run reset again once they are reachable.`
			: `error: ${error.message}. Progress is saved: fix the cause and run apply again to resume.`);
		return 1;
	}

	output.err(`error: ${error instanceof Error ? error.message : String(error)}`);
	if (process.env.K8SMI_DEBUG && error instanceof Error) {
		output.err(error.stack ?? '');
	}

	return 1;
}

async function certificateExpiries(workspace: Workspace, config: ResolvedConfig): Promise<CertificateExpiry[]> {
	const files: Array<[string, string, string]> = [
		['ca', config.ca?.certFile ?? workspace.pki('ca.pem'), config.ca ? 'ca.certFile' : '--state-dir'],
		...leafNames.map((name): [string, string, string] => [name, workspace.pki(`${name}.pem`), '--state-dir']),
	];
	return Promise.all(files.filter(([, file]) => existsSync(file)).map(async ([name, file, field]) => ({
		name,
		notAfter: readCertificate(await readLocalText(file, {field, kind: 'pem', fix: 'restore the certificate from your backup'})).notAfter,
	})));
}

function makeEngine(config: ResolvedConfig, flags: Flags, output: Output, runnerOptions: {logFile?: string} = {}): Engine {
	const workspace = new Workspace(flags.stateDir ?? defaultStateDir(), config.name);
	const runner = new Runner({logFile: runnerOptions.logFile, defaultTimeoutMs: config.timeouts.commandSeconds * 1000});
	const rotate = flags.rotate ?? [];
	const unknown = rotate.filter(name => name !== 'all' && !(leafNames as readonly string[]).includes(name));
	if (unknown.length > 0) {
		throw new InputError('--rotate', unknown.join(','), 'names no certificate', `use ${leafNames.join(', ')} or all`);
	}

	const engine = new Engine({config, workspace, runner, prompter: headlessPrompter({yes: flags.yes, overwrite: flags.overwrite}), rotate});
	for (const warning of config.warnings) {
		output.err(`warning: ${warning}`);
	}

	return engine;
}

async function render(flags: Flags, output: Output): Promise<number> {
	if (!flags.out) {
		throw new InputError('--out', '(not set)', 'is required for render', 'pass --out DIR, the folder to write the artifacts to');
	}

	const config = await loadConfig(flags.config);
	const engine = makeEngine(config, flags, output);
	engine.subscribe(lineReporter(output.out));
	const release = new Workspace(flags.stateDir ?? defaultStateDir(), config.name).lock();
	let context;
	try {
		context = await engine.prepare(true);
	} finally {
		release();
	}

	for (const artifact of context.artifacts) {
		writeFileAtomic(path.join(flags.out, artifact.name), artifact.content, artifact.mode);
	}

	output.out(`${context.artifacts.length} files written to ${path.resolve(flags.out)} (private keys and the encryption config mode 0600)`);
	return 0;
}

async function apply(flags: Flags, output: Output): Promise<number> {
	const config = await loadConfig(flags.config);
	const workspace = new Workspace(flags.stateDir ?? defaultStateDir(), config.name);
	const logFile = path.join(workspace.logsDir, `apply-${new Date().toISOString().replaceAll(/[:.]/g, '-')}.jsonl`);
	const engine = makeEngine(config, flags, output, {logFile});
	engine.subscribe(flags.json ? jsonReporter(output.out) : lineReporter(output.out, {verbose: flags.verbose}));
	let interrupts = 0;
	const onSignal = () => {
		interrupts++;
		if (interrupts > 1) {
			stopRunningCommands();
			process.exit(130);
		}

		output.err('Stopping after the current action (Ctrl-C again to quit at once; progress is saved either way)…');
		engine.requestStop();
	};

	process.on('SIGINT', onSignal);
	process.on('SIGTERM', onSignal);
	try {
		await engine.apply({confirm: true});
		output.err(`log: ${logFile}`);
		return 0;
	} catch (error) {
		// Bad input is refused before any host is touched: the message alone says it all.
		if (!isInputError(error)) {
			output.err(`log: ${logFile}`);
		}

		throw error;
	} finally {
		process.off('SIGINT', onSignal);
		process.off('SIGTERM', onSignal);
	}
}

/** preflight and verify: run the checks, print them as a grid (or JSON); exit 1 when one failed. */
async function checksCommand(flags: Flags, output: Output, run: (engine: Engine) => Promise<boolean>, details: boolean): Promise<number> {
	const engine = makeEngine(await loadConfig(flags.config), flags, output);
	const checks: CheckRow[] = [];
	engine.subscribe(event => {
		if (event.type === 'check') {
			checks.push(event);
		}
	});
	const passed = await run(engine);
	output.out(flags.json ? JSON.stringify(checks, null, 2) : formatCheckGrid(checks, {details}).join('\n'));
	return passed ? 0 : 1;
}

/** On a terminal without --yes, reset asks for the cluster's name to be typed; otherwise --yes is needed. */
async function reset(flags: Flags, output: Output): Promise<number> {
	const config = await loadConfig(flags.config);
	const engine = makeEngine(config, flags, output);
	engine.subscribe(flags.json ? jsonReporter(output.out) : lineReporter(output.out, {verbose: flags.verbose}));
	const typed = !flags.yes && process.stdin.isTTY === true && process.stdout.isTTY === true;
	if (typed) {
		const readline = await import('node:readline/promises');
		const terminal = readline.createInterface({input: process.stdin, output: process.stdout});
		const answer = await terminal.question(`This stops the control plane on ${config.masters.map(master => master.name).join(', ')} and removes this install's files there${flags.removeLocal ? ', then deletes the CA, keys and state here' : ''}.\nType the cluster name (${config.name}) to go on: `);
		terminal.close();
		if (answer.trim() !== config.name) {
			throw new PromptRefused('reset not confirmed');
		}
	}

	await engine.reset({confirm: !typed, removeLocal: flags.removeLocal});
	return 0;
}

async function init(flags: Flags, output: Output): Promise<number> {
	if (!flags.fromEnv) {
		throw new InputError('--from-env', '(not set)', 'is required for init without the terminal UI', 'pass --from-env environment.sh, or write the config by hand (see README)');
	}

	const target = path.resolve(flags.out ?? 'cluster.yaml');
	if (existsSync(target) && !flags.force) {
		throw new InputError('--out', target, 'already exists', 'choose another --out, or pass --force to replace it');
	}

	const text = await readLocalText(flags.fromEnv, {field: '--from-env', kind: 'environment.sh', fix: 'pass the path of the tutorial\'s environment.sh (a regular file)'});
	const {config, encryptionKey, notes} = configFromEnvironment(text, {version: flags.kubeVersion, tarball: flags.tarball, file: flags.fromEnv});
	// Validate the shape now; the tarball may be fetched later, so missing local files are only noted.
	const keyFile = path.join(path.dirname(target), 'encryption.key');
	resolveConfig({...config, binaries: {tarball: path.resolve(flags.fromEnv)}, encryption: {}}, target);
	if (encryptionKey) {
		saveImportedEncryptionKey(keyFile, encryptionKey);
	}

	writeFileAtomic(target, `# Written by k8s-master-install init from ${flags.fromEnv}\n${YAML.stringify(config)}`, 0o644);
	output.out(`wrote ${target}`);
	for (const note of notes) {
		output.out(`note: ${note}`);
	}

	if (!existsSync(path.resolve(path.dirname(target), flags.tarball))) {
		output.out(`note: ${flags.tarball} does not exist yet: put the release's kubernetes-server-linux-amd64.tar.gz there, or set binaries.url.`);
	}

	return 0;
}
