import type {FailureInfo} from '../engine/events.js';
import {clusterHost, type PlanView} from '../engine/engine.js';
import {install, operations, type Operation} from '../operations/index.js';
import {stepKey, type InstallState, type RunRecord} from '../state/store.js';
import {stepScope, stepTitle, type Mark} from './run-model.js';
import type {Tone} from './theme.js';

export {summarizeMaterial} from './run-model.js';
export {orderDiff} from '../steps/diff.js';

export const markGlyph: Record<Mark, string> = {
	pending: '○',
	running: '◐',
	done: '✔',
	skipped: '↷',
	failed: '✘',
	stopped: '■',
	excluded: '–',
};

export const markTone: Record<Mark, Tone> = {
	pending: 'muted',
	running: 'info',
	done: 'ok',
	skipped: 'ok',
	failed: 'bad',
	stopped: 'warn',
	excluded: 'muted',
};

/** What a host's outcome means, in words. */
export const markWord: Record<Mark, string> = {
	pending: 'pending',
	running: 'running',
	done: 'done',
	skipped: 'already in place',
	failed: 'failed',
	stopped: 'stopped',
	excluded: 'skipped for this run',
};

/** 2026-11-25 22:57, in local time: when an earlier install ran. */
export function formatWhen(iso: string): string {
	const date = new Date(iso);
	if (Number.isNaN(date.getTime())) {
		return iso;
	}

	const pad = (value: number) => String(value).padStart(2, '0');
	return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ${pad(date.getHours())}:${pad(date.getMinutes())}`;
}

/** "An install from 2026-11-25 22:57 stopped at binaries on k8smaster02." */
export function resumeSentence(run: Omit<RunRecord, 'operation'> & {operation?: string}): string {
	const operation = operations.get(run.operation ?? install.id) ?? install;
	const where = run.step ? ` at ${run.step} (${stepTitle(run.step, operation)})${run.host ? ` on ${run.host}` : ''}` : run.host ? ` with ${run.host} left out` : ' before its first step';
	return `${article(operation.noun)} ${operation.noun} from ${formatWhen(run.startedAt)} stopped${where}.`;
}

function article(noun: string): string {
	return /^[aeiou]/i.test(noun) ? 'An' : 'A';
}

export type FailureChoice =
	| {kind: 'retry'; label: string}
	| {kind: 'skip'; hosts: string[]; label: string}
	| {kind: 'abort'; label: string};

/**
 * What the operator may do after a failed step. Skipping is offered only for a step that runs on
 * each master, and only while at least one master would still be installed.
 */
export function failureChoices(failures: FailureInfo[], masters: string[], alreadySkipped: string[], operation: Operation = install): FailureChoice[] {
	const choices: FailureChoice[] = [{kind: 'retry', label: alreadySkipped.length > 0 ? `Retry (apply again, still without ${alreadySkipped.join(', ')})` : 'Retry (apply again; finished work is verified, not redone)'}];
	const step = failures[0]?.step;
	const failedHosts = [...new Set(failures.map(failure => failure.host))].filter(host => masters.includes(host));
	if (step !== undefined && stepScope(step, operation) === 'each-master' && failedHosts.length > 0) {
		const skip = [...new Set([...alreadySkipped, ...failedHosts])];
		const remaining = masters.filter(master => !skip.includes(master));
		if (remaining.length > 0) {
			choices.push({kind: 'skip', hosts: skip, label: `Skip ${failedHosts.join(', ')} for this run (apply again on ${remaining.join(', ')})`});
		}
	}

	choices.push({kind: 'abort', label: 'Abort (progress is kept)'});
	return choices;
}

/** One cell of a steps × masters grid. */
export type GridCell = {mark: Mark | 'changed'; text: string};
export type GridRow = {id: string; title: string; scope: 'each-master' | 'cluster'; cells: Record<string, GridCell>; span?: GridCell};
export type Grid = {hosts: string[]; rows: GridRow[]};

function actionSummary(actions: PlanView['steps'][number]['hosts'][number]['actions']): string {
	const uploads = actions.filter(action => action.kind === 'upload').length;
	const commands = actions.filter(action => action.kind === 'remote' || action.kind === 'local').length;
	const checks = actions.filter(action => action.kind === 'check').length;
	const parts = [uploads > 0 ? `${uploads} file${uploads === 1 ? '' : 's'}` : '', commands > 0 ? `${commands} cmd` : '', uploads === 0 && commands === 0 && checks > 0 ? `${checks} check${checks === 1 ? '' : 's'}` : ''].filter(Boolean);
	return parts.join(', ') || 'to do';
}

function recordedStatus(recorded: string | undefined): string | undefined {
	return recorded?.split(' ')[0];
}

function planCell(host: PlanView['steps'][number]['hosts'][number]): GridCell {
	const status = recordedStatus(host.recorded);
	if (status === 'done') {
		return host.inputsChanged ? {mark: 'changed', text: 'changed'} : {mark: 'done', text: 'done'};
	}

	if (status === 'failed') {
		return {mark: 'failed', text: 'failed'};
	}

	if (status === 'running') {
		return {mark: 'stopped', text: 'interrupted'};
	}

	return {mark: 'pending', text: actionSummary(host.actions)};
}

/** The plan as a grid: one row per step, one column per master; cluster-wide steps span the row. */
export function planGrid(plan: PlanView, masters: string[]): Grid {
	return {
		hosts: masters,
		rows: plan.steps.map(step => {
			if (step.scope === 'cluster') {
				const only = step.hosts[0];
				const cell = only ? planCell(only) : {mark: 'pending' as const, text: ''};
				const via = /\(via (.+)\)/.exec(only?.host ?? '')?.[1];
				return {id: step.id, title: step.title, scope: step.scope, cells: {}, span: {...cell, text: `once for the cluster${via ? `, via ${via}` : ''} · ${cell.text}`}};
			}

			return {id: step.id, title: step.title, scope: step.scope, cells: Object.fromEntries(step.hosts.map(host => [host.host, planCell(host)]))};
		}),
	};
}

/** What the state file says is done, as the same grid (no engine call, no network). */
export function progressGrid(state: InstallState, masters: string[], operation: Operation = install): Grid {
	const cell = (record: {status: string; at: string} | undefined): GridCell => {
		if (!record) {
			return {mark: 'pending', text: 'not yet'};
		}

		const mark: Mark = record.status === 'done' ? 'done' : record.status === 'failed' ? 'failed' : 'stopped';
		return {mark, text: `${record.status === 'running' ? 'stopped' : record.status} ${formatWhen(record.at).slice(11)}`};
	};

	return {
		hosts: masters,
		rows: operation.steps.map(step => {
			const hosts = state.steps[stepKey(operation.id, step.id)]?.hosts ?? {};
			return step.scope === 'cluster'
				? {id: step.id, title: step.title, scope: step.scope, cells: {}, span: cell(hosts[clusterHost])}
				: {id: step.id, title: step.title, scope: step.scope, cells: Object.fromEntries(masters.map(master => [master, cell(hosts[master])]))};
		}),
	};
}

export const gridLegend = '○ to do   ✔ done earlier (checked again before skipping)   ↻ changed: runs again   ✘ failed earlier';
