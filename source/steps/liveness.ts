import type {Progress} from '../state/store.js';
import {adminTls} from './readiness.js';
import type {StepContext, StepDefinition} from './types.js';

/**
 * Whether a run's rolling-when-live steps go one master at a time: a control plane already serves
 * (a start step was done on some master, or an apiserver answers: a cluster taken over), so the
 * others must keep serving. Asked once per run, when a step first depends on it (a start step, or
 * one ordered only on a running cluster, afterWhenLive): every step after it rolls or not as it
 * does, and a fresh install stays parallel throughout. The plan says the same from this one function.
 */
export async function controlPlaneServes(context: StepContext, progress: Pick<Progress, 'host'>, steps: readonly StepDefinition[]): Promise<boolean> {
	const {masters} = context.config;
	const recorded = steps.some(step => step.order === 'rolling-when-live' && masters.some(master => progress.host(step.id, master.name)?.status === 'done'));
	if (recorded) {
		return true;
	}

	// Any HTTP answer counts: an apiserver this install has no record of may already serve. The first
	// one decides: a master with no machine behind its address would keep the rest waiting seconds.
	const answering = masters.filter(master => !context.skipped.has(master.name)).map(async master => (await context.probe(master.ip, 6443, '/healthz', adminTls(context))).status > 0);
	return new Promise((resolve, reject) => {
		let left = answering.length;
		if (left === 0) {
			resolve(false);
		}

		for (const answers of answering) {
			answers.then(answered => {
				left--;
				if (answered || left === 0) {
					resolve(answered);
				}
			}, reject);
		}
	});
}
