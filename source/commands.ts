import {existsSync} from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import {loadConfig, resolveConfig, type ResolvedConfig} from './config/load.js';
import {configFromEnvironment, saveImportedEncryptionKey} from './config/from-env.js';
import {ApplyFailed, Engine, StopRequested} from './engine/engine.js';
import type {PlanView} from './engine/plan.js';
import {headlessPrompter} from './engine/prompts.js';
import * as operations from './operations/index.js';
import type {Operation} from './operations/types.js';
import {removeOldKeyFiles} from './pki/old-keys.js';
import {InputError, isInputError, PromptRefused} from './errors.js';
import {writeFileAtomic} from './files.js';
import {formatCheckGrid, formatCisGrid, formatPlan, formatStatus, type CertificateExpiry, type CheckRow} from './reporters/format.js';
import {planChanges, unreadMasters} from './reporters/diff-format.js';
import {readCertificate} from './pki/certs.js';
import {leafNames} from './pki/material.js';
import {certsCommand} from './certs-command.js';
import {jsonReporter, lineReporter} from './reporters/line.js';
import {formatSnapshots} from './reporters/snapshots.js';
import {refuseExistingOut, refuseLostSnapshot, snapshotStepId} from './steps/snapshot.js';
import {Runner, stopRunningCommands} from './runner.js';
import {readLocalText} from './safe-read.js';
import {defaultStateDir, StateStore} from './state/store.js';
import {Workspace} from './workspace.js';

export type Output = {out: (line: string) => void; err: (line: string) => void};

export type Flags = {config: string; stateDir?: string; out?: string; yes: boolean; overwrite: boolean; rotate?: string[]; forceRemove?: string[]; json: boolean; verbose: boolean; fromEnv?: string; kubeVersion: string; tarball: string; force: boolean; removeLocal: boolean; exitCode?: boolean; newKeys?: boolean; args?: string[]; removeOldKey?: boolean; allowDowngrade?: boolean; noBackup?: boolean};

/**
 * plan --exit-code's answer when apply would change something. terraform plan -detailed-exitcode says
 * 2, but 2 already means bad input here (every command, and scripts rely on it): a pipeline must
 * not take a broken config for drift, so changes get a code of their own.
 */
export const planChangesExitCode = 3;

/** plan --exit-code: 1 when a master could not be read (could not tell: never taken for "no drift"), 3 with changes, else 0. */
export function planExitCode(plan: Pick<PlanView, 'changes'>): number {
	if (unreadMasters(plan).length > 0) {
		return 1;
	}

	return planChanges(plan) ? planChangesExitCode : 0;
}

/** One command of the CLI, with its errors reported as lines and an exit code. */
export async function runCommand(command: string, flags: Flags, output: Output): Promise<number> {
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
				const unread = unreadMasters(plan);
				if (unread.length > 0) {
					output.err(`warning: plan could not read ${unread.join(', ')}: what apply would change there is not known`);
				}

				return flags.exitCode ? planExitCode(plan) : 0;
			}

			case 'apply': {
				return await apply(flags, output);
			}

			case 'rotate-encryption-key': {
				return flags.removeOldKey ? await removeOldKey(flags, output) : await apply(flags, output, undefined, operations.rotateEncryptionKey);
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

			case 'certs': {
				return await certsCommand(flags, output, makeEngine);
			}

			case 'backup': {
				return await backup(flags, output);
			}

			case 'status': {
				const config = await loadConfig(flags.config);
				const workspace = new Workspace(flags.stateDir ?? defaultStateDir(), config.name);
				const state = new StateStore(workspace.root, config.name);
				output.out(flags.json ? JSON.stringify(state.snapshot, null, 2) : [formatStatus(state.snapshot, state.path, await certificateExpiries(workspace, config), new Date(), config.certificates.warnDays), ...formatSnapshots(state.snapshot.snapshots)].join('\n'));
				return 0;
			}

			default: {
				throw new InputError('command', command, 'is not a command', 'use one of init, render, preflight, plan, apply, verify, cis, certs, status, backup, reset, rotate-encryption-key (see --help)');
			}
		}
	} catch (error) {
		return reportError(error, output);
	}
}

export function reportError(error: unknown, output: Output): number {
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

	if (error instanceof ApplyFailed && error.step === snapshotStepId) {
		const fix = error.failures.at(-1)?.fix;
		output.err(`error: ${error.message}. Nothing was changed on the masters${fix ? `. Fix: ${fix}` : ''}.`);
		return 1;
	}

	if (error instanceof ApplyFailed) {
		output.err(error.failures[0]?.step === 'reset'
			? `error: ${error.message}. What was removed is recorded: run reset again once they are reachable.`
			: `error: ${error.message}. Progress is saved: fix the cause and run apply again to resume.${error.wayBack ? `\n${error.wayBack}` : ''}`);
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

/** snapshotFile: where backup (and reset) write their etcd snapshot instead of the state folder (--out). */
function makeEngine(config: ResolvedConfig, flags: Flags, output: Output, runnerOptions: {logFile?: string} = {}, snapshotFile?: string): Engine {
	const workspace = new Workspace(flags.stateDir ?? defaultStateDir(), config.name);
	const runner = new Runner({logFile: runnerOptions.logFile, defaultTimeoutMs: config.timeouts.commandSeconds * 1000});
	const rotate = flags.rotate ?? [];
	const unknown = rotate.filter(name => name !== 'all' && !(leafNames as readonly string[]).includes(name));
	if (unknown.length > 0) {
		throw new InputError('--rotate', unknown.join(','), 'names no certificate', `use ${leafNames.join(', ')} or all`);
	}

	// --new-keys: the named leaves get new key pairs with their certificates (certs renew --new-keys).
	const newKeys = flags.newKeys ? leafNames.filter(name => rotate.includes(name) || rotate.includes('all')) : undefined;
	const engine = new Engine({config, workspace, runner, prompter: headlessPrompter({yes: flags.yes, overwrite: flags.overwrite}), rotate, newKeys, forceRemove: flags.forceRemove, allowDowngrade: flags.allowDowngrade, backup: {skip: flags.noBackup, out: snapshotFile}});
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

/**
 * apply, or another run of the install made already (certs renew, after its preview), or another
 * recorded operation (rotate-encryption-key) run the same way: a log file, Ctrl-C stops after the current action.
 */
export async function apply(flags: Flags, output: Output, made?: {engine: Engine; logFile: string}, operation: Operation = operations.install): Promise<number> {
	let engine: Engine;
	let logFile: string;
	if (made) {
		({engine, logFile} = made);
	} else {
		const config = await loadConfig(flags.config);
		const workspace = new Workspace(flags.stateDir ?? defaultStateDir(), config.name);
		logFile = path.join(workspace.logsDir, `${operation.command}-${new Date().toISOString().replaceAll(/[:.]/g, '-')}.jsonl`);
		engine = makeEngine(config, flags, output, {logFile});
	}

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
		await engine.run(operation, {confirm: true});
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
	refuseExistingOut(flags.out);
	const config = await loadConfig(flags.config);
	// Refused before the cluster's name is asked for.
	refuseLostSnapshot(flags.removeLocal, {skip: flags.noBackup, out: flags.out}, new Workspace(flags.stateDir ?? defaultStateDir(), config.name).root);
	const engine = makeEngine(config, flags, output, {}, flags.out);
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

/** An etcd snapshot through the first reachable master, into the state folder's snapshots or --out FILE. */
async function backup(flags: Flags, output: Output): Promise<number> {
	if (flags.noBackup) {
		throw new InputError('--no-backup', 'set', 'leaves backup nothing to do', 'leave --no-backup out (it is for apply and reset)');
	}

	refuseExistingOut(flags.out);
	const config = await loadConfig(flags.config);
	const workspace = new Workspace(flags.stateDir ?? defaultStateDir(), config.name);
	const logFile = path.join(workspace.logsDir, `backup-${new Date().toISOString().replaceAll(/[:.]/g, '-')}.jsonl`);
	const engine = makeEngine(config, flags, output, {logFile}, flags.out);
	engine.subscribe(flags.json ? jsonReporter(output.out) : lineReporter(output.out, {verbose: flags.verbose}));
	// Ctrl-C stops before the copy (or after it): the snapshot's folder on the master is still removed.
	const onSignal = () => {
		output.err('Stopping after the current action; the snapshot is removed from the master…');
		engine.requestStop();
	};

	process.once('SIGINT', onSignal);
	process.once('SIGTERM', onSignal);
	try {
		await engine.backup();
	} catch (error) {
		if (error instanceof StopRequested) {
			output.err('Stopped: no snapshot was kept, and none is left on the master.');
			return 130;
		}

		throw error;
	} finally {
		process.off('SIGINT', onSignal);
		process.off('SIGTERM', onSignal);
		output.err(`log: ${logFile}`);
	}

	return 0;
}

/** rotate-encryption-key --remove-old-key: the old keys' files deleted once the rotation is done on every master. */
async function removeOldKey(flags: Flags, output: Output): Promise<number> {
	const config = await loadConfig(flags.config);
	const workspace = new Workspace(flags.stateDir ?? defaultStateDir(), config.name);
	const release = workspace.lock();
	try {
		const removed = removeOldKeyFiles(workspace, new StateStore(workspace.root, config.name));
		output.out(removed.length > 0 ? `removed ${removed.join(', ')}` : 'the old key files were removed already');
		return 0;
	} finally {
		release();
	}
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
