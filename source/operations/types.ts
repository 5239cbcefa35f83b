import type {StepDefinition} from '../steps/types.js';

/**
 * A named list of steps the engine runs with one per-step loop. New day-2 work is a new
 * operation (a file in this folder, listed in index.ts), not a new engine.
 */
export type Operation = {
	/** Names the operation in the state ("install/start") and in the run record. */
	id: string;
	/** What it does, for headings and for the status: "Install the control plane". */
	title: string;
	/** How questions and sentences name one run of it: "install" in "Resume the install stopped at …". */
	noun: string;
	/** The command that runs it ("apply"), for "run apply again". */
	command: string;
	/** In order; steps that need nothing from each other run side by side. */
	steps: StepDefinition[];
	/**
	 * recorded: progress per host is kept in the state and the next run resumes it (install).
	 * checks: read-only, every step on every master, nothing recorded; passes or not (preflight, verify, cis).
	 * sweep: every master once, nothing recorded, failures named (reset).
	 */
	mode: 'recorded' | 'checks' | 'sweep';
};
