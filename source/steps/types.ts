import type {ResolvedConfig} from '../config/load.js';
import type {Master} from '../config/schema.js';
import type {Material} from '../pki/material.js';
import type {Artifact} from '../render/artifacts.js';
import type {Remote} from '../remote/ssh.js';
import type {Runner} from '../runner.js';
import type {HostRecord, Progress} from '../state/store.js';
import type {Workspace} from '../workspace.js';
import type {Prompter} from '../engine/prompts.js';
import type {Api, Probe} from '../remote/health.js';
import type {ServicesSeen} from './readiness.js';
import type {CheckResult} from './preflight.js';
import type {FilesReadAhead} from './files.js';
import type {MembershipChange} from './membership.js';

/** A step's name within its operation ("start"); the state keeps it as "install/start". */
export type StepId = string;

/** A server binary as sent: `file` holds it gzip-compressed when gzipBytes is set, else as it is; sha256 and bytes are of the binary itself. */
export type BinaryFile = {name: string; file: string; sha256: string; bytes: number; gzipBytes?: number};

/** One thing a step does on a host: data, so that plan can print it and apply can run it. */
export type PlannedAction =
	| {kind: 'upload'; path: string; mode: number; sha256: string; bytes: number; secret: boolean; source: {content: string} | {gzipFile: string; gzipBytes: number} | {file: string}; label: string}
	| {kind: 'remote'; script: string; display?: string}
	/** Done from this workstation (an API call to an apiserver). */
	| {kind: 'local'; display: string}
	| {kind: 'check'; description: string};

export type StepContext = {
	config: ResolvedConfig;
	workspace: Workspace;
	runner: Runner;
	remote: Remote;
	/** The running operation's progress. */
	state: Progress;
	prompter: Prompter;
	artifacts: Artifact[];
	material: Material;
	/** Unpacked server binaries; undefined until the binaries are unpacked (plan before the first apply). */
	binaries: BinaryFile[] | undefined;
	/** Asks an apiserver's health endpoint over TLS (tests put a fake here). */
	probe: Probe;
	/** Calls an apiserver's API over TLS (tests put a fake here). */
	api: Api;
	/** Files facts read for several steps in one round trip; readRemoteFiles takes from it. */
	readAhead: FilesReadAhead;
	/** Services' readiness a start step's check read, for the next start step's (see ServicesSeen). */
	servicesSeen: ServicesSeen;
	/** Reports per-host progress to the views. */
	progress: (step: StepId, host: string, update: {message?: string; bytes?: number; total?: number}) => void;
	/** Per master, the remote paths this run wrote: a service reading one must restart. */
	changedFiles: Map<string, Set<string>>;
	/** Called once a file carrying key material (certs, encryption) is in place on a master. */
	materialShipped: () => void;
	/** Reports one check's result (preflight) to the views. */
	check: (step: StepId, host: string, result: CheckResult) => void;
	/** Masters left out of this run on the operator's request: not contacted at all. */
	skipped: ReadonlySet<string>;
	/** Asks the engine whether the operator asked to stop; checked between actions. */
	throwIfStopping: () => void;
	/** What the operator asked of etcd snapshots (--no-backup, backup --out). */
	backup: BackupOptions;
	/** Tells the views something the operator must know but that stops nothing (a snapshot not taken). */
	warn: (message: string) => void;
	/** Masters the config adds, removes or gives a new address, against the state (see membership.ts). */
	membership?: MembershipChange;
};

/** skip: --no-backup (no snapshot before an upgrade or a reset); out: the file backup writes instead of one in the state folder. */
export type BackupOptions = {skip?: boolean; out?: string};

/** `observed`: what verify read on the host, handed to the run that follows it (one read, not two). */
export type Verification = {done: boolean; detail?: string; observed?: unknown};

export type StepDefinition = {
	id: StepId;
	title: string;
	/** Steps whose work this one relies on. */
	needs: StepId[];
	/** each-master: runs on every master in parallel; cluster: once, through the first reachable master. */
	scope: 'each-master' | 'cluster';
	/** What the step will do on the host, for plan and for the inputs fingerprint. */
	plan: (context: StepContext, master: Master) => PlannedAction[];
	/**
	 * What its result depends on, when narrower than every each-master step it needs and its own plan
	 * (the fingerprint recorded when it is done; the plan says "changed" when it differs).
	 */
	inputs?: (context: StepContext, master: Master) => PlannedAction[];
	/** The remote files verify reads: read for every step at once at the start of apply. */
	reads?: (context: StepContext, master: Master) => string[];
	/** A read of the master's live state that verify may take, sent beside the files' at the start of apply. */
	readAhead?: (context: StepContext, master: Master) => Promise<void>;
	/** Reads the host (not the state) to tell whether the step's result is in place for these inputs. */
	verify: (context: StepContext, master: Master, record: HostRecord | undefined, inputs: string) => Promise<Verification>;
	/** Does the work; returns a short note for the state and the views. */
	run: (context: StepContext, master: Master, inputs: string, verification?: Verification) => Promise<string | undefined>;
	/** The masters it runs on (each-master) or may go through (cluster), in order; every master unless said. */
	hosts?: (context: StepContext) => Master[];
	/**
	 * parallel (unless said): every master at once. rolling: one master after the other, the rest left
	 * as they are after a failure. rolling-when-live: rolling once a control plane serves, so that the others keep serving.
	 */
	order?: 'parallel' | 'rolling' | 'rolling-when-live';
	/**
	 * Steps of the same wave, before this one, that it waits for only once a control plane serves
	 * (see controlPlaneServes). On a new cluster nothing is enabled before its start step, so the
	 * order between these steps' files matters only on a running cluster; the needs listed here do
	 * not make a wave of their own.
	 */
	afterWhenLive?: StepId[];
	/** A check: it reads and changes nothing, so a run in which only checks ran changed nothing. */
	readsOnly?: true;
};
