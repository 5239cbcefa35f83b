import {existsSync, rmSync} from 'node:fs';
import path from 'node:path';
import type {ResolvedConfig} from '../config/load.js';
import {InputError, InputErrors, PromptRefused} from '../errors.js';
import {writeFileAtomic} from '../files.js';
import * as operations from '../operations/index.js';
import type {ChangingOperation, FetchingOperation, Operation, RunFacts} from '../operations/types.js';
import type {KeyPair} from '../pki/certs.js';
import {ensureMaterial, type LeafName, type Material, type MaterialChange} from '../pki/material.js';
import {adminContexts, releaseBinDir, renderArtifacts} from '../render/artifacts.js';
import {misfitError, releaseMisfits} from '../render/fit.js';
import {callApi, getHealth, type Api, type Probe} from '../remote/health.js';
import {Remote, throughSsh} from '../remote/ssh.js';
import {stopRunningCommands, type Runner} from '../runner.js';
import {readLocalText} from '../safe-read.js';
import {StateStore} from '../state/store.js';
import {unpackBinaries, unpackedBinaries} from '../steps/binaries.js';
import {certificateRowsRead} from '../steps/certs-read.js';
import type {PerMasterReads} from '../steps/per-master-reads.js';
import {cisResultsRead, type CisResult} from '../steps/cis.js';
import type {CertificateRow} from '../pki/inventory.js';
import {downloadTarball} from '../steps/download.js';
import {FilesReadAhead} from '../steps/files.js';
import {ServicesSeen} from '../steps/readiness.js';
import {previewMaster, unpackedReleases, type ChangePreview, type HostPreview, type PendingBinaries} from '../steps/preview.js';
import {runKind} from '../operations/run-kind.js';
import {controlPlaneServes} from '../steps/liveness.js';
import {releaseChange, skewRefusal} from '../upgrade/skew.js';
import {wayBack} from '../upgrade/way-back.js';
import {binaryNames} from '../steps/binaries.js';
import {readFactsEarly} from '../steps/preflight.js';
import {describeMembership, membershipChange, refuseMembership} from '../steps/membership.js';
import {refuseLostSnapshot, snapshotStepId} from '../steps/snapshot.js';
import type {BackupOptions, BinaryFile, StepContext} from '../steps/types.js';
import type {Workspace} from '../workspace.js';
import {runCheckSteps} from './checks.js';
import type {EngineEvent, EventListener, FailureInfo} from './events.js';
import {planView, stepHosts, type PlanView} from './plan.js';
import type {Prompter} from './prompts.js';
import {ApplyFailed, checksFirst, StepRunner, StopRequested, toFailure, waves} from './step-runner.js';

export {ApplyFailed, StopRequested} from './step-runner.js';
export {clusterHost, type ActionView, type PlanView} from './plan.js';

export type EngineOptions = {
	config: ResolvedConfig;
	workspace: Workspace;
	runner: Runner;
	prompter: Prompter;
	rotate?: string[];
	/** Leaves whose key pair is made anew with their certificate (certs renew --new-keys). */
	newKeys?: LeafName[];
	/** apply/plan --allow-downgrade: a release older than a master runs, within its minor release (see upgrade/skew.ts). */
	allowDowngrade?: boolean;
	/** How apiserver health is asked; the real TLS client unless a test replaces it. */
	probe?: Probe;
	api?: Api;
	/** Masters the config no longer lists that no longer answer: decommissioned without being contacted. */
	forceRemove?: string[];
	/** etcd snapshots: --no-backup, and the file backup writes (--out). */
	backup?: BackupOptions;
};

export type RunOptions = {
	/** Ask before touching anything (the CLI); the UI asked already. */
	confirm: boolean;
	/** Masters left out of this run (recorded operations). */
	skipHosts?: string[];
	/** reset: also delete the local CA, keys and state. */
	removeLocal?: boolean;
};

/**
 * Runs operations (named lists of steps) on the masters: renders the material, plans, runs each
 * step and records progress after every action. It imports no view and no operation's step list;
 * views subscribe to its events and answer its prompts.
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

	/** Stop after the action under way; the run then ends with outcome "stopped". */
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
	async prepare(persist: boolean, options: {operation?: Operation; quiet?: boolean; remote?: Remote; readAhead?: FilesReadAhead; servicesSeen?: ServicesSeen; refuseMisfits?: boolean} = {}): Promise<StepContext> {
		const {config, workspace, runner} = this.options;
		if (!options.quiet) {
			for (const message of config.warnings) {
				this.emit({type: 'warning', message});
			}
		}

		const {material, changes, record} = await ensureMaterial(config, workspace, {rotate: this.options.rotate, newKeys: this.options.newKeys, previous: this.state.snapshot.material, keptKeys: this.state.snapshot.keptEncryptionKeys, persist, keyCache: this.keyCache});
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
			state: this.state.progress((options.operation ?? operations.install).id),
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
			servicesSeen: options.servicesSeen ?? new ServicesSeen(),
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
			backup: this.options.backup ?? {},
			warn: message => this.emit({type: 'warning', message}),
			membership: membershipChange(config, this.state.snapshot, this.options.forceRemove),
		};
		return this.context;
	}

	private registerSecrets(material: Material): void {
		for (const key of material.encryptionKeys) {
			this.options.runner.addSecret(key.secret);
		}

		for (const pem of [material.ca.keyPem, ...Object.values(material.leaves).map(leaf => leaf.keyPem), material.serviceAccount?.privateKeyPem]) {
			if (pem) {
				this.options.runner.addSecret(pem);
				// Kubeconfigs carry keys as base64 (client-key-data).
				this.options.runner.addSecret(Buffer.from(pem).toString('base64'));
			}
		}
	}

	/**
	 * Everything a run of the operation would do, per step and per host, with hashes and secrets masked.
	 * Touches nothing; the masters in skipHosts are not contacted.
	 */
	async plan(operation: Operation = operations.install, options: {skipHosts?: string[]} = {}): Promise<PlanView> {
		this.refuseSkew(operation);
		const materialChanges: MaterialChange[] = [];
		const unsubscribe = this.subscribe(event => {
			if (event.type === 'material') {
				materialChanges.push(...event.changes);
			}
		});
		if (operation.mode === 'recorded') {
			refuseMembership(this.options.config, membershipChange(this.options.config, this.state.snapshot, this.options.forceRemove), this.options.forceRemove);
		}

		const context = await this.prepare(false, {operation});
		unsubscribe();
		const snapshot = this.state.snapshot;
		const changes = operation.mode === 'recorded' ? await this.previewChanges(operation, context, new Set(options.skipHosts)) : undefined;
		const view = planView(operation, context, this.state, materialChanges, runKind(snapshot, operation, this.options.config.version), changes);
		const masters = operation.mode === 'recorded' ? describeMembership(this.options.config, context.membership!) : [];
		return masters.length > 0 ? {...view, masters} : view;
	}

	/**
	 * What apply would change on each master, read from the masters (one round trip each) once this
	 * install is recorded on them; before, nothing of it is there and every file is new (nothing is read).
	 * A master that cannot be read, or is skipped, is marked unread with the reason: the others are still shown.
	 */
	private async previewChanges(operation: Operation, context: StepContext, skipHosts: Set<string>): Promise<ChangePreview> {
		const {config, workspace} = this.options;
		const snapshot = this.state.snapshot;
		const installed = config.masters.filter(master => Object.entries(snapshot.steps).some(([key, step]) => key.startsWith(`${operation.id}/`) && step?.hosts[master.name]));
		// As apply decides it (one function): a control plane that serves restarts one master at a time.
		const restartOrder = await controlPlaneServes({...context, skipped: skipHosts}, this.state.progress(operation.id), operation.steps) ? 'one master at a time' : 'all masters at once';
		const upgrade = releaseChange(snapshot, config.masters.map(master => master.name), config.kubeVersion);
		if (installed.length === 0) {
			await context.remote.close();
			return {read: false, hosts: [], restartOrder, upgrade};
		}

		// The units run the release's folder's binaries: that is the path they name.
		const binariesPending: PendingBinaries | undefined = context.binaries ? undefined : {paths: binaryNames(config).map(name => `${releaseBinDir(config)}/${name}`), from: snapshot.version, to: config.version};
		const releases = unpackedReleases(workspace.releasesDir);
		try {
			const hosts = await Promise.all(config.masters.map(async (master): Promise<HostPreview> => {
				if (skipHosts.has(master.name)) {
					return {host: master.name, files: [], services: [], unread: 'left out with --skip, not contacted'};
				}

				try {
					return await previewMaster(operation, context, master, releases, snapshot.restartTimes?.[master.name], binariesPending?.from === config.version ? undefined : binariesPending);
				} catch (error) {
					const failure = toFailure(error, 'plan', master.name, this.options.runner);
					return {host: master.name, files: [], services: [], unread: `${master.ip}: ${failure.message}${failure.fix ? `. Fix: ${failure.fix}` : ''}`};
				}
			}));
			return {read: true, hosts, restartOrder, binariesPending, upgrade};
		} finally {
			await context.remote.close();
		}
	}

	/**
	 * Runs any operation with the one per-step loop. Recorded operations resume from the state and
	 * raise ApplyFailed or StopRequested; check operations answer whether every check passed.
	 */
	async run(operation: Operation, options: RunOptions): Promise<boolean> {
		switch (operation.mode) {
			case 'recorded': {
				await this.runRecorded(operation, options);
				return true;
			}

			case 'sweep': {
				await this.sweep(operation, options);
				return true;
			}

			case 'checks': {
				return this.check(operation);
			}

			case 'fetch': {
				await this.fetch(operation);
				return true;
			}
		}
	}

	/** apply: the install, resumed where an earlier run stopped, verifying done work instead of trusting the record. */
	async apply(options: {confirm: boolean; skipHosts?: string[]}): Promise<void> {
		await this.run(operations.install, options);
	}

	/**
	 * Stops and removes on every master what this install put there: the four units, then every file
	 * whose content is still what this install wrote (a file changed since is kept and named). etcd's
	 * data is not touched. The local CA, keys and state folder stay unless removeLocal is asked.
	 */
	async reset(options: {confirm: boolean; removeLocal?: boolean}): Promise<void> {
		refuseLostSnapshot(options.removeLocal, this.options.backup, this.options.workspace.root);
		await this.run(operations.reset, options);
	}

	/** An etcd snapshot through the first reachable master, copied here (state folder or --out) and checked; no master changes. */
	async backup(): Promise<void> {
		await this.run(operations.backup, {confirm: false});
	}

	/** The preflight checks alone, on every master, recording nothing; true when none failed. */
	async preflight(): Promise<boolean> {
		return this.run(operations.preflight, {confirm: false});
	}

	/** The verify checks alone (the command), recording nothing; true when none failed. */
	async verify(): Promise<boolean> {
		const {workspace} = this.options;
		if (!this.state.snapshot.material || !existsSync(path.join(workspace.renderedDir, 'admin.kubeconfig'))) {
			throw new InputError('--state-dir', workspace.root, 'holds no install of this cluster to verify', 'run apply first, or pass the --state-dir and --config of the install');
		}

		return this.run(operations.verify, {confirm: false});
	}

	/** The CIS benchmark's control-plane checks, read from every master; records nothing. */
	async cis(): Promise<Map<string, CisResult[] | FailureInfo>> {
		return this.readEachMaster(operations.cis, cisResultsRead);
	}

	/** Every certificate this install manages, read from every master (one round trip each); records nothing. */
	async certificates(): Promise<Map<string, CertificateRow[] | FailureInfo>> {
		return this.readEachMaster(operations.certificates, certificateRowsRead);
	}

	/** A read operation's steps on every master at once; a master that fails is named with why, the others still read. */
	private async readEachMaster<T>(operation: Operation, reads: PerMasterReads<T[]>): Promise<Map<string, T[] | FailureInfo>> {
		const context = await this.prepare(false, {operation, quiet: true});
		const failures = new Map<string, FailureInfo>();
		try {
			for (const step of operation.steps) {
				await Promise.all(stepHosts(step, context).map(async master => {
					try {
						await step.run(context, master, '');
					} catch (error) {
						failures.set(master.name, toFailure(error, step.id, master.name, this.options.runner));
					}
				}));
			}
		} finally {
			await context.remote.close();
		}

		const read = reads.read(context);
		return new Map(this.options.config.masters.map(master => [master.name, failures.get(master.name) ?? read.get(master.name) ?? []]));
	}

	private async check(operation: Operation): Promise<boolean> {
		const context = await this.prepare(false, {operation, quiet: true});
		try {
			return await runCheckSteps(operation.steps, context, event => this.emit(event), this.options.runner);
		} finally {
			await context.remote.close();
		}
	}

	private stepRunner(operation: Operation, records: boolean): StepRunner {
		return new StepRunner({
			operation,
			config: this.options.config,
			runner: this.options.runner,
			state: this.state,
			emit: event => this.emit(event),
			skipHosts: this.skipHosts,
			isStopping: () => this.stopping,
			records,
		});
	}

	private runFacts(options: RunOptions): RunFacts {
		return {masters: this.options.config.masters.map(master => master.name), stateFolder: this.options.workspace.root, removeLocal: options.removeLocal ?? false};
	}

	/** Every master once, recording no progress: what failed is named, the rest is done (reset). */
	private async sweep(operation: ChangingOperation, options: RunOptions): Promise<void> {
		const started = performance.now();
		const {workspace} = this.options;
		await this.confirm(operation, options);

		const release = workspace.lock();
		const context = await this.prepare(false, {operation, quiet: true});
		await context.remote.closeLeftovers();
		const runner = this.stepRunner(operation, false);
		try {
			for (const step of operation.steps) {
				await runner.runStep(step, context);
			}
		} catch (error) {
			if (error instanceof ApplyFailed) {
				const message = error.step === snapshotStepId
					? `${error.message}: nothing was changed on the masters`
					: `${operation.noun} failed on ${error.failures.map(failure => failure.host).join(', ')}; run ${operation.command} again once they are reachable`;
				this.emit({type: 'finished', outcome: 'failed', message, durationMs: Math.round(performance.now() - started)});
			}

			throw error;
		} finally {
			await context.remote.close();
			release();
		}

		this.state.clearProgress();
		for (const master of this.options.config.masters) {
			this.state.forgetHost(master.name);
		}

		this.state.forgetMaterialInUse();
		if (options.removeLocal) {
			rmSync(workspace.root, {recursive: true, force: true});
		}

		this.emit({type: 'finished', outcome: 'done', message: operation.words.done({...this.runFacts(options), skipped: []}), durationMs: Math.round(performance.now() - started)});
	}

	/** Every step once, through the masters, nothing recorded as progress and nothing asked: no master changes (backup). */
	private async fetch(operation: FetchingOperation): Promise<void> {
		const started = performance.now();
		const elapsed = () => Math.round(performance.now() - started);
		const release = this.options.workspace.lock();
		try {
			const context = await this.prepare(false, {operation, quiet: true});
			const runner = this.stepRunner(operation, false);
			try {
				await context.remote.closeLeftovers();
				for (const step of operation.steps) {
					await runner.runStep(step, context);
				}
			} finally {
				await context.remote.close();
			}
		} catch (error) {
			this.emit({type: 'finished', outcome: error instanceof StopRequested ? 'stopped' : 'failed', message: this.options.runner.redact(error instanceof Error ? error.message : String(error)), durationMs: elapsed()});
			throw error;
		} finally {
			release();
		}

		this.emit({type: 'finished', outcome: 'done', message: operation.words.done({...this.runFacts({confirm: false}), skipped: []}), durationMs: elapsed()});
	}

	/** The operation's question, or the resume of the same operation where its last run stopped; the CLI asks, --yes answers. */
	private async confirm(operation: ChangingOperation, options: RunOptions): Promise<void> {
		if (!options.confirm) {
			return;
		}

		const resuming = operation.mode === 'recorded' ? this.state.snapshot.run : undefined;
		const confirmed = await this.options.prompter.ask({
			kind: operation.mode === 'sweep' ? 'confirm-reset' : 'confirm-apply',
			message: resuming && resuming.status !== 'done' && resuming.operation === operation.id
				? `Resume the ${operation.noun} stopped at ${resuming.step ?? 'the start'}${resuming.host ? ` on ${resuming.host}` : ''} on ${this.options.config.masters.length} master(s)?`
				: operation.words.question(this.runFacts(options)),
		});
		if (!confirmed) {
			throw new PromptRefused(`${operation.command} not confirmed`);
		}
	}

	/**
	 * Checks first: a wrong tarball or a master that fails preflight leaves no key material behind.
	 * The release is unpacked while key pairs are made in memory (crypto's thread pool): side by side.
	 */
	private async checkedInputs(operation: Operation): Promise<StepContext & {binaries: BinaryFile[]}> {
		const {config, workspace} = this.options;
		const unpackedBefore = existsSync(workspace.binariesDir(config.version));
		const remote = new Remote(this.options.runner, config);
		// A killed run's ssh sessions are ended before this run touches a master.
		await remote.closeLeftovers();
		// A master left out of this run is not contacted at all.
		readFactsEarly(remote, config, config.masters.filter(master => !this.skipHosts.has(master.name)));
		// The unpacking first: tar starts before key pairs keep this thread busy.
		const unpacking = this.binaries();
		const [unpacked, prepared] = await Promise.allSettled([unpacking, this.prepare(false, {operation, quiet: true, refuseMisfits: true, remote})]);
		if (prepared.status === 'rejected' || unpacked.status === 'rejected') {
			// Bad input: the early reads are not waited for (an unreachable master would hold the answer back).
			stopRunningCommands();
			await remote.close();
		}

		if (prepared.status === 'rejected') {
			// Refused input leaves nothing behind, not even the binaries unpacked meanwhile.
			if (!unpackedBefore) {
				rmSync(workspace.binariesDir(config.version), {recursive: true, force: true});
			}

			throw prepared.reason;
		}

		if (unpacked.status === 'rejected') {
			throw unpacked.reason;
		}

		return Object.assign(prepared.value, {binaries: unpacked.value});
	}

	/**
	 * A recorded operation: its checks (see checksFirst) run before any key material is made (a
	 * failure leaves nothing behind); then the steps in waves, verifying done work instead of trusting the record.
	 */
	private async runRecorded(operation: ChangingOperation, options: RunOptions): Promise<void> {
		const started = performance.now();
		const {config} = this.options;
		this.stopping = false;
		this.skipHosts = new Set(options.skipHosts ?? []);
		const unknown = [...this.skipHosts].filter(name => !config.masters.some(master => master.name === name));
		if (unknown.length > 0 || this.skipHosts.size >= config.masters.length) {
			throw new InputError('skip', [...this.skipHosts].join(','), unknown.length > 0 ? `names no master (${unknown.join(', ')})` : 'would skip every master', 'skip only some of the masters named in the config');
		}

		// Before the question: a release the masters cannot step to is bad input, and nothing is touched.
		this.refuseSkew(operation);

		// Masters that join or leave: refused input first, then said before the question.
		const membership = membershipChange(config, this.state.snapshot, this.options.forceRemove);
		refuseMembership(config, membership, this.options.forceRemove);
		for (const message of describeMembership(config, membership)) {
			this.emit({type: 'warning', message});
		}

		let release: (() => void) | undefined;
		let runStarted = false;
		let readingAhead: Promise<unknown> | undefined;
		try {
			// Asked before anything is made, so that a refusal leaves no trace.
			await this.confirm(operation, options);
			release = this.options.workspace.lock();
			const checks = await this.checkedInputs(operation);
			const {binaries} = checks;
			// Named once the input is known good, from the state before this run marks itself running.
			const kind = runKind(this.state.snapshot, operation, config.version);
			this.emit({type: 'run-start', masters: config.masters.filter(master => !this.skipHosts.has(master.name)).map(master => master.name), ...kind});
			this.state.setRun({operation: operation.id, status: 'running', startedAt: new Date().toISOString(), error: undefined});
			this.state.recordMasters(config.masters);
			runStarted = true;
			// Read-only, beside preflight, once each master's connection is up: the files of every step in one
			// round trip, and beside it what steps read ahead of the live state (a start step's check).
			readingAhead = Promise.all(config.masters.filter(master => !this.skipHosts.has(master.name)).flatMap(master => [
				checks.readAhead.read(checks, master, () => operation.steps.flatMap(step => (step.reads ? [{step: step.id, paths: step.reads(checks, master)}] : []))),
				...operation.steps.filter(step => step.readAhead).map(async step => {
					if (await checks.remote.connected(master)) {
						await step.readAhead!(checks, master);
					}
				}),
			]));
			const runner = this.stepRunner(operation, true);
			const checkSteps = checksFirst(operation.steps);
			for (const wave of waves(checkSteps)) {
				await runner.runWave(wave, checks);
			}

			const context = await this.prepare(true, {operation, remote: checks.remote, readAhead: checks.readAhead, servicesSeen: checks.servicesSeen});
			context.binaries = binaries;
			this.state.update(state => {
				state.version = config.version;
			});
			for (const wave of waves(operation.steps.slice(checkSteps.length))) {
				await runner.runWave(wave, context);
			}

			// A stop asked during the last wave (verify) ends the run as stopped, as one between two waves does.
			this.throwIfStopping();

			const skipped = [...this.skipHosts];
			this.state.setRun(skipped.length > 0 ? {operation: operation.id, status: 'failed', step: undefined, host: skipped.join(','), error: `skipped on request: ${skipped.join(', ')}`} : {operation: operation.id, status: 'done', step: undefined, host: undefined});
			// A read made ahead that no step took (a start that restarts whatever it would read) ends before the connections.
			await readingAhead;
			await this.closeConnections();
			release();
			const leftBehind = context.membership?.leftBehind ?? [];
			this.emit({type: 'finished', outcome: 'done', message: [operation.words.done({...this.runFacts(options), skipped, kind, changed: runner.changed}), ...leftBehind].join('; '), durationMs: Math.round(performance.now() - started)});
		} catch (error) {
			const stopped = error instanceof StopRequested;
			if (error instanceof ApplyFailed && runStarted) {
				error.wayBack = wayBack(this.state.snapshot, config.masters.map(master => master.name), config.kubeVersion, [...new Set(error.failures.map(failure => failure.host))]);
			}

			// Bad input found before the run started (a wrong tarball, a busy state folder) records nothing.
			if (runStarted) {
				this.state.setRun({operation: operation.id, status: stopped ? 'stopped' : 'failed', error: error instanceof Error ? this.options.runner.redact(error.message) : String(error)});
			}

			// Not cut off by the closing: it would open a connection of its own.
			await readingAhead;
			await this.closeConnections();
			release?.();
			const message = error instanceof Error ? this.options.runner.redact(error.message) : String(error);
			this.emit({type: 'finished', outcome: stopped ? 'stopped' : 'failed', message: error instanceof ApplyFailed && error.wayBack ? `${message}\n${error.wayBack}` : message, durationMs: Math.round(performance.now() - started)});
			throw error;
		}
	}

	/** A recorded operation brings every master to the config's release: refused when the skew policy forbids that step. */
	private refuseSkew(operation: Operation): void {
		const {config} = this.options;
		const refusal = operation.mode === 'recorded' ? skewRefusal(this.state.snapshot, config.masters.map(master => master.name), config.kubeVersion, this.options.allowDowngrade ?? false) : undefined;
		if (refusal) {
			throw refusal;
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
}

async function readEtcdFiles(config: ResolvedConfig): Promise<{ca?: string; cert?: string; key?: string}> {
	const read = async (file: string | undefined, field: string) => (file ? readLocalText(file, {field, kind: 'pem', fix: `point ${field} at the file itself (a regular file)`}) : undefined);
	return {ca: await read(config.etcd.caFile, 'etcd.caFile'), cert: await read(config.etcd.certFile, 'etcd.certFile'), key: await read(config.etcd.keyFile, 'etcd.keyFile')};
}
