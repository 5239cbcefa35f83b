import {ChecksFailed, StepError} from '../errors.js';
import type {Runner} from '../runner.js';
import type {StepContext, StepDefinition} from '../steps/types.js';
import type {EngineEvent} from './events.js';
import {clusterHost, stepHosts} from './plan.js';

/**
 * A read-only step on every master at once, recording nothing; the checks report themselves as
 * events. True when none failed. A master that could not even be asked says why in the grid.
 */
export async function runChecks(step: StepDefinition, context: StepContext, emit: (event: EngineEvent) => void, runner: Runner): Promise<boolean> {
	let passed = true;
	// Named in the grid after what the cluster-wide part checks.
	const clusterCheck = step.beside ? 'cluster checks' : 'distinct machines';
	const clusterFailed = (error: unknown) => {
		passed = false;
		if (!(error instanceof ChecksFailed)) {
			emit({type: 'check', step: step.id, host: clusterHost, check: clusterCheck, level: 'fail', detail: error instanceof StepError ? error.message : String(error), fix: error instanceof StepError ? error.fix : undefined});
		}
	};

	const beside = step.beside?.(context).catch(clusterFailed);
	await Promise.all(stepHosts(step, context).map(async master => {
		try {
			await step.run(context, master, '');
		} catch (error) {
			passed = false;
			if (!(error instanceof ChecksFailed)) {
				emit({type: 'check', step: step.id, host: master.name, check: 'reachable', level: 'fail', detail: error instanceof Error ? runner.redact(error.message) : String(error), fix: error instanceof StepError ? error.fix : undefined});
			}
		}
	}));
	await beside;
	// Across masters only once each answered (two addresses of one machine).
	if (passed) {
		try {
			await step.afterAll?.(context);
		} catch (error) {
			clusterFailed(error);
		}
	}

	return passed;
}
