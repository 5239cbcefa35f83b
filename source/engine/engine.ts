import {existsSync, rmSync} from 'node:fs';
import path from 'node:path';
import type {ResolvedConfig} from '../config/load.js';
import type {Master} from '../config/schema.js';
import {ChecksFailed, InputError, InputErrors, PromptRefused, StepError} from '../errors.js';
import {sha256, writeFileAtomic} from '../files.js';
import type {KeyPair} from '../pki/certs.js';
import {ensureMaterial, type Material, type MaterialChange} from '../pki/material.js';
import {adminContexts, renderArtifacts} from '../render/artifacts.js';
import {misfitError, releaseMisfits} from '../render/fit.js';
import {callApi, getHealth, type Api, type Probe} from '../remote/health.js';
import {Remote, throughSsh} from '../remote/ssh.js';
import {stopRunningCommands, type Runner} from '../runner.js';
import {readLocalText} from '../safe-read.js';
import {StateStore, type HostRecord, type StepId} from '../state/store.js';
import {unpackBinaries, unpackedBinaries} from '../steps/binaries.js';
import {inputActions, steps} from '../steps/definitions.js';
import {FilesReadAhead, uploadsOf} from '../steps/files.js';
import {cisResults, type CisResult} from '../steps/cis.js';
import {preflight, readFactsEarly} from '../steps/preflight.js';
import {resetHost} from '../steps/reset.js';
import {adminTls} from '../steps/services.js';
import {verify} from '../steps/verify.js';
import {downloadTarball} from '../steps/download.js';
import type {PlannedAction, StepContext, StepDefinition, Verification} from '../steps/types.js';
import type {Workspace} from '../workspace.js';
import type {EngineEvent, EventListener, FailureInfo, HostOutcome} from './events.js';
import type {Prompter} from './prompts.js';

/** Raised between actions once the operator asked to stop; progress so far is recorded. */
export class StopRequested extends Error {
	constructor() {
		super('stopped on request');
		this.name = 'StopRequested';
	}
}

/** apply did not finish: which step, and every host that failed with its reason. */
export class ApplyFailed extends Error {
	readonly failures: FailureInfo[];

	constructor(readonly step: StepId, failures: FailureInfo[]) {
		super(`${[...new Set(failures.map(failure => failure.step))].join(', ') || step} failed on ${[...new Set(failures.map(failure => failure.host))].join(', ')}`);
		this.name = 'ApplyFailed';
		this.failures = failures;
	}
}

/** Where cluster-wide steps (etcd check, RBAC) are recorded in the state. */
export const clusterHost = 'cluster';

export type ActionView =
	| {kind: 'upload'; path: string; mode: string; sha256: string; bytes: number; secret: boolean; label: string}
	| {kind: 'remote'; command: string}
	| {kind: 'local'; command: string}
	| {kind: 'check'; description: string};

export type PlanView = {
	cluster: string;
	version: string;
	stateFile: string;
	materialChanges: MaterialChange[];
	steps: Array<{
		id: StepId;
		title: string;
		scope: StepDefinition['scope'];
		hosts: Array<{host: string; recorded?: string; inputsChanged: boolean; actions: ActionView[]}>;
	}>;
};

export type EngineOptions = {
	config: ResolvedConfig;
	workspace: Workspace;
	runner: Runner;
	prompter: Prompter;
	rotate?: string[];
	/** How apiserver health is asked; the real TLS client unless a test replaces it. */
	probe?: Probe;
	api?: Api;
};

function fingerprint(actions: PlannedAction[]): string {
	return sha256(JSON.stringify(actions.map(action => (action.kind === 'upload' ? {path: action.path, mode: action.mode, sha256: action.sha256} : action))));
}

/**
 * The install engine: renders the material, plans, applies the steps on every master and records
 * progress after every action. It imports no view; views subscribe to its events and answer its prompts.
 */
export class Engine {
	readonly state: StateStore;
	private readonly listeners = new Set<EventListener>();
	private stopping = false;
	private skipHosts = new Set<string>();
	private context: StepContext | undefined;
	/** Key pairs the checks before apply made in memory: apply keeps those instead of making new ones. */
	private readonly keyCache = new Map<string, KeyPair>();

	constructor(private readonly options: EngineOptions) {
		this.state = new StateStore(options.workspace.root, options.config.name);
		options.runner.subscribe(event => this.emit(event));
	}

	subscribe(listener: EventListener): () => void {
		this.listeners.add(listener);
		return () => this.listeners.delete(listener);
	}

	/** Stop after the action under way; apply then ends with outcome "stopped". */
	requestStop(): void {
		this.stopping = true;
	}

	private emit(event: EngineEvent): void {
		for (const listener of this.listeners) {
			listener(event);
		}
	}

	private readonly throwIfStopping = () => {
		if (this.stopping) {
			throw new StopRequested();
		}
	};

	/** Renders material and artifacts. persist=false (plan) makes what is missing in memory only. */
	async prepare(persist: boolean, options: {quiet?: boolean; remote?: Remote; readAhead?: FilesReadAhead; refuseMisfits?: boolean} = {}): Promise<StepContext> {
		const {config, workspace, runner} = this.options;
		if (!options.quiet) {
			for (const message of config.warnings) {
				this.emit({type: 'warning', message});
			}
		}

		const {material, changes, record} = await ensureMaterial(config, workspace, {rotate: this.options.rotate, previous: this.state.snapshot.material, persist, keyCache: this.keyCache});
		this.registerSecrets(material);
		if (!options.quiet) {
			this.emit({type: 'material', changes});
		}

		const artifacts = renderArtifacts(config, material, await readEtcdFiles(config));
		const misfits = releaseMisfits(config, artifacts);
		if (options.refuseMisfits && misfits.length > 0) {
			throw new InputErrors(misfits.map(misfit => misfitError(config, misfit)));
		}

		if (!options.quiet) {
			for (const misfit of misfits) {
				this.emit({type: 'warning', message: `${misfit.file}: ${misfit.problem}; apply refuses it. Fix: ${misfit.fix}`});
			}
		}
		if (persist) {
			for (const artifact of artifacts.filter(artifact => !artifact.remote)) {
				writeFileAtomic(path.join(workspace.renderedDir, artifact.name), artifact.content, artifact.mode);
			}

			this.emit({
				type: 'admin-kubeconfig',
				file: path.join(workspace.renderedDir, 'admin.kubeconfig'),
				contexts: adminContexts(config),
				endpoint: config.controlPlane && `${config.controlPlane.host}:${config.controlPlane.port}`,
			});
		}

		const remote = options.remote ?? new Remote(runner, config);
		const direct = {probe: this.options.probe ?? getHealth, api: this.options.api ?? callApi};
		// Through a bastion the workstation has no route to the apiservers: their calls go over ssh forwards.
		const {probe, api} = config.bastion ? throughSsh(remote, () => config.masters.filter(master => !this.skipHosts.has(master.name)), direct.probe, direct.api) : direct;
		this.context = {
			config,
			workspace,
			runner,
			remote,
			state: this.state,
			prompter: this.options.prompter,
			artifacts,
			material,
			binaries: unpackedBinaries(workspace, config),
			probe,
			api,
			progress: (step, host, update) => this.emit({type: 'host-progress', step, host, ...update}),
			check: (step, host, result) => this.emit({type: 'check', step, host, ...result}),
			changedFiles: new Map<string, Set<string>>(),
			readAhead: options.readAhead ?? new FilesReadAhead(),
			// The key material counts as in use (and may no longer change) once it is on a master.
			materialShipped: () => {
				if (persist && !this.state.snapshot.material) {
					this.state.update(state => {
						state.material = record;
					});
				}
			},
			skipped: this.skipHosts,
			throwIfStopping: this.throwIfStopping,
		};
		return this.context;
	}

	private registerSecrets(material: Material): void {
		this.options.runner.addSecret(material.encryptionKey);
		for (const pem of [material.ca.keyPem, ...Object.values(material.leaves).map(leaf => leaf.keyPem), material.serviceAccount?.privateKeyPem]) {
			if (pem) {
				this.options.runner.addSecret(pem);
				// Kubeconfigs carry keys as base64 (client-key-data).
				this.options.runner.addSecret(Buffer.from(pem).toString('base64'));
			}
		}
	}

	/** Everything apply would do, per step and per host, with hashes and secrets masked. Touches nothing. */
	async plan(): Promise<PlanView> {
		const materialChanges: MaterialChange[] = [];
		const unsubscribe = this.subscribe(event => {
			if (event.type === 'material') {
				materialChanges.push(...event.changes);
			}
		});
		const context = await this.prepare(false);
		unsubscribe();
		const {config} = this.options;
		const view: PlanView = {cluster: config.name, version: config.version, stateFile: this.state.path, materialChanges, steps: []};
		for (const step of steps) {
			const masters = step.scope === 'cluster' ? config.masters.slice(0, 1) : config.masters;
			view.steps.push({
				id: step.id,
				title: step.title,
				scope: step.scope,
				hosts: masters.map(master => {
					const recordName = step.scope === 'cluster' ? clusterHost : master.name;
					const record = this.state.host(step.id, recordName);
					return {
						host: step.scope === 'cluster' ? `${clusterHost} (via ${master.name})` : master.name,
						recorded: record ? `${record.status} at ${record.at}` : undefined,
						inputsChanged: record !== undefined && record.inputs !== fingerprint(inputActions(step, context, master)),
						actions: step.plan(context, master).map(action => this.actionView(action)),
					};
				}),
			});
		}

		return view;
	}

	private actionView(action: PlannedAction): ActionView {
		const redact = (text: string) => this.options.runner.redact(text);
		switch (action.kind) {
			case 'upload': {
				return {kind: 'upload', path: action.path, mode: action.mode.toString(8).padStart(4, '0'), sha256: action.sha256, bytes: action.bytes, secret: action.secret, label: action.label};
			}

			case 'remote': {
				return {kind: 'remote', command: redact(action.display ?? action.script)};
			}

			case 'local': {
				return {kind: 'local', command: redact(action.display)};
			}

			case 'check': {
				return {kind: 'check', description: action.description};
			}
		}
	}

	/**
	 * Stops and removes on every master what this install put there: the four units, then every file
	 * whose content is still what this install wrote (a file changed since is kept and named). etcd's
	 * data is not touched. The local CA, keys and state folder stay unless removeLocal is asked.
	 */
	async reset(options: {confirm: boolean; removeLocal?: boolean}): Promise<void> {
		const started = performance.now();
		const {config, workspace} = this.options;
		if (options.confirm) {
			const confirmed = await this.options.prompter.ask({
				kind: 'confirm-reset',
				message: `Stop kube-apiserver, kube-nginx, kube-controller-manager and kube-scheduler and remove this install's files on ${config.masters.map(master => master.name).join(', ')}${options.removeLocal ? `, then delete ${workspace.root} (CA, keys, encryption key, state)` : ''}?`,
			});
			if (!confirmed) {
				throw new PromptRefused('reset not confirmed');
			}
		}

		const release = workspace.lock();
		const context = await this.prepare(false, {quiet: true});
		await context.remote.closeLeftovers();
		const failures: FailureInfo[] = [];
		try {
			this.emit({type: 'step-start', step: 'reset', title: 'Remove the control plane from the masters', hosts: config.masters.map(master => master.name)});
			await Promise.all(config.masters.map(async master => {
				const hostStarted = performance.now();
				this.emit({type: 'host-start', step: 'reset', host: master.name});
				try {
					const detail = await resetHost(context, master);
					this.state.forgetHost(master.name);
					this.emit({type: 'host-done', step: 'reset', host: master.name, outcome: 'done', detail, durationMs: Math.round(performance.now() - hostStarted)});
				} catch (error) {
					const failure = toFailure(error, 'reset', master.name, this.options.runner);
					failures.push(failure);
					this.emit({type: 'host-done', step: 'reset', host: master.name, outcome: 'failed', failure, durationMs: Math.round(performance.now() - hostStarted)});
				}
			}));
			this.emit({type: 'step-done', step: 'reset', outcome: failures.length > 0 ? 'failed' : 'done', durationMs: Math.round(performance.now() - started)});
		} finally {
			await context.remote.close();
			release();
		}

		if (failures.length > 0) {
			this.emit({type: 'finished', outcome: 'failed', message: `reset failed on ${failures.map(failure => failure.host).join(', ')}; run reset again once they are reachable`, durationMs: Math.round(performance.now() - started)});
			throw new ApplyFailed('reset', failures);
		}

		this.state.clearProgress();
		this.state.forgetMaterialInUse();
		if (options.removeLocal) {
			rmSync(workspace.root, {recursive: true, force: true});
		}

		this.emit({type: 'finished', outcome: 'done', message: `${config.masters.length} master(s) reset${options.removeLocal ? `; ${workspace.root} deleted` : `; the CA and keys are kept in ${workspace.root}`}`, durationMs: Math.round(performance.now() - started)});
	}

	/** The preflight checks alone, on every master, recording nothing; true when none failed. */
	async preflight(): Promise<boolean> {
		return this.checksOnly(preflight, await this.prepare(false), 'distinct machines');
	}

	/** The verify checks alone (the command), recording nothing; true when none failed. */
	async verify(): Promise<boolean> {
		const {workspace} = this.options;
		if (!this.state.snapshot.material || !existsSync(path.join(workspace.renderedDir, 'admin.kubeconfig'))) {
			throw new InputError('--state-dir', workspace.root, 'holds no install of this cluster to verify', 'run apply first, or pass the --state-dir and --config of the install');
		}

		return this.checksOnly(verify, await this.prepare(false, {quiet: true}), 'cluster checks');
	}

	/** The CIS benchmark's control-plane checks, read from every master; records nothing. */
	async cis(): Promise<Map<string, CisResult[] | FailureInfo>> {
		const context = await this.prepare(false, {quiet: true});
		try {
			return new Map(await Promise.all(this.options.config.masters.map(async (master): Promise<[string, CisResult[] | FailureInfo]> => {
				try {
					return [master.name, await cisResults(context, master, 'verify')];
				} catch (error) {
					return [master.name, toFailure(error, 'verify', master.name, this.options.runner)];
				}
			})));
		} finally {
			await context.remote.close();
		}
	}

	private async checksOnly(step: StepDefinition, context: StepContext, clusterCheck: string): Promise<boolean> {
		let passed = true;
		const clusterFailed = (error: unknown) => {
			passed = false;
			if (!(error instanceof ChecksFailed)) {
				this.emit({type: 'check', step: step.id, host: clusterHost, check: clusterCheck, level: 'fail', detail: error instanceof StepError ? error.message : String(error), fix: error instanceof StepError ? error.fix : undefined});
			}
		};

		try {
			const beside = step.beside?.(context).catch(clusterFailed);
			await Promise.all(this.options.config.masters.map(async master => {
				try {
					await step.run(context, master, '');
				} catch (error) {
					passed = false;
					// A master that could not even be asked says why in the grid.
					if (!(error instanceof ChecksFailed)) {
						this.emit({type: 'check', step: step.id, host: master.name, check: 'reachable', level: 'fail', detail: error instanceof Error ? this.options.runner.redact(error.message) : String(error), fix: error instanceof StepError ? error.fix : undefined});
					}
				}
			}));
			await beside;
			if (passed || step !== preflight) {
				try {
					await step.afterAll?.(context);
				} catch (error) {
					clusterFailed(error);
				}
			}
		} finally {
			await context.remote.close();
		}

		return passed;
	}

	/** Runs the steps in order on every master, verifying done work instead of trusting the record. */
	async apply(options: {confirm: boolean; skipHosts?: string[]}): Promise<void> {
		const started = performance.now();
		const {config} = this.options;
		this.stopping = false;
		this.skipHosts = new Set(options.skipHosts ?? []);
		const unknown = [...this.skipHosts].filter(name => !config.masters.some(master => master.name === name));
		if (unknown.length > 0 || this.skipHosts.size >= config.masters.length) {
			throw new InputError('skip', [...this.skipHosts].join(','), unknown.length > 0 ? `names no master (${unknown.join(', ')})` : 'would skip every master', 'skip only some of the masters named in the config');
		}

		let release: (() => void) | undefined;
		let runStarted = false;
		let readingAhead: Promise<unknown> | undefined;
		try {
			// Asked before anything is made, so that a refusal leaves no trace.
			if (options.confirm) {
				const resuming = this.state.snapshot.run;
				const confirmed = await this.options.prompter.ask({
					kind: 'confirm-apply',
					message: resuming && resuming.status !== 'done'
						? `Resume the install stopped at ${resuming.step ?? 'the start'}${resuming.host ? ` on ${resuming.host}` : ''} on ${config.masters.length} master(s)?`
						: `Apply the plan to ${config.masters.length} master(s) (${config.masters.map(master => master.name).join(', ')})?`,
				});
				if (!confirmed) {
					throw new PromptRefused('apply not confirmed');
				}
			}

			release = this.options.workspace.lock();
			// Checks first: a wrong tarball or a master that fails preflight leaves no key material behind.
			// Key pairs are made on crypto's thread pool while tar unpacks: side by side.
			const unpackedBefore = existsSync(this.options.workspace.binariesDir(config.version));
			const remote = new Remote(this.options.runner, config);
			// A killed run's ssh sessions are ended before this run touches a master.
			await remote.closeLeftovers();
			// A master left out of this run is not contacted at all.
			readFactsEarly(remote, config, config.masters.filter(master => !this.skipHosts.has(master.name)));
			// The unpacking first: tar starts before key pairs keep this thread busy.
			const unpacking = this.binaries();
			const [unpacked, prepared] = await Promise.allSettled([unpacking, this.prepare(false, {quiet: true, refuseMisfits: true, remote})]);
			if (prepared.status === 'rejected' || unpacked.status === 'rejected') {
				// Bad input: the early reads are not waited for (an unreachable master would hold the answer back).
				stopRunningCommands();
				await remote.close();
			}

			if (prepared.status === 'rejected') {
				// Refused input leaves nothing behind, not even the binaries unpacked meanwhile.
				if (!unpackedBefore) {
					rmSync(this.options.workspace.binariesDir(config.version), {recursive: true, force: true});
				}

				throw prepared.reason;
			}

			if (unpacked.status === 'rejected') {
				throw unpacked.reason;
			}

			const checks = prepared.value;
			const binaries = unpacked.value;
			checks.binaries = binaries;
			this.state.setRun({status: 'running', startedAt: new Date().toISOString(), error: undefined});
			runStarted = true;
			// Read-only, beside preflight: the files of every step, one round trip per master once its connection is up.
			readingAhead = Promise.all(config.masters.filter(master => !this.skipHosts.has(master.name)).map(async master => checks.readAhead.read(checks, master, () => steps.flatMap(step => (step.reads ? [{step: step.id, paths: step.reads(checks, master)}] : [])))));
			await this.runStep(preflight, checks);
			const context = await this.prepare(true, {remote: checks.remote, readAhead: checks.readAhead});
			context.binaries = binaries;
			this.state.update(state => {
				state.version = config.version;
			});
			for (const wave of waves(steps.filter(step => step !== preflight))) {
				await this.runWave(wave, context);
			}

			const skipped = [...this.skipHosts];
			this.state.setRun(skipped.length > 0 ? {status: 'failed', step: undefined, host: skipped.join(','), error: `skipped on request: ${skipped.join(', ')}`} : {status: 'done', step: undefined, host: undefined});
			const installed = config.masters.length - skipped.length;
			await this.closeConnections();
			release();
			this.emit({type: 'finished', outcome: 'done', message: `${installed} master(s) installed${skipped.length > 0 ? `; skipped ${skipped.join(', ')}: run apply again to install ${skipped.length === 1 ? 'it' : 'them'}` : ''}`, durationMs: Math.round(performance.now() - started)});
		} catch (error) {
			const stopped = error instanceof StopRequested;
			// Bad input found before the run started (a wrong tarball, a busy state folder) records nothing.
			if (runStarted) {
				this.state.setRun({status: stopped ? 'stopped' : 'failed', error: error instanceof Error ? this.options.runner.redact(error.message) : String(error)});
			}

			// Not cut off by the closing: it would open a connection of its own.
			await readingAhead;
			await this.closeConnections();
			release?.();
			this.emit({type: 'finished', outcome: stopped ? 'stopped' : 'failed', message: error instanceof Error ? this.options.runner.redact(error.message) : String(error), durationMs: Math.round(performance.now() - started)});
			throw error;
		}
	}

	private async closeConnections(): Promise<void> {
		await this.context?.remote.close();
	}

	private async binaries() {
		const {config, workspace, runner} = this.options;
		let tarball = config.binaries.tarball;
		if (!tarball) {
			this.emit({type: 'local', message: `download ${config.binaries.url}`});
			tarball = await downloadTarball(config.binaries.url!, config.binaries.sha256, workspace, (bytes, total) => this.emit({type: 'local', message: 'download', bytes, total}));
		}

		this.emit({type: 'local', message: `unpack ${tarball}`});
		return unpackBinaries(config, workspace, runner, tarball);
	}

	/**
	 * Steps that need nothing from each other run side by side (the binaries stream while the
	 * certificates and configs are written). Every step of the wave settles before the first
	 * reason to end the run is raised: a question refused, then a failure, then a stop.
	 */
	private async runWave(wave: StepDefinition[], context: StepContext): Promise<void> {
		const settled = await Promise.allSettled(wave.map(async step => this.runStep(step, context)));
		const reasons = settled.flatMap(result => (result.status === 'rejected' ? [result.reason as unknown] : []));
		const failures = reasons.filter((reason): reason is ApplyFailed => reason instanceof ApplyFailed);
		if (failures.length > 0) {
			// Recorded for the first step in order that failed, whichever finished last.
			this.state.setRun({status: 'failed', step: failures[0]!.step, host: [...new Set(failures[0]!.failures.map(failure => failure.host))].join(', ')});
		}

		const first = reasons.find(reason => reason instanceof PromptRefused)
			?? (failures.length > 0 ? new ApplyFailed(failures[0]!.step, failures.flatMap(failure => failure.failures)) : undefined)
			?? reasons[0];
		if (first !== undefined) {
			throw first;
		}
	}

	private async runStep(step: StepDefinition, context: StepContext): Promise<void> {
		const started = performance.now();
		const {masters} = this.options.config;
		this.throwIfStopping();
		this.emit({type: 'step-start', step: step.id, title: step.title, hosts: step.scope === 'cluster' ? [clusterHost] : masters.map(master => master.name)});
		const live = step.rollingWhenLive === true && (masters.some(master => this.state.host(step.id, master.name)?.status === 'done') || await this.anyApiserverAnswers(context));
		// Settles to the error it raised, if any, so that the masters' outcomes are all collected first.
		const beside = step.beside?.(context).then(() => undefined, (error: unknown) => error ?? new Error('failed'));
		const outcomes = step.scope === 'cluster'
			? [await this.runCluster(step, context)]
			: live
				? await this.runRolling(step, context)
				: await Promise.all(masters.map(async master => (this.skipHosts.has(master.name) ? this.skipHost(step, master) : this.runHost(step, context, master, master.name))));
		const refused = outcomes.find(outcome => outcome.refused)?.refused;
		const failures = outcomes.flatMap(outcome => (outcome.failure ? [outcome.failure] : []));
		const besideError = await beside;
		// A stop asked while the step ran ends the run there, as it would between actions.
		const stoppedBeside = besideError instanceof StopRequested || (beside !== undefined && this.stopping);
		if (besideError && !stoppedBeside) {
			const failure = toFailure(besideError, step.id, clusterHost, this.options.runner);
			failures.push(failure);
			this.emit({type: 'host-done', step: step.id, host: clusterHost, outcome: 'failed', failure, durationMs: Math.round(performance.now() - started)});
		}

		// A stop asked while the masters finished still stops before the cross-master work.
		const stoppedBeforeAfterAll = step.afterAll !== undefined && this.stopping && failures.length === 0 && !refused;
		if (failures.length === 0 && !refused && step.afterAll && !stoppedBeforeAfterAll) {
			try {
				await step.afterAll(context);
			} catch (error) {
				const failure = toFailure(error, step.id, clusterHost, this.options.runner);
				failures.push(failure);
				this.emit({type: 'host-done', step: step.id, host: clusterHost, outcome: 'failed', failure, durationMs: 0});
			}
		}

		const stopped = stoppedBeforeAfterAll || stoppedBeside || outcomes.some(outcome => outcome.outcome === 'stopped');
		const overall: HostOutcome = failures.length > 0 ? 'failed' : stopped ? 'stopped' : outcomes.every(outcome => outcome.outcome === 'skipped' || outcome.outcome === 'excluded') ? 'skipped' : 'done';
		this.emit({type: 'step-done', step: step.id, outcome: overall, durationMs: Math.round(performance.now() - started)});
		if (refused) {
			throw refused;
		}

		if (failures.length > 0) {
			this.state.setRun({status: 'failed', step: step.id, host: failures.map(failure => failure.host).join(', ')});
			throw new ApplyFailed(step.id, failures);
		}

		if (stopped) {
			const stoppedHosts = outcomes.flatMap((outcome, index) => (outcome.outcome === 'stopped' ? [step.scope === 'cluster' ? clusterHost : masters[index]!.name] : []));
			const where = stoppedHosts.length > 0 ? stoppedHosts : [clusterHost];
			this.state.setRun({status: 'stopped', step: step.id, host: where.join(', ')});
			throw new StopRequested();
		}
	}

	/** A control plane this install has no record of may already serve (taking over a cluster): any HTTP answer counts. */
	private async anyApiserverAnswers(context: StepContext): Promise<boolean> {
		const answers = await Promise.all(this.options.config.masters.map(async master => context.probe(master.ip, 6443, '/healthz', adminTls(context))));
		return answers.some(answer => answer.status > 0);
	}

	/**
	 * One master after the other; after a failure the rest are left as they are, still serving.
	 * The read-only checks run side by side first: only masters with work to do take their turn.
	 */
	private async runRolling(step: StepDefinition, context: StepContext): Promise<HostResult[]> {
		const {masters} = this.options.config;
		const checked = await Promise.all(masters.map(async master => {
			if (this.skipHosts.has(master.name)) {
				return undefined;
			}

			const record = this.state.host(step.id, master.name);
			try {
				const verification = await step.verify(context, master, record, fingerprint(inputActions(step, context, master)));
				return verification.done ? verification : undefined;
			} catch {
				// Found again, and reported, when the master takes its turn.
				return undefined;
			}
		}));
		const outcomes: HostResult[] = [];
		for (const [index, master] of masters.entries()) {
			const failed = outcomes.some(outcome => outcome.outcome === 'failed' || outcome.outcome === 'stopped');
			outcomes.push(this.skipHosts.has(master.name) || failed ? this.skipHost(step, master, failed ? `not touched after an earlier master failed ${step.id}` : undefined) : await this.runHost(step, context, master, master.name, checked[index]));
		}

		return outcomes;
	}

	/** A master the operator chose to leave out of this run: nothing is done or recorded for it. */
	private skipHost(step: StepDefinition, master: Master, reason = 'skipped on request for this run'): HostResult {
		this.emit({type: 'host-done', step: step.id, host: master.name, outcome: 'excluded', detail: reason, durationMs: 0});
		return {outcome: 'excluded'};
	}

	/** Cluster-wide steps run through the first master that can do them. */
	private async runCluster(step: StepDefinition, context: StepContext): Promise<HostResult> {
		let last: HostResult = {outcome: 'failed'};
		for (const master of this.options.config.masters.filter(each => !this.skipHosts.has(each.name))) {
			last = await this.runHost(step, context, master, clusterHost);
			if (last.outcome !== 'failed' || last.refused) {
				return last;
			}
		}

		return last;
	}

	/** `verified`: a verification already made for this master in this run (rolling steps check side by side first). */
	private async runHost(step: StepDefinition, context: StepContext, master: Master, recordName: string, verified?: Verification): Promise<HostResult> {
		const started = performance.now();
		const elapsed = () => Math.round(performance.now() - started);
		const inputs = fingerprint(inputActions(step, context, master));
		const record = this.state.host(step.id, recordName);
		this.emit({type: 'host-start', step: step.id, host: recordName});
		this.state.setRun({status: 'running', step: step.id, host: recordName});
		try {
			this.throwIfStopping();
			const verification = verified ?? await step.verify(context, master, record, inputs);
			if (verification.done) {
				// What was verified in place is recorded as ours, so a later change to it is not taken for a hand edit.
				const files = Object.fromEntries(uploadsOf(step.plan(context, master)).map(upload => [upload.path, upload.sha256]));
				const current = this.state.host(step.id, recordName);
				this.state.recordHost(step.id, recordName, {...current, files: {...current?.files, ...files}, status: 'done', at: record?.at ?? new Date().toISOString(), inputs, note: verification.detail, error: undefined});
				this.emit({type: 'host-done', step: step.id, host: recordName, outcome: 'skipped', detail: verification.detail, durationMs: elapsed()});
				return {outcome: 'skipped'};
			}

			this.state.recordHost(step.id, recordName, {...kept(record), status: 'running', at: new Date().toISOString(), inputs});
			const note = await step.run(context, master, inputs, verification);
			this.state.recordHost(step.id, recordName, {...kept(this.state.host(step.id, recordName)), status: 'done', at: new Date().toISOString(), inputs, note});
			this.emit({type: 'host-done', step: step.id, host: recordName, outcome: 'done', detail: note, durationMs: elapsed()});
			return {outcome: 'done'};
		} catch (error) {
			if (error instanceof StopRequested) {
				this.emit({type: 'host-done', step: step.id, host: recordName, outcome: 'stopped', durationMs: elapsed()});
				return {outcome: 'stopped'};
			}

			const failure = toFailure(error, step.id, master.name, this.options.runner);
			this.state.recordHost(step.id, recordName, {...kept(this.state.host(step.id, recordName)), status: 'failed', at: new Date().toISOString(), inputs, error: failure.message});
			this.emit({type: 'host-done', step: step.id, host: recordName, outcome: 'failed', failure, durationMs: elapsed()});
			// A question that could not be answered ends the run once every host has settled.
			return {outcome: 'failed', failure, refused: error instanceof PromptRefused ? error : undefined};
		}
	}
}

/** The steps in order, grouped: a step joins the wave before it unless it needs one of that wave's steps. */
function waves(ordered: StepDefinition[]): StepDefinition[][] {
	const grouped: StepDefinition[][] = [];
	for (const step of ordered) {
		const last = grouped.at(-1);
		if (last && !last.some(each => step.needs.includes(each.id))) {
			last.push(step);
		} else {
			grouped.push([step]);
		}
	}

	return grouped;
}

/** What a host record carries from one attempt to the next: files written (and their identities) and services started. */
function kept(record: HostRecord | undefined): Pick<HostRecord, 'files' | 'stats' | 'services'> {
	return {files: record?.files, stats: record?.stats, services: record?.services};
}

type HostResult = {outcome: HostOutcome; failure?: FailureInfo; refused?: PromptRefused};

function toFailure(error: unknown, step: string, host: string, runner: Runner): FailureInfo {
	if (error instanceof StepError) {
		return {step, host: error.host, message: runner.redact(error.message), command: error.command, output: error.output, fix: error.fix};
	}

	const message = error instanceof Error ? error.message : String(error);
	return {step, host, message: runner.redact(`${step} on ${host}: ${message}`), command: '', output: ''};
}

async function readEtcdFiles(config: ResolvedConfig): Promise<{ca?: string; cert?: string; key?: string}> {
	const read = async (file: string | undefined, field: string) => (file ? readLocalText(file, {field, kind: 'pem', fix: `point ${field} at the file itself (a regular file)`}) : undefined);
	return {ca: await read(config.etcd.caFile, 'etcd.caFile'), cert: await read(config.etcd.certFile, 'etcd.certFile'), key: await read(config.etcd.keyFile, 'etcd.keyFile')};
}
