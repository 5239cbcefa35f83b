import {ChecksFailed, StepError} from '../errors.js';
import type {Runner} from '../runner.js';
import type {StepContext, StepDefinition, StepId} from '../steps/types.js';
import type {EngineEvent} from './events.js';
import {clusterHost, stepHosts} from './plan.js';
import {waves} from './step-runner.js';

/**
 * A check operation's steps, recording nothing: steps that need nothing from each other side by
 * side (verify's masters and its cluster checks), a step only once those it needs passed (the
 * cross-master check once every master answered). True when every check passed.
 */
export async function runCheckSteps(steps: StepDefinition[], context: StepContext, emit: (event: EngineEvent) => void, runner: Runner): Promise<boolean> {
	const failed = new Set<StepId>();
	for (const wave of waves(steps)) {
		await Promise.all(wave.map(async step => {
			if (step.needs.some(need => failed.has(need)) || !await runChecks(step, context, emit, runner)) {
				failed.add(step.id);
			}
		}));
	}

	return failed.size === 0;
}

/**
 * A read-only step on every master at once (a cluster step once, through its first master); the
 * checks report themselves as events. True when none failed. A host that could not even be asked
 * says why in the grid.
 */
async function runChecks(step: StepDefinition, context: StepContext, emit: (event: EngineEvent) => void, runner: Runner): Promise<boolean> {
	const masters = stepHosts(step, context);
	const targets = step.scope === 'cluster' ? masters.slice(0, 1).map(master => ({master, host: clusterHost})) : masters.map(master => ({master, host: master.name}));
	const passed = await Promise.all(targets.map(async ({master, host}) => {
		try {
			await step.run(context, master, '');
			return true;
		} catch (error) {
			if (!(error instanceof ChecksFailed)) {
				emit({type: 'check', step: step.id, host, check: 'reachable', level: 'fail', detail: error instanceof Error ? runner.redact(error.message) : String(error), fix: error instanceof StepError ? error.fix : undefined});
			}

			return false;
		}
	}));
	return passed.every(Boolean);
}
