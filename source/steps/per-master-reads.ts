import type {StepContext} from './types.js';

/**
 * What a read-only step found on each master in one run, kept beside the step's short note: the
 * command that runs it (cis, certs) prints the findings whole.
 */
export class PerMasterReads<T> {
	private readonly byRun = new WeakMap<StepContext, Map<string, T>>();

	record(context: StepContext, master: string, found: T): void {
		this.byRun.set(context, (this.byRun.get(context) ?? new Map<string, T>()).set(master, found));
	}

	read(context: StepContext): Map<string, T> {
		return this.byRun.get(context) ?? new Map();
	}
}
