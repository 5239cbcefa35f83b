import type {ResolvedConfig} from '../config/load.js';
import type {Master} from '../config/schema.js';
import {PromptRefused, StepError} from '../errors.js';
import type {Operation} from '../operations/types.js';
import type {Runner} from '../runner.js';
import type {HostRecord, Progress, StateStore} from '../state/store.js';
import {uploadsOf} from '../steps/files.js';
import {controlPlaneServes} from '../steps/liveness.js';
import type {StepContext, StepDefinition, StepId, Verification} from '../steps/types.js';
import type {EngineEvent, FailureInfo, HostOutcome} from './events.js';
import {clusterHost, fingerprint, inputActions, stepHosts} from './plan.js';

/** Raised between actions once the operator asked to stop; progress so far is recorded. */
export class StopRequested extends Error {
	constructor() {
		super('stopped on request');
		this.name = 'StopRequested';
	}
}

/** A run did not finish: which step, and every host that failed with its reason. */
export class ApplyFailed extends Error {
	readonly failures: FailureInfo[];
	/** During a change of release: the failing master, the others left serving, and the way back (upgrade/way-back.ts). */
	wayBack?: string;

	constructor(readonly step: StepId, failures: FailureInfo[]) {
		super(`${[...new Set(failures.map(failure => failure.step))].join(', ') || step} failed on ${[...new Set(failures.map(failure => failure.host))].join(', ')}`);
		this.name = 'ApplyFailed';
		this.failures = failures;
	}
}

export type StepRunnerOptions = {
	operation: Operation;
	config: ResolvedConfig;
	runner: Runner;
	state: StateStore;
	emit: (event: EngineEvent) => void;
	/** Masters left out of this run on the operator's request. */
	skipHosts: ReadonlySet<string>;
	isStopping: () => boolean;
	/** false: the run leaves no progress in the state (reset). */
	records: boolean;
};

type HostResult = {outcome: HostOutcome; failure?: FailureInfo; refused?: PromptRefused};

/**
 * Runs an operation's steps: each step on its hosts (side by side, one after the other, or through
 * one master), verify before run, progress recorded after every host. Emits events, imports no view.
 */
export class StepRunner {
	private readonly progress: Progress;
	/** Whether a control plane served when this run reached its first rolling-when-live step (see controlPlaneServes). */
	private live: Promise<boolean> | undefined;
	/** Whether a step did something on a host (not only checks, not only found in place). */
	changed = false;

	constructor(private readonly options: StepRunnerOptions) {
		this.progress = options.state.progress(options.operation.id);
	}

	private emit(event: EngineEvent): void {
		this.options.emit(event);
	}

	private setRun(run: Omit<Parameters<StateStore['setRun']>[0], 'operation'>, options?: {later?: boolean}): void {
		if (this.options.records) {
			this.options.state.setRun({...run, operation: this.options.operation.id}, options);
		}
	}

	private recordHost(step: StepDefinition, host: string, record: HostRecord, options?: {later?: boolean}): void {
		if (this.options.records) {
			this.progress.recordHost(step.id, host, record, options);
		}
	}

	private throwIfStopping(): void {
		if (this.options.isStopping()) {
			throw new StopRequested();
		}
	}

	/**
	 * Steps that need nothing from each other run side by side (the binaries stream while the
	 * certificates and configs are written). Every step of the wave settles before the first
	 * reason to end the run is raised: a question refused, then a failure, then a stop.
	 */
	async runWave(wave: StepDefinition[], context: StepContext): Promise<void> {
		const running = new Map<StepId, Promise<void>>();
		for (const step of wave) {
			const awaited = (step.afterWhenLive ?? []).map(id => running.get(id)).filter(promise => promise !== undefined);
			running.set(step.id, awaited.length > 0 ? this.runAfterWhenLive(step, awaited, context) : this.runStep(step, context));
		}

		const settled = await Promise.allSettled(running.values());
		const reasons = settled.flatMap(result => (result.status === 'rejected' ? [result.reason as unknown] : []));
		const failures = reasons.filter((reason): reason is ApplyFailed => reason instanceof ApplyFailed);
		if (failures.length > 0) {
			// Recorded for the first step in order that failed, whichever finished last.
			this.setRun({status: 'failed', step: failures[0]!.step, host: [...new Set(failures[0]!.failures.map(failure => failure.host))].join(', ')});
		}

		const first = reasons.find(reason => reason instanceof PromptRefused)
			?? (failures.length > 0 ? new ApplyFailed(failures[0]!.step, failures.flatMap(failure => failure.failures)) : undefined)
			?? reasons[0];
		if (first !== undefined) {
			throw first;
		}
	}

	/** `step` after the `awaited` steps once a control plane serves, else beside them; not at all after one failed (that failure ends the run). */
	private async runAfterWhenLive(step: StepDefinition, awaited: Array<Promise<void>>, context: StepContext): Promise<void> {
		if (await this.serves(context)) {
			const settled = await Promise.allSettled(awaited);
			if (settled.some(result => result.status === 'rejected')) {
				return;
			}
		}

		await this.runStep(step, context);
	}

	/** Asked once per run (see controlPlaneServes). */
	private async serves(context: StepContext): Promise<boolean> {
		this.live ??= controlPlaneServes(context, this.progress, this.options.operation.steps);
		return this.live;
	}

	async runStep(step: StepDefinition, context: StepContext): Promise<void> {
		const started = performance.now();
		const hosts = stepHosts(step, context);
		this.throwIfStopping();
		this.emit({type: 'step-start', step: step.id, title: step.title, hosts: step.scope === 'cluster' ? [clusterHost] : hosts.map(master => master.name)});
		const outcomes = step.scope === 'cluster'
			? [await this.runCluster(step, context, hosts)]
			: await this.rolls(step, context)
				? await this.runRolling(step, context, hosts)
				: await Promise.all(hosts.map(async master => (this.options.skipHosts.has(master.name) ? this.skipHost(step, master) : this.runHost(step, context, master, master.name))));
		const refused = outcomes.find(outcome => outcome.refused)?.refused;
		const failures = outcomes.flatMap(outcome => (outcome.failure ? [outcome.failure] : []));
		const stopped = outcomes.some(outcome => outcome.outcome === 'stopped');
		const overall: HostOutcome = failures.length > 0 ? 'failed' : stopped ? 'stopped' : outcomes.every(outcome => outcome.outcome === 'skipped' || outcome.outcome === 'excluded') ? 'skipped' : 'done';
		this.emit({type: 'step-done', step: step.id, outcome: overall, durationMs: Math.round(performance.now() - started)});
		this.changed ||= !step.readsOnly && outcomes.some(outcome => outcome.outcome === 'done');
		if (refused) {
			throw refused;
		}

		if (failures.length > 0) {
			this.setRun({status: 'failed', step: step.id, host: failures.map(failure => failure.host).join(', ')});
			throw new ApplyFailed(step.id, failures);
		}

		if (stopped) {
			const stoppedHosts = outcomes.flatMap((outcome, index) => (outcome.outcome === 'stopped' ? [step.scope === 'cluster' ? clusterHost : hosts[index]!.name] : []));
			this.setRun({status: 'stopped', step: step.id, host: stoppedHosts.join(', ')});
			throw new StopRequested();
		}
	}

	private inputs(step: StepDefinition, context: StepContext, master: Master): string {
		return fingerprint(inputActions(this.options.operation, step, context, master));
	}

	/** Whether the step's masters take turns: always (rolling), or once a control plane serves (rolling-when-live). */
	private async rolls(step: StepDefinition, context: StepContext): Promise<boolean> {
		switch (step.order ?? 'parallel') {
			case 'parallel': {
				return false;
			}

			case 'rolling': {
				return true;
			}

			case 'rolling-when-live': {
				return this.serves(context);
			}
		}
	}

	/**
	 * One master after the other; after a failure the rest are left as they are, still serving.
	 * The read-only checks run side by side first: only masters with work to do take their turn.
	 */
	private async runRolling(step: StepDefinition, context: StepContext, hosts: Master[]): Promise<HostResult[]> {
		const checked = await Promise.all(hosts.map(async master => {
			if (this.options.skipHosts.has(master.name)) {
				return undefined;
			}

			const record = this.progress.host(step.id, master.name);
			try {
				const verification = await step.verify(context, master, record, this.inputs(step, context, master));
				return verification.done ? verification : undefined;
			} catch {
				// Found again, and reported, when the master takes its turn.
				return undefined;
			}
		}));
		const outcomes: HostResult[] = [];
		for (const [index, master] of hosts.entries()) {
			const failed = outcomes.some(outcome => outcome.outcome === 'failed' || outcome.outcome === 'stopped');
			outcomes.push(this.options.skipHosts.has(master.name) || failed ? this.skipHost(step, master, failed ? `not touched after an earlier master failed ${step.id}` : undefined) : await this.runHost(step, context, master, master.name, checked[index]));
		}

		return outcomes;
	}

	/** A master the operator chose to leave out of this run: nothing is done or recorded for it. */
	private skipHost(step: StepDefinition, master: Master, reason = 'skipped on request for this run'): HostResult {
		this.emit({type: 'host-done', step: step.id, host: master.name, outcome: 'excluded', detail: reason, durationMs: 0});
		return {outcome: 'excluded'};
	}

	/** Cluster-wide steps run through the first master that can do them. */
	private async runCluster(step: StepDefinition, context: StepContext, hosts: Master[]): Promise<HostResult> {
		let last: HostResult = {outcome: 'failed'};
		for (const master of hosts.filter(each => !this.options.skipHosts.has(each.name))) {
			last = await this.runHost(step, context, master, clusterHost);
			if (last.outcome !== 'failed' || last.refused) {
				return last;
			}
		}

		return last;
	}

	/** `verified`: a verification already made for this master in this run (rolling steps check side by side first). */
	private async runHost(step: StepDefinition, context: StepContext, master: Master, recordName: string, verified?: Verification): Promise<HostResult> {
		const state = this.progress;
		const started = performance.now();
		const elapsed = () => Math.round(performance.now() - started);
		const inputs = this.inputs(step, context, master);
		const record = state.host(step.id, recordName);
		this.emit({type: 'host-start', step: step.id, host: recordName});
		// Where the run is: written with the next record (before any action, which records itself first).
		this.setRun({status: 'running', step: step.id, host: recordName}, {later: true});
		try {
			this.throwIfStopping();
			const verification = verified ?? await step.verify(context, master, record, inputs);
			if (verification.done) {
				// What was verified in place is recorded as ours, so a later change to it is not taken for a hand edit.
				const files = Object.fromEntries(uploadsOf(step.plan(context, master)).map(upload => [upload.path, upload.sha256]));
				const current = state.host(step.id, recordName);
				this.recordHost(step, recordName, {...current, files: {...current?.files, ...files}, status: 'done', at: record?.at ?? new Date().toISOString(), inputs, note: verification.detail, error: undefined});
				this.emit({type: 'host-done', step: step.id, host: recordName, outcome: 'skipped', detail: verification.detail, durationMs: elapsed()});
				return {outcome: 'skipped'};
			}

			// Written ahead of the action. A check changes nothing: its records go with the next write
			// (at the latest the run's end); lost to a kill, the check runs again as it always does.
			const later = step.readsOnly === true;
			this.recordHost(step, recordName, {...kept(record), status: 'running', at: new Date().toISOString(), inputs}, {later});
			const note = await step.run(context, master, inputs, verification);
			this.recordHost(step, recordName, {...kept(state.host(step.id, recordName)), status: 'done', at: new Date().toISOString(), inputs, note}, {later});
			this.emit({type: 'host-done', step: step.id, host: recordName, outcome: 'done', detail: note, durationMs: elapsed()});
			return {outcome: 'done'};
		} catch (error) {
			if (error instanceof StopRequested) {
				this.emit({type: 'host-done', step: step.id, host: recordName, outcome: 'stopped', durationMs: elapsed()});
				return {outcome: 'stopped'};
			}

			const failure = toFailure(error, step.id, master.name, this.options.runner);
			this.recordHost(step, recordName, {...kept(state.host(step.id, recordName)), status: 'failed', at: new Date().toISOString(), inputs, error: failure.message}, {later: step.readsOnly === true});
			this.emit({type: 'host-done', step: step.id, host: recordName, outcome: 'failed', failure, durationMs: elapsed()});
			// A question that could not be answered ends the run once every host has settled.
			return {outcome: 'failed', failure, refused: error instanceof PromptRefused ? error : undefined};
		}
	}
}

/**
 * The steps in order, grouped: a step joins the wave before it unless it needs one of that wave's
 * steps (other than those it waits for only on a running cluster, afterWhenLive).
 */
export function waves(ordered: StepDefinition[]): StepDefinition[][] {
	const grouped: StepDefinition[][] = [];
	for (const step of ordered) {
		const last = grouped.at(-1);
		if (last && !last.some(each => step.needs.includes(each.id) && !step.afterWhenLive?.includes(each.id))) {
			last.push(step);
		} else {
			grouped.push([step]);
		}

		// Waited for in the wave only if started before it: a step named but elsewhere would silently not be waited for.
		const wave = grouped.at(-1)!;
		const misplaced = step.afterWhenLive?.filter(id => !wave.slice(0, -1).some(each => each.id === id));
		if (misplaced && misplaced.length > 0) {
			throw new Error(`step ${step.id}: afterWhenLive names ${misplaced.join(', ')}, not a step before it in its wave`);
		}
	}

	return grouped;
}

/** What checks the masters before any key material is made: the first step (preflight) and the steps right after it that build on what it found (its cross-master check). */
export function checksFirst(steps: StepDefinition[]): StepDefinition[] {
	const checks = steps.slice(0, 1);
	for (const step of steps.slice(1)) {
		if (!step.needs.some(need => checks.some(check => check.id === need))) {
			break;
		}

		checks.push(step);
	}

	return checks;
}

/** What a host record carries from one attempt to the next: files written (and their identities) and services started. */
function kept(record: HostRecord | undefined): Pick<HostRecord, 'files' | 'stats' | 'services'> {
	return {files: record?.files, stats: record?.stats, services: record?.services};
}

export function toFailure(error: unknown, step: string, host: string, runner: Runner): FailureInfo {
	if (error instanceof StepError) {
		return {step, host: error.host, message: runner.redact(error.message), command: error.command, output: error.output, fix: error.fix};
	}

	const message = error instanceof Error ? error.message : String(error);
	return {step, host, message: runner.redact(`${step} on ${host}: ${message}`), command: '', output: ''};
}
