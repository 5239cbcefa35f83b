import type {Master} from '../config/schema.js';
import {sha256} from '../files.js';
import type {MaterialChange} from '../pki/material.js';
import type {Runner} from '../runner.js';
import type {StateStore} from '../state/store.js';
import type {Operation} from '../operations/types.js';
import type {RunKind} from '../operations/run-kind.js';
import type {ChangePreview} from '../steps/preview.js';
import type {PlannedAction, StepContext, StepDefinition, StepId} from '../steps/types.js';

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
	/** What a run would be: a first install, a resume, an upgrade or changes. */
	run: RunKind;
	/** What differs on the masters from what apply would write, and what would restart; absent for operations that write nothing. */
	changes?: ChangePreview;
	/** Masters that join or leave, and what that changes on the others, in words; absent when the masters stay as they are. */
	masters?: string[];
	steps: Array<{
		id: StepId;
		title: string;
		scope: StepDefinition['scope'];
		hosts: Array<{host: string; recorded?: string; inputsChanged: boolean; actions: ActionView[]}>;
	}>;
};

/** What a step does on a host, as one hash: a change means the step must run again. */
export function fingerprint(actions: PlannedAction[]): string {
	return sha256(JSON.stringify(actions.map(action => (action.kind === 'upload' ? {path: action.path, mode: action.mode, sha256: action.sha256} : action))));
}

/** The actions whose results a step depends on (start restarts when any file it runs with changed). */
export function inputActions(operation: Operation, step: StepDefinition, context: StepContext, master: Master): PlannedAction[] {
	if (step.inputs) {
		return step.inputs(context, master);
	}

	const upstream = operation.steps.filter(candidate => step.needs.includes(candidate.id) && candidate.scope === 'each-master');
	return [...upstream.flatMap(candidate => candidate.plan(context, master)), ...step.plan(context, master)];
}

/** The masters a step runs on (or may go through), in order. */
export function stepHosts(step: StepDefinition, context: StepContext): Master[] {
	return step.hosts?.(context) ?? context.config.masters;
}

/** Everything a run of the operation would do, per step and per host, with hashes and secrets masked. */
export function planView(operation: Operation, context: StepContext, state: StateStore, materialChanges: MaterialChange[], run: RunKind, changes?: ChangePreview): PlanView {
	const {config, runner} = context;
	const progress = state.progress(operation.id);
	const view: PlanView = {cluster: config.name, version: config.version, stateFile: state.path, materialChanges, run, changes, steps: []};
	for (const step of operation.steps) {
		const hosts = stepHosts(step, context);
		const masters = step.scope === 'cluster' ? hosts.slice(0, 1) : hosts;
		view.steps.push({
			id: step.id,
			title: step.title,
			scope: step.scope,
			hosts: masters.map(master => {
				const recordName = step.scope === 'cluster' ? clusterHost : master.name;
				const record = progress.host(step.id, recordName);
				const actions = step.plan(context, master);
				return {
					host: step.scope === 'cluster' ? `${clusterHost} (via ${master.name})` : master.name,
					recorded: record ? `${record.status} at ${record.at}` : undefined,
					// A step that only checks is checked again on every run anyway: new words in its check ("no
					// release change" where the install said "first install") are no change to run again.
					inputsChanged: record !== undefined && actions.some(action => action.kind !== 'check') && record.inputs !== fingerprint(inputActions(operation, step, context, master)),
					actions: actions.map(action => actionView(action, runner)),
				};
			}),
		});
	}

	return view;
}

function actionView(action: PlannedAction, runner: Runner): ActionView {
	const redact = (text: string) => runner.redact(text);
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
