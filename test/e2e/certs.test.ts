import {readFileSync} from 'node:fs';
import path from 'node:path';
import {connect} from 'node:tls';
import {beforeEach, describe, expect, inject, test} from 'vitest';
import {getHealth} from '../../source/remote/health.js';
import {resetMasters, runCli, startProbes, stopProbes, writeLabConfig} from './lab-helpers.js';

const lab = inject('lab');

/** The not-after of the certificate an apiserver serves. */
async function servedNotAfter(ip: string, ca: string): Promise<string> {
	return new Promise((resolve, reject) => {
		const socket = connect({host: ip, port: 6443, ca, servername: 'kubernetes', timeout: 5000}, () => {
			const validTo = socket.getPeerCertificate().valid_to;
			socket.end();
			resolve(validTo);
		});
		socket.on('error', reject);
		socket.on('timeout', () => socket.destroy(new Error(`${ip}:6443: no TLS answer within 5 s`)));
	});
}

type Report = {rows: Array<{name: string; where: string; file: string; notAfter?: string; daysLeft?: number; written?: string}>; unread: Array<{host: string}>};

describe.skipIf(!lab)('certs on the lab', () => {
	beforeEach(() => resetMasters(lab!));

	test('certs reads every master; certs renew apiserver rolls: a later end read back from every master, each apiserver ready, no failed request', async () => {
		const {configFile, stateDir} = writeLabConfig(lab!, 'v1.28.7');
		const install = await runCli(['apply', '--config', configFile, '--state-dir', stateDir, '--yes']);
		expect(install.code, install.stdout + install.stderr).toBe(0);

		const read = async (): Promise<Report> => {
			const run = await runCli(['certs', '--json', '--config', configFile, '--state-dir', stateDir]);
			expect(run.code, run.stdout + run.stderr).toBe(0);
			return JSON.parse(run.stdout) as Report;
		};

		const apiserverEnds = (report: Report) => new Map(report.rows.filter(row => row.name === 'kubernetes' && row.file.endsWith('/kubernetes.pem')).map(row => [row.where, row.notAfter]));
		const before = await read();
		expect(before.unread).toEqual([]);
		for (const host of lab!.hosts) {
			for (const name of ['kubernetes', 'proxy-client', 'kube-controller-manager', 'kube-scheduler']) {
				expect(before.rows.find(row => row.name === name && row.where === host.name && row.file.endsWith('.pem')), `${name} on ${host.name}`).toMatchObject({written: 'current', daysLeft: 364});
			}

			// The lab's own CA, imported: its end is the lab's.
			expect(before.rows.find(row => row.name === 'ca' && row.where === host.name), `ca on ${host.name}`).toMatchObject({written: 'current', daysLeft: expect.any(Number)});
		}

		const text = await runCli(['certs', '--config', configFile, '--state-dir', stateDir]);
		expect(text.code, text.stderr).toBe(0);
		expect(text.stdout).toMatch(/^kubernetes\s+k8smaster01\s+\/etc\/kubernetes\/cert\/kubernetes\.pem\s+\d{4}-\d\d-\d\d\s+364\s+as written$/m);

		startProbes(lab!);
		const started = Date.now();
		const renew = await runCli(['certs', 'renew', 'apiserver', '--config', configFile, '--state-dir', stateDir, '--yes']);
		const elapsed = (Date.now() - started) / 1000;
		const tallies = stopProbes(lab!);
		expect(renew.code, renew.stdout + renew.stderr).toBe(0);
		expect(renew.stdout).toContain('Re-issue kubernetes with the same keys, each valid 365 days');
		expect(renew.stdout).toContain('restarts (one master at a time):');
		for (const host of lab!.hosts) {
			expect(renew.stdout).toContain(`    ${host.name}: kube-apiserver`);
		}

		expect(renew.stdout).toMatch(/restarted kube-apiserver/);
		expect(renew.stdout).not.toMatch(/restarted [^\n]*kube-(scheduler|controller-manager)/);
		for (const tally of tallies) {
			expect(tally.requests, tally.host).toBeGreaterThan(elapsed);
			expect(tally.failures, tally.host).toEqual([]);
		}

		const after = await read();
		const was = apiserverEnds(before);
		const now = apiserverEnds(after);
		expect([...now.keys()].sort()).toEqual(['workstation', ...lab!.hosts.map(host => host.name)].sort());
		for (const [where, notAfter] of now) {
			expect(Date.parse(notAfter!), where).toBeGreaterThan(Date.parse(was.get(where)!));
			expect(notAfter, where).toBe(now.get('workstation'));
		}

		// Each apiserver ready, and serving the renewed certificate (it restarted with it).
		const pki = (file: string) => readFileSync(path.join(stateDir, 'kubernetes', 'pki', file), 'utf8');
		const credentials = {ca: readFileSync(lab!.ca.certFile, 'utf8'), cert: pki('admin.pem'), key: pki('admin-key.pem')};
		for (const host of lab!.hosts) {
			const ready = await getHealth(host.ip, 6443, '/readyz', credentials);
			expect(ready.ok, `${host.name}: ${ready.error ?? ready.body}`).toBe(true);
			expect(Date.parse(await servedNotAfter(host.ip, credentials.ca)), host.name).toBe(Date.parse(now.get('workstation')!));
		}
	});
});
