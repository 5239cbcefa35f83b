import {clusterHost} from '../engine/engine.js';
import type {EngineEvent, FailureInfo, HostOutcome} from '../engine/events.js';
import {install, type Operation} from '../operations/index.js';
import type {StepId} from '../steps/types.js';
import {formatAdminKubeconfig} from '../reporters/format.js';
import type {Tone} from './theme.js';

/** pending: not reached yet; running: under way; the rest are the engine's outcomes. */
export type Mark = 'pending' | 'running' | HostOutcome;

export type HostRow = {
	host: string;
	status: Mark;
	startedAt?: number;
	durationMs?: number;
	bytes?: number;
	total?: number;
	/** What the host is doing now (the file being copied). */
	message?: string;
	/** The engine's note once the host is done ("10 written, 0 already in place"). */
	detail?: string;
	failure?: FailureInfo;
};

export type StepRow = {
	id: StepId;
	title: string;
	scope: 'each-master' | 'cluster';
	status: Mark;
	startedAt?: number;
	durationMs?: number;
	hosts: HostRow[];
};

export type CommandRow = {
	id: number;
	host?: string;
	display: string;
	startedAt: number;
	status: 'running' | 'ok' | 'failed';
	exitCode?: number;
	durationMs?: number;
	timedOut?: boolean;
};

export type RunModel = {
	/** What the run is, as the engine named it (Install, Resume, Upgrade a → b, Apply changes). */
	title?: string;
	steps: StepRow[];
	/** The last few commands, oldest first. */
	commands: CommandRow[];
	/** Local work before the steps (download, unpack). */
	local?: {message: string; bytes?: number; total?: number; startedAt: number};
	finished?: {outcome: 'done' | 'failed' | 'stopped'; message: string; durationMs: number};
};

/** A finished thing, printed once above the live area (ink's <Static>). */
export type HistoryItem =
	| {kind: 'step'; step: StepRow}
	| {kind: 'note'; tone: Tone; text: string};

export type HistoryEntry = HistoryItem & {id: number};

export const commandPaneSize = 5;

export function stepTitle(id: string, operation: Operation): string {
	return operation.steps.find(step => step.id === id)?.title ?? id;
}

export function stepScope(id: string, operation: Operation): 'each-master' | 'cluster' | undefined {
	return operation.steps.find(step => step.id === id)?.scope;
}

/** Every step of the operation pending, on the hosts it will run on. */
export function initialRun(masters: string[], operation: Operation = install): RunModel {
	return {
		steps: operation.steps.map(step => ({
			id: step.id,
			title: step.title,
			scope: step.scope,
			status: 'pending',
			hosts: (step.scope === 'cluster' ? [clusterHost] : masters).map(host => ({host, status: 'pending'})),
		})),
		commands: [],
	};
}

function updateStep(model: RunModel, id: StepId, change: (step: StepRow) => StepRow): RunModel {
	return {...model, steps: model.steps.map(step => (step.id === id ? change(step) : step))};
}

function updateHost(step: StepRow, host: string, change: (row: HostRow) => HostRow): StepRow {
	const hosts = step.hosts.some(row => row.host === host) ? step.hosts : [...step.hosts, {host, status: 'pending' as const}];
	return {...step, hosts: hosts.map(row => (row.host === host ? change(row) : row))};
}

/** "the CA, 4 key pairs, 4 certificates, the encryption key": key material in a few words. */
export function summarizeMaterial(items: string[]): string {
	const keyPairs = items.filter(item => item.endsWith(' key') && item !== 'CA key' && item !== 'encryption key').length;
	const certificates = items.filter(item => item.endsWith(' certificate') && item !== 'CA certificate').length;
	return [
		items.some(item => item.startsWith('CA ')) ? 'the CA' : '',
		keyPairs > 0 ? `${keyPairs} key pair${keyPairs === 1 ? '' : 's'}` : '',
		certificates > 0 ? `${certificates} certificate${certificates === 1 ? '' : 's'}` : '',
		items.includes('encryption key') ? 'the encryption key' : '',
		...items.filter(item => !item.startsWith('CA ') && !item.endsWith(' key') && !item.endsWith(' certificate')),
	].filter(Boolean).join(', ');
}

const materialWords: Record<string, string> = {made: 'made', issued: 'issued', reissued: 'issued again', imported: 'imported'};

/**
 * The run screen's state after one engine event, and what became history. Pure: the caller
 * passes the time, so that tests replay events deterministically.
 */
export function reduceRun(model: RunModel, event: EngineEvent, now: number): {model: RunModel; history: HistoryItem[]} {
	switch (event.type) {
		case 'run-start': {
			return {model: {...model, title: event.title}, history: []};
		}

		case 'step-start': {
			const history: HistoryItem[] = model.local && model.local.bytes === undefined ? [{kind: 'note', tone: 'ok', text: `✔ ${model.local.message}`}] : [];
			const next = updateStep({...model, local: undefined}, event.step, step => ({
				...step,
				title: event.title,
				status: 'running',
				startedAt: now,
				durationMs: undefined,
				hosts: event.hosts.map(host => ({host, status: 'pending'})),
			}));
			return {model: next, history};
		}

		case 'host-start': {
			return {model: updateStep(model, event.step, step => updateHost(step, event.host, row => ({...row, status: 'running', startedAt: now}))), history: []};
		}

		case 'host-progress': {
			return {
				model: updateStep(model, event.step, step => updateHost(step, event.host, row => ({
					...row,
					status: row.status === 'pending' ? 'running' : row.status,
					bytes: event.bytes ?? row.bytes,
					total: event.total ?? row.total,
					message: event.message ?? row.message,
				}))),
				history: [],
			};
		}

		case 'host-done': {
			return {
				model: updateStep(model, event.step, step => updateHost(step, event.host, row => ({
					...row,
					status: event.outcome,
					durationMs: event.durationMs,
					detail: event.detail,
					failure: event.failure,
					message: undefined,
				}))),
				history: [],
			};
		}

		case 'step-done': {
			const next = updateStep(model, event.step, step => ({...step, status: event.outcome, durationMs: event.durationMs}));
			const done = next.steps.find(step => step.id === event.step);
			return {model: next, history: done ? [{kind: 'step', step: done}] : []};
		}

		case 'command-start': {
			const commands = [...model.commands, {id: event.id, host: event.host, display: event.display, startedAt: now, status: 'running' as const}];
			return {model: {...model, commands: trimCommands(commands)}, history: []};
		}

		case 'command-end': {
			const ended = (row: CommandRow): CommandRow => ({...row, status: event.exitCode === 0 && !event.timedOut ? 'ok' : 'failed', exitCode: event.exitCode, durationMs: event.durationMs, timedOut: event.timedOut});
			const known = model.commands.some(row => row.id === event.id);
			const commands = trimCommands(known
				? model.commands.map(row => (row.id === event.id ? ended(row) : row))
				: [...model.commands, ended({id: event.id, host: event.host, display: event.display, startedAt: now, status: 'running'})]);
			return {model: {...model, commands}, history: []};
		}

		case 'local': {
			if (event.bytes !== undefined) {
				return {model: {...model, local: {message: model.local?.message ?? 'download', bytes: event.bytes, total: event.total, startedAt: model.local?.startedAt ?? now}}, history: []};
			}

			const history: HistoryItem[] = model.local && model.local.bytes === undefined ? [{kind: 'note', tone: 'ok', text: `✔ ${model.local.message}`}] : [];
			return {model: {...model, local: {message: event.message, startedAt: now}}, history};
		}

		case 'material': {
			const changed = event.changes.filter(change => change.action !== 'kept');
			if (changed.length === 0) {
				return {model, history: []};
			}

			const byAction = new Map<string, string[]>();
			for (const change of changed) {
				byAction.set(change.action, [...byAction.get(change.action) ?? [], change.item]);
			}

			const reasons = changed.filter(change => change.reason).map(change => `${change.item}: ${change.reason}`);
			const text = `Key material: ${[...byAction].map(([action, items]) => `${materialWords[action] ?? action} ${summarizeMaterial(items)}`).join('; ')}${reasons.length > 0 ? ` (${reasons.join('; ')})` : ''}`;
			return {model, history: [{kind: 'note', tone: 'info', text}]};
		}

		case 'warning': {
			return {model, history: [{kind: 'note', tone: 'warn', text: `warning: ${event.message}`}]};
		}

		case 'admin-kubeconfig': {
			return {model, history: [{kind: 'note', tone: 'info', text: formatAdminKubeconfig(event)}]};
		}

		case 'check': {
			return {model, history: event.level === 'pass' ? [] : [{kind: 'note', tone: event.level === 'fail' ? 'bad' : 'warn', text: `${event.host} ${event.check}: ${event.detail}${event.fix ? ` — fix: ${event.fix}` : ''}`}]};
		}

		case 'finished': {
			return {model: {...model, local: undefined, finished: {outcome: event.outcome, message: event.message, durationMs: event.durationMs}}, history: []};
		}
	}
}

/** Keeps every running command and, of the finished ones, only the most recent. */
function trimCommands(commands: CommandRow[]): CommandRow[] {
	if (commands.length <= commandPaneSize) {
		return commands;
	}

	const running = commands.filter(row => row.status === 'running').length;
	let finishedToDrop = commands.length - Math.max(commandPaneSize, running);
	return commands.filter(row => {
		if (finishedToDrop > 0 && row.status !== 'running') {
			finishedToDrop--;
			return false;
		}

		return true;
	});
}

/** Copy progress in percent, or undefined when the host reports no byte counts. */
export function percent(bytes: number | undefined, total: number | undefined): number | undefined {
	if (bytes === undefined || !total) {
		return undefined;
	}

	return Math.min(100, Math.floor((bytes / total) * 100));
}
