import {existsSync} from 'node:fs';
import path from 'node:path';
import {configFileSpec, loadConfig, parseConfigText, type ResolvedConfig} from '../config/load.js';
import {ApplyFailed, Engine, StopRequested, type PlanView} from '../engine/engine.js';
import type {EngineEvent, FailureInfo} from '../engine/events.js';
import type {Prompter, PromptRequest} from '../engine/prompts.js';
import {InputError, InputErrors, isInputError, PromptRefused} from '../errors.js';
import {formatDuration} from '../reporters/format.js';
import {shellQuote} from '../remote/quote.js';
import {install, type Operation} from '../operations/index.js';
import {Runner} from '../runner.js';
import {readLocalText} from '../safe-read.js';
import type {RunRecord} from '../state/store.js';
import {Workspace} from '../workspace.js';
import {initialRun, reduceRun, stepTitle, type HistoryEntry, type HistoryItem, type RunModel} from './run-model.js';
import type {Tone} from './theme.js';
import {failureChoices, planGrid, progressGrid, resumeSentence, type FailureChoice, type Grid} from './wording.js';

const progressIntervalMs = 100;

/**
 * How the UI gets an engine. Each apply attempt gets a fresh one (a fresh stop flag, its own
 * log file); the first one, without a log file, only reads the state and makes the plan.
 */
export type EngineFactory = (options: {config: ResolvedConfig; prompter: Prompter; logFile?: string; rotate: string[]}) => Engine;

/** The engine as the CLI builds it: real ssh through a Runner that logs to the given file. */
export function defaultEngineFactory(stateDir: string): EngineFactory {
	return ({config, prompter, logFile, rotate}) => new Engine({
		config,
		workspace: new Workspace(stateDir, config.name),
		runner: new Runner({logFile, defaultTimeoutMs: config.timeouts.commandSeconds * 1000}),
		prompter,
		rotate,
	});
}

export type SessionOptions = {
	/** --config as given: the wizard writes it when it does not exist. */
	configFile: string;
	stateDir: string;
	createEngine: EngineFactory;
	/** --rotate: applied by the first apply of this session only. */
	rotate?: string[];
	/** Folder that relative paths typed in the wizard are read from. */
	cwd?: string;
	/** What the operator runs to resume without this UI. */
	resumeCommand?: string;
	now?: () => number;
};

export type Screen =
	| {name: 'starting'}
	| {name: 'wizard'; reason: 'missing' | 'invalid'}
	| {name: 'config-error'; problems: string[]; canEdit: boolean}
	| {name: 'loading'; message: string}
	| {name: 'plan'; plan: PlanView; grid: Grid; lastRun?: RunRecord}
	| {name: 'resume'; run: RunRecord; sentence: string}
	| {name: 'progress'; grid: Grid; run?: RunRecord}
	| {name: 'running'; stopping: boolean}
	| {name: 'failed'; failures: FailureInfo[]; choices: FailureChoice[]}
	| {name: 'error'; message: string; canRetry: boolean}
	| {name: 'exit'; code: number; tone: Tone; lines: string[]; force: boolean};

export type SessionState = {
	screen: Screen;
	/** Finished lines, printed once above the live area. */
	history: HistoryEntry[];
	run: RunModel;
	/** The question on screen; others wait behind it (masters ask in parallel). */
	prompt?: PromptRequest;
	promptsWaiting: number;
	masters: string[];
	skipHosts: string[];
	attempt: number;
	logFile?: string;
	configFile: string;
	cwd: string;
};

type Pending = {request: PromptRequest; resolve: (answer: boolean) => void};

/**
 * The terminal UI's state machine, free of React: it decides which screen shows, drives the
 * engine (plan, apply, stop) and answers the engine's questions with the operator's choices.
 * Views read its snapshot and call its methods; they never run anything themselves.
 */
export class Session {
	/** What this UI runs: the install (its plan, its progress, its resume). */
	readonly operation: Operation = install;
	private state: SessionState;
	private readonly listeners = new Set<() => void>();
	private progressTimer: NodeJS.Timeout | undefined;
	private readonly pending: Pending[] = [];
	private readonly seenWarnings = new Set<string>();
	private nextHistoryId = 1;
	private config: ResolvedConfig | undefined;
	private engine: Engine | undefined;
	private retryAction: (() => void) | undefined;
	private rotateUsed = false;
	private started = false;
	private readonly now: () => number;

	readonly prompter: Prompter = {
		ask: request => new Promise(resolve => {
			this.pending.push({request, resolve: resolve as (answer: boolean) => void});
			this.publishPrompt();
		}),
	};

	constructor(private readonly options: SessionOptions) {
		const cwd = options.cwd ?? process.cwd();
		this.now = options.now ?? (() => Date.now());
		this.state = {
			screen: {name: 'starting'},
			history: [],
			run: initialRun([], this.operation),
			promptsWaiting: 0,
			masters: [],
			skipHosts: [],
			attempt: 0,
			configFile: path.resolve(cwd, options.configFile),
			cwd,
		};
	}

	readonly subscribe = (listener: () => void): (() => void) => {
		this.listeners.add(listener);
		return () => this.listeners.delete(listener);
	};

	readonly getSnapshot = (): SessionState => this.state;

	private set(change: Partial<SessionState>): void {
		this.state = {...this.state, ...change};
		for (const listener of this.listeners) {
			listener();
		}
	}

	private addHistory(items: HistoryItem[]): HistoryEntry[] {
		const fresh = items.filter(item => {
			if (item.kind === 'note' && item.tone === 'warn') {
				if (this.seenWarnings.has(item.text)) {
					return false;
				}

				this.seenWarnings.add(item.text);
			}

			return true;
		});
		return fresh.length === 0 ? this.state.history : [...this.state.history, ...fresh.map(item => ({...item, id: this.nextHistoryId++}))];
	}

	note(text: string, tone: Tone = 'plain'): void {
		this.set({history: this.addHistory([{kind: 'note', tone, text}])});
	}

	get resumeCommand(): string {
		return this.options.resumeCommand ?? `k8s-master-install apply --config ${shellQuote(this.options.configFile)}`;
	}

	/** Looks at the config and the saved progress and shows the first screen. */
	start(): void {
		if (this.started) {
			return;
		}

		this.started = true;
		void this.load();
	}

	private async load(): Promise<void> {
		const file = this.state.configFile;
		if (!existsSync(file)) {
			this.set({screen: {name: 'wizard', reason: 'missing'}});
			return;
		}

		let config: ResolvedConfig;
		try {
			config = await loadConfig(file);
		} catch (error) {
			const problems = error instanceof InputErrors ? error.errors.map(each => each.message) : [error instanceof Error ? error.message : String(error)];
			this.set({screen: {name: 'config-error', problems, canEdit: isInputError(error) && await parses(file)}});
			return;
		}

		this.config = config;
		const masters = config.masters.map(master => master.name);
		const history = this.addHistory(config.warnings.map(message => ({kind: 'note', tone: 'warn', text: `warning: ${message}`})));
		this.set({masters, run: initialRun(masters, this.operation), history});
		try {
			this.engine = this.options.createEngine({config, prompter: this.prompter, rotate: this.options.rotate ?? []});
		} catch (error) {
			this.fail(error, undefined);
			return;
		}

		const run = this.engine.state.snapshot.run;
		// Only the install is resumed here; another operation's unfinished run is its command's to resume.
		if (run && run.status !== 'done' && run.operation === this.operation.id) {
			this.set({screen: {name: 'resume', run, sentence: resumeSentence(run)}});
			return;
		}

		void this.showPlan();
	}

	private async showPlan(): Promise<void> {
		const engine = this.engine!;
		this.set({screen: {name: 'loading', message: 'Working out the plan (nothing is changed on the masters)…'}});
		try {
			// A master left out is not contacted; one that cannot be read is shown as such, not a failure.
			const plan = await engine.plan(this.operation, {skipHosts: this.state.skipHosts});
			if (this.state.screen.name !== 'loading') {
				return;
			}

			const run = engine.state.snapshot.run;
			this.set({screen: {name: 'plan', plan, grid: planGrid(plan, this.state.masters), lastRun: run?.status === 'done' ? run : undefined}});
		} catch (error) {
			this.fail(error, () => void this.showPlan());
		}
	}

	/** The wizard wrote the config: show its plan, or end when files it names are still missing. */
	configWritten(file: string, proceed: boolean): void {
		this.note(`✔ wrote ${file}`, 'ok');
		if (proceed) {
			void this.load();
			return;
		}

		this.exit(0, 'warn', [`Wrote ${file}, but files it names are not there yet.`, 'Put them in place, then run k8s-master-install again.']);
	}

	/** From the config error screen: correct the file in the wizard. */
	editConfig(): void {
		this.set({screen: {name: 'wizard', reason: 'invalid'}});
	}

	startApply(): void {
		const title = this.state.screen.name === 'plan' ? this.state.screen.plan.run.title : 'Install';
		this.note(`▶ ${title} on ${this.state.masters.length} master(s): ${this.state.masters.join(', ')}`, 'info');
		void this.runApply();
	}

	resume(): void {
		const run = this.state.screen.name === 'resume' ? this.state.screen.run : undefined;
		this.note(`▶ Resume${run?.step ? ` from ${run.step}` : ''}: finished work is checked on each master, not redone`, 'info');
		void this.runApply();
	}

	showDone(): void {
		const engine = this.engine!;
		const snapshot = engine.state.snapshot;
		this.set({screen: {name: 'progress', grid: progressGrid(snapshot, this.state.masters, this.operation), run: snapshot.run}});
	}

	backToResume(): void {
		const run = this.engine?.state.snapshot.run;
		if (run) {
			this.set({screen: {name: 'resume', run, sentence: resumeSentence(run)}});
		}
	}

	startOver(): void {
		this.engine!.state.clearProgress();
		this.note('Progress forgotten; the CA, the keys and the encryption key are kept.', 'info');
		void this.showPlan();
	}

	retry(): void {
		this.note(`▶ Retry${this.state.skipHosts.length > 0 ? ` without ${this.state.skipHosts.join(', ')}` : ''}`, 'info');
		void this.runApply();
	}

	skip(hosts: string[]): void {
		this.set({skipHosts: hosts});
		this.note(`▶ Apply again, leaving out ${hosts.join(', ')} for this run`, 'info');
		void this.runApply();
	}

	abort(): void {
		const failure = this.state.screen.name === 'failed' ? this.state.screen.failures[0] : undefined;
		this.exit(1, 'bad', [
			failure ? `Aborted: ${stepTitle(failure.step, this.operation)} failed on ${failure.host}. Progress is kept.` : 'Aborted. Progress is kept.',
			`To resume: ${this.resumeCommand}  (or run k8s-master-install again)`,
			...(this.state.logFile ? [`Log: ${this.state.logFile}`] : []),
		]);
	}

	retryAfterError(): void {
		const action = this.retryAction;
		this.retryAction = undefined;
		action?.();
	}

	quit(): void {
		const {screen} = this.state;
		switch (screen.name) {
			case 'failed': {
				this.abort();
				return;
			}

			case 'config-error': {
				this.exit(2, 'bad', [`${this.options.configFile} was left as it is. Correct it, then run k8s-master-install again.`]);
				return;
			}

			case 'error': {
				this.exit(1, 'bad', ['Quit. Progress (if any) is kept.', `To resume: ${this.resumeCommand}`]);
				return;
			}

			case 'resume':
			case 'progress': {
				this.exit(0, 'plain', ['Quit. The saved progress is kept.', `To resume: ${this.resumeCommand}  (or run k8s-master-install again)`]);
				return;
			}

			case 'wizard': {
				this.exit(0, 'plain', ['Quit. Nothing was written.']);
				return;
			}

			default: {
				this.exit(0, 'plain', ['Quit. Nothing was applied.', `To install: ${this.resumeCommand}  (or run k8s-master-install again)`]);
			}
		}
	}

	/** q or Ctrl-C: while running, stop safely after the action under way; elsewhere, leave. */
	interrupt(key: 'q' | 'ctrl-c'): void {
		const {screen} = this.state;
		if (screen.name === 'exit') {
			return;
		}

		if (screen.name === 'running') {
			if (this.pending.length > 0) {
				if (key === 'ctrl-c') {
					this.requestStop();
					this.answerAll(false);
				}

				return;
			}

			if (!screen.stopping) {
				this.requestStop();
				return;
			}

			if (key === 'ctrl-c') {
				this.exit(130, 'warn', ['Quit at once. Progress up to the last finished action is saved.', `To resume: ${this.resumeCommand}`], true);
			}

			return;
		}

		if (screen.name === 'wizard' && key === 'q') {
			return;
		}

		this.quit();
	}

	private requestStop(): void {
		this.engine?.requestStop();
		this.set({screen: {name: 'running', stopping: true}});
	}

	/** The operator's answer to the question on screen. */
	answer(value: boolean): void {
		const head = this.pending.shift();
		if (!head) {
			return;
		}

		if (head.request.kind === 'overwrite') {
			this.note(value ? `Overwriting ${head.request.path} on ${head.request.host} (a backup is kept there)` : `Kept ${head.request.path} on ${head.request.host} as it is`, value ? 'warn' : 'info');
		}

		head.resolve(value);
		this.publishPrompt();
	}

	private answerAll(value: boolean): void {
		while (this.pending.length > 0) {
			this.answer(value);
		}
	}

	private publishPrompt(): void {
		this.set({prompt: this.pending[0]?.request, promptsWaiting: Math.max(0, this.pending.length - 1)});
	}

	private onEvent(event: EngineEvent): void {
		const {model, history} = reduceRun(this.state.run, event, this.now());
		const next = {run: model, history: history.length > 0 ? this.addHistory(history) : this.state.history};
		// Copying binaries reports every 64 KiB chunk: the screen follows at most ten times a second.
		if (event.type === 'host-progress' && history.length === 0) {
			this.state = {...this.state, ...next};
			this.progressTimer ??= setTimeout(() => {
				this.progressTimer = undefined;
				this.set({});
			}, progressIntervalMs);
			return;
		}

		clearTimeout(this.progressTimer);
		this.progressTimer = undefined;
		this.set(next);
	}

	private async runApply(): Promise<void> {
		const config = this.config!;
		const logFile = path.join(new Workspace(this.options.stateDir, config.name).logsDir, `apply-${new Date(this.now()).toISOString().replaceAll(/[:.]/g, '-')}.jsonl`);
		const rotate = this.rotateUsed ? [] : this.options.rotate ?? [];
		let engine: Engine;
		try {
			engine = this.options.createEngine({config, prompter: this.prompter, logFile, rotate});
		} catch (error) {
			this.fail(error, () => void this.runApply());
			return;
		}

		this.rotateUsed = true;
		this.engine = engine;
		const unsubscribe = engine.subscribe(event => this.onEvent(event));
		this.set({screen: {name: 'running', stopping: false}, run: initialRun(this.state.masters, this.operation), attempt: this.state.attempt + 1, logFile});
		try {
			await engine.apply({confirm: false, skipHosts: this.state.skipHosts});
			const finished = this.state.run.finished;
			this.exit(0, this.state.skipHosts.length > 0 ? 'warn' : 'ok', [
				`${this.state.skipHosts.length > 0 ? '✔ Done, with masters left out' : '✔ Done'}: ${finished?.message ?? 'installed'}${finished ? ` (${formatDuration(finished.durationMs)})` : ''}`,
				...(this.state.skipHosts.length > 0 ? [`To install ${this.state.skipHosts.join(', ')} later: ${this.resumeCommand}`] : []),
				`Log: ${logFile}`,
			]);
		} catch (error) {
			if (error instanceof ApplyFailed) {
				this.set({screen: {name: 'failed', failures: error.failures, choices: failureChoices(error.failures, this.state.masters, this.state.skipHosts, this.operation)}});
			} else if (error instanceof StopRequested) {
				this.exit(130, 'warn', [
					`■ ${stoppedWhere(this.state.run)}. Progress is saved.`,
					`To resume: ${this.resumeCommand}  (or run k8s-master-install again)`,
					`Log: ${logFile}`,
				]);
			} else {
				this.fail(error, isInputError(error) || error instanceof PromptRefused ? undefined : () => void this.runApply());
			}
		} finally {
			unsubscribe();
			this.answerAll(false);
		}
	}

	private fail(error: unknown, retry: (() => void) | undefined): void {
		this.retryAction = retry;
		const message = error instanceof InputErrors ? error.errors.map(each => each.message).join('\n') : error instanceof InputError || error instanceof Error ? error.message : String(error);
		this.set({screen: {name: 'error', message, canRetry: retry !== undefined}});
	}

	private exit(code: number, tone: Tone, lines: string[], force = false): void {
		this.answerAll(false);
		this.set({screen: {name: 'exit', code, tone, lines, force}});
	}
}

/**
 * Where the run stopped, from what the screen saw: the step whose hosts stopped (masters run in
 * parallel, so the state's single run.host is only the last one that started an action).
 */
export function stoppedWhere(run: RunModel): string {
	const step = run.steps.find(each => each.status === 'stopped') ?? run.steps.find(each => each.status === 'running');
	if (step) {
		const hosts = step.hosts.filter(host => host.status === 'stopped' || host.status === 'running').map(host => host.host);
		return `Stopped at ${step.id} (${step.title})${hosts.length > 0 ? ` on ${hosts.join(', ')}` : ''}`;
	}

	const next = run.steps.find(each => each.status === 'pending');
	return next ? `Stopped before ${next.id} (${next.title})` : 'Stopped';
}

async function parses(file: string): Promise<boolean> {
	try {
		parseConfigText(await readLocalText(file, configFileSpec), file);
		return true;
	} catch {
		return false;
	}
}
