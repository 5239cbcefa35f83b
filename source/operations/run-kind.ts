import type {InstallState} from '../state/store.js';
import type {Operation} from './types.js';

/**
 * What a run of a recorded operation is, for the words the views use: a first install, a resume of
 * a run that stopped, an upgrade to another release, or changes to a running cluster.
 */
export type RunKind =
	| {kind: 'install'; title: 'Install'}
	| {kind: 'resume'; title: 'Resume'}
	| {kind: 'upgrade'; title: string; from: string; to: string}
	| {kind: 'apply-changes'; title: 'Apply changes'}
	/** A day-2 operation other than the install (rotate-encryption-key): named by its title. */
	| {kind: 'operation'; title: string};

export function runKind(state: InstallState, operation: Operation, version: string): RunKind {
	const recorded = Object.keys(state.steps).some(key => key.startsWith(`${operation.id}/`));
	if (state.run?.operation === operation.id && state.run.status !== 'done') {
		return {kind: 'resume', title: 'Resume'};
	}

	if (operation.id !== 'install') {
		return {kind: 'operation', title: operation.title};
	}

	if (!recorded) {
		return {kind: 'install', title: 'Install'};
	}

	if (state.version && state.version !== version) {
		return {kind: 'upgrade', title: `Upgrade ${state.version} → ${version}`, from: state.version, to: version};
	}

	return {kind: 'apply-changes', title: 'Apply changes'};
}
