import {describe, expect, test} from 'vitest';
import {ServicesSeen, type ServiceName, type ServicesRead} from '../../source/steps/readiness.js';

const all: ServiceName[] = ['kube-apiserver', 'kube-nginx', 'kube-controller-manager', 'kube-scheduler'];
const read = (names: ServiceName[] = all): ServicesRead => ({readiness: new Map(names.map(name => [name, {ok: true, detail: 'ok'}])), also: 'units', nginxPath: '/readyz?verbose'});

describe('a read of the services made ahead (beside preflight)', () => {
	test('the start check takes it once, when nothing restarted or was written on that master since it was sent', async () => {
		const seen = new ServicesSeen();
		const made = read();
		await seen.readAhead('m1', async () => made);
		expect(await seen.takeAhead('m1', all, undefined)).toBe(made);
		// Taken once: a second check reads the master itself.
		expect(await seen.takeAhead('m1', all, undefined)).toBeUndefined();
		// None made for that master.
		expect(await seen.takeAhead('m2', all, undefined)).toBeUndefined();
	});

	test('a file written on the master in this run, a restart anywhere, or a read that failed: not taken', async () => {
		const seen = new ServicesSeen();
		await seen.readAhead('m1', async () => read());
		expect(await seen.takeAhead('m1', all, new Set(['/etc/kubernetes/cert/kubernetes.pem']))).toBeUndefined();

		await seen.readAhead('m2', async () => read());
		seen.restarting();
		expect(await seen.takeAhead('m2', all, new Set())).toBeUndefined();
		// After a restart, none is made any more.
		let asked = false;
		await seen.readAhead('m3', async () => {
			asked = true;
			return read();
		});
		expect(asked).toBe(false);

		const failing = new ServicesSeen();
		await failing.readAhead('m1', async () => {
			throw new Error('ssh: connection refused');
		});
		expect(await failing.takeAhead('m1', all, undefined)).toBeUndefined();
	});

	test('a read that does not answer for every service asked, or older than ten seconds: not taken', async () => {
		const seen = new ServicesSeen();
		await seen.readAhead('m1', async () => read(['kube-apiserver']));
		expect(await seen.takeAhead('m1', all, undefined)).toBeUndefined();

		const now = Date.now();
		const clock = {now: () => now};
		const dateNow = Date.now;
		Date.now = () => clock.now();
		try {
			const old = new ServicesSeen();
			await old.readAhead('m1', async () => read());
			clock.now = () => now + 10_001;
			expect(await old.takeAhead('m1', all, undefined)).toBeUndefined();
		} finally {
			Date.now = dateNow;
		}
	});
});
