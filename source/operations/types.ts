import type {StepDefinition} from '../steps/types.js';
import type {RunKind} from './run-kind.js';

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
} & (
	/** Read-only, every step on every master, nothing recorded; passes or not (preflight, verify, cis). */
	| {mode: 'checks'}
	/**
	 * recorded: progress per host is kept in the state and the next run resumes it (install).
	 * sweep: every master once, nothing recorded, failures named (reset).
	 * words: what the operator reads before and after such a run.
	 */
	| {mode: 'recorded' | 'sweep'; words: OperationWords}
	/** Brings something from the masters to this workstation and changes no master: every step once, nothing recorded as progress, nothing asked (backup). */
	| {mode: 'fetch'; words: Pick<OperationWords, 'done'>}
);

/** An operation that only brings something here from the masters. */
export type FetchingOperation = Extract<Operation, {mode: 'fetch'}>;

/** An operation that changes the masters. */
export type ChangingOperation = Extract<Operation, {mode: 'recorded' | 'sweep'}>;

/** What a run knows when it speaks: the masters, the state folder, what was asked. */
export type RunFacts = {masters: string[]; stateFolder: string; removeLocal: boolean};

export type OperationWords = {
	/** Asked before anything is done (the CLI; --yes answers it). */
	question: (facts: RunFacts) => string;
	/** The last line once the run is done; skipped: masters left out of this run; kind: what the run was; changed: false when every step found its work in place. */
	done: (facts: RunFacts & {skipped: string[]; kind?: RunKind; changed?: boolean}) => string;
};
