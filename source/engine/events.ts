import type {RunKind} from '../operations/run-kind.js';
import type {MaterialChange} from '../pki/material.js';
import type {AdminContext} from '../render/artifacts.js';
import type {CommandEvent} from '../runner.js';
import type {StepId} from '../steps/types.js';
import type {CheckResult} from '../steps/preflight.js';

/** skipped: verified as already done; excluded: left out of this run on the operator's request. */
export type HostOutcome = 'done' | 'skipped' | 'failed' | 'stopped' | 'excluded';

export type FailureInfo = {step: string; host: string; message: string; command: string; output: string; fix?: string};

/** What the engine tells its views. The views never run anything themselves. */
export type EngineEvent =
	| CommandEvent
	| {type: 'warning'; message: string}
	| {type: 'material'; changes: MaterialChange[]}
	| {type: 'local'; message: string; bytes?: number; total?: number}
	/** The admin kubeconfig was written here; endpoint (HOST:PORT) when it goes through controlPlaneEndpoint. */
	| {type: 'admin-kubeconfig'; file: string; contexts: AdminContext[]; endpoint?: string}
	/** A recorded run begins: what it is (Install, Resume, Upgrade a → b, Apply changes), on which masters. */
	| ({type: 'run-start'; masters: string[]} & RunKind)
	| {type: 'step-start'; step: StepId; title: string; hosts: string[]}
	| {type: 'host-start'; step: StepId; host: string}
	| {type: 'host-progress'; step: StepId; host: string; message?: string; bytes?: number; total?: number}
	| ({type: 'check'; step: StepId; host: string} & CheckResult)
	| {type: 'host-done'; step: StepId; host: string; outcome: HostOutcome; detail?: string; failure?: FailureInfo; durationMs: number}
	| {type: 'step-done'; step: StepId; outcome: HostOutcome; durationMs: number}
	| {type: 'finished'; outcome: 'done' | 'failed' | 'stopped'; message: string; durationMs: number};

export type EventListener = (event: EngineEvent) => void;
