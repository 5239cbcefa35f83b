import {describe, expect, test} from 'vitest';
import type {Master} from '../../source/config/schema.js';
import type {HealthAnswer} from '../../source/remote/health.js';
import {controlPlaneServes} from '../../source/steps/liveness.js';
import type {StepContext} from '../../source/steps/types.js';

const masters: Master[] = ['k8smaster01', 'k8smaster02', 'k8smaster03'].map((name, index) => ({name, ip: `192.0.2.${index + 1}`}) as Master);
const pem = {certPem: '', keyPem: ''};

/** A context whose probe answers per address after its delay (status 0: nothing answered). */
function probing(answers: Record<string, {status: number; afterMs: number} | Error>): StepContext {
	return {
		config: {masters},
		skipped: new Set<string>(),
		material: {ca: pem, leaves: {admin: pem}},
		async probe(ip: string): Promise<HealthAnswer> {
			const answer = answers[ip]!;
			if (answer instanceof Error) {
				throw answer;
			}

			await new Promise(resolve => setTimeout(resolve, answer.afterMs));
			return {ok: answer.status === 200, status: answer.status, body: ''};
		},
	} as unknown as StepContext;
}

const noRecord = {host: () => undefined};

describe('whether a control plane serves (restarts roll on a running cluster)', () => {
	test('the first apiserver that answers decides: a master with no machine behind it is not waited for', async () => {
		const started = performance.now();
		const serves = await controlPlaneServes(probing({'192.0.2.1': {status: 0, afterMs: 3000}, '192.0.2.2': {status: 401, afterMs: 20}, '192.0.2.3': {status: 0, afterMs: 3000}}), noRecord, []);
		expect(serves).toBe(true);
		expect(performance.now() - started).toBeLessThan(1000);
	});

	test('no answer from any master: not serving, once every one was heard from', async () => {
		expect(await controlPlaneServes(probing({'192.0.2.1': {status: 0, afterMs: 10}, '192.0.2.2': {status: 0, afterMs: 30}, '192.0.2.3': {status: 0, afterMs: 20}}), noRecord, [])).toBe(false);
	});

	test('a probe that fails outright is an error, never taken for "not serving" (that would restart every master at once)', async () => {
		await expect(controlPlaneServes(probing({'192.0.2.1': {status: 0, afterMs: 10}, '192.0.2.2': new Error('bad TLS material'), '192.0.2.3': {status: 0, afterMs: 10}}), noRecord, [])).rejects.toThrow('bad TLS material');
	});
});
