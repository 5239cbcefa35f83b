import {execFileSync} from 'node:child_process';
import {createHash} from 'node:crypto';
import {readFileSync, statSync, writeFileSync} from 'node:fs';
import path from 'node:path';
import {describe, expect, test} from 'vitest';
import YAML from 'yaml';
import {main} from '../../source/cli.js';
import {certificatesReport} from '../../source/certs-command.js';
import {loadConfig} from '../../source/config/load.js';
import type {EngineEvent} from '../../source/engine/events.js';
import {InputError} from '../../source/errors.js';
import {generateKeyPair, issueCertificate, publicKeyPemOf, readCertificate} from '../../source/pki/certs.js';
import {certificatesExitCode, daysLeft, expiryLevel, renewTargets, writtenStatus, type CertificateRow} from '../../source/pki/inventory.js';
import type {LeafName} from '../../source/pki/material.js';
import {formatCertificates, formatRenewPreview} from '../../source/reporters/certs-format.js';
import {formatStatus} from '../../source/reporters/format.js';
import {certificatesScript, parseCertificatesOutput} from '../../source/steps/certs-read.js';
import {caExpiryCheck} from '../../source/steps/verify.js';
import {Workspace} from '../../source/workspace.js';
import {FakeCluster} from '../helpers/fake-hosts.js';
import {baseConfig, makeFixture, writeConfig} from '../helpers/fixture.js';
import {tempDir} from '../helpers/temp.js';
import {fakeEngine} from '../helpers/engine.js';

const ips = ['172.24.8.71', '172.24.8.72', '172.24.8.73'];
const day = 86_400_000;

/** An installed fake cluster, and engines on it (rotate/newKeys: what certs renew asks). */
async function installed(change: (raw: Record<string, any>) => void = () => undefined) {
	const fixture = makeFixture();
	const raw = baseConfig(fixture.tarball);
	change(raw);
	const configFile = writeConfig(fixture.dir, raw);
	const cluster = new FakeCluster(ips);
	const engine = async (options: {rotate?: LeafName[]; newKeys?: LeafName[]} = {}) => {
		const config = await loadConfig(configFile);
		const workspace = new Workspace(fixture.stateDir, config.name);
		const events: EngineEvent[] = [];
		const instance = fakeEngine(cluster, config, fixture.stateDir, {workspace, rotate: options.rotate, newKeys: options.newKeys});
		instance.subscribe(event => events.push(event));
		return {engine: instance, events, config, workspace};
	};

	await (await engine()).engine.apply({confirm: true});
	const report = async () => {
		const {engine: instance, config, workspace} = await engine();
		return certificatesReport(instance, config, workspace);
	};

	return {...fixture, configFile, cluster, engine, report};
}

const pki = (stateDir: string, file: string) => readFileSync(path.join(stateDir, 'kubernetes', 'pki', file), 'utf8');
const onMaster = (cluster: FakeCluster, ip: string, file: string) => cluster.hosts.get(ip)!.files.get(file)!.content.toString();
const row = (rows: CertificateRow[], name: string, where: string, file = '.pem') => rows.find(each => each.name === name && each.where === where && each.file.endsWith(file))!;

describe('certs: the table', () => {
	test('days left, and the level: the CA a year ahead (a warning), a leaf within warnDays (renew), expired', () => {
		const now = new Date('2026-01-01T00:00:00Z');
		expect(daysLeft(new Date(now.getTime() + (10.5 * day)), now)).toBe(10);
		expect(daysLeft(new Date(now.getTime() - 1000), now)).toBe(-1);
		expect(expiryLevel('kubernetes', 29, 30)).toBe('renew');
		expect(expiryLevel('kubernetes', 30, 30)).toBe('ok');
		expect(expiryLevel('kubernetes', 200, 30)).toBe('ok');
		expect(expiryLevel('ca', 364, 30)).toBe('plan');
		expect(expiryLevel('ca', 365, 30)).toBe('ok');
		expect(expiryLevel('ca', 10, 30)).toBe('renew');
		expect(expiryLevel('admin', -1, 30)).toBe('expired');
	});

	test('what a master holds against what this install wrote: current, an earlier one of its own, or foreign', () => {
		expect(writtenStatus('a', 'a', new Set(['a']))).toBe('current');
		expect(writtenStatus('b', 'a', new Set(['a', 'b']))).toBe('older');
		expect(writtenStatus('c', 'a', new Set(['a', 'b']))).toBe('differs');
	});

	test('exit 1 for a certificate to renew, one missing, or a master not read; 0 for a CA ending within a year', () => {
		const fine: CertificateRow = {name: 'kubernetes', where: 'k8smaster01', file: '/x.pem', daysLeft: 300, expiry: 'ok', written: 'current'};
		expect(certificatesExitCode({rows: [fine, {...fine, name: 'ca', expiry: 'plan'}], unread: []})).toBe(0);
		expect(certificatesExitCode({rows: [fine, {...fine, expiry: 'renew'}], unread: []})).toBe(1);
		expect(certificatesExitCode({rows: [fine, {...fine, expiry: 'expired'}], unread: []})).toBe(1);
		expect(certificatesExitCode({rows: [{...fine, written: 'missing'}], unread: []})).toBe(1);
		expect(certificatesExitCode({rows: [fine], unread: [{host: 'k8smaster02', message: 'No route to host'}]})).toBe(1);
		// A foreign file is flagged, not failed: it may be the operator's on purpose.
		expect(certificatesExitCode({rows: [{...fine, written: 'differs'}], unread: []})).toBe(0);
	});

	test('read from every master in one round trip each: subject, SANs, not after, as written; never a key read', async () => {
		const {cluster, report, stateDir} = await installed();
		const before = cluster.calls.length;
		const result = await report();
		const reads = cluster.calls.slice(before).filter(call => call.command === 'ssh' && !call.args.includes('-O'));
		expect(reads).toHaveLength(3);
		for (const call of reads) {
			expect(call.args.at(-1)).not.toMatch(/-key\.pem|sa\.key|client-key-data/);
		}

		expect(result.unread).toEqual([]);
		expect(certificatesExitCode(result)).toBe(0);
		for (const where of ['workstation', 'k8smaster01', 'k8smaster02', 'k8smaster03']) {
			for (const name of ['ca', 'kubernetes', 'proxy-client', 'kube-controller-manager', 'kube-scheduler']) {
				expect(row(result.rows, name, where), `${name} on ${where}`).toBeDefined();
			}
		}

		const apiserver = row(result.rows, 'kubernetes', 'k8smaster02');
		expect(apiserver).toMatchObject({file: '/etc/kubernetes/cert/kubernetes.pem', written: 'current', expiry: 'ok', subject: 'C=CN,ST=Shanghai,L=Shanghai,O=k8s,OU=System,CN=kubernetes'});
		expect(apiserver.sans).toEqual(expect.arrayContaining(['kubernetes.default.svc.cluster.local', '172.24.8.72', '10.254.0.1', '127.0.0.1']));
		expect(apiserver.daysLeft).toBe(364);
		expect(apiserver.notAfter).toBe(readCertificate(pki(stateDir, 'kubernetes.pem')).notAfter.toISOString());
		// The scheduler's login certificate, from its kubeconfig, and the CA 10 years.
		expect(row(result.rows, 'kube-scheduler', 'k8smaster03', '.kubeconfig')).toMatchObject({written: 'current', subject: expect.stringContaining('CN=system:kube-scheduler')});
		expect(row(result.rows, 'ca', 'k8smaster01').daysLeft).toBeGreaterThan(3600);
		expect(row(result.rows, 'admin', 'workstation').subject).toContain('O=system:masters');
		expect(result.rows.filter(each => each.name === 'admin').map(each => each.where)).toEqual(['workstation']);
		expect(row(result.rows, 'service-account key', 'workstation', 'sa.key').ageDays).toBe(0);
		expect(row(result.rows, 'service-account key', 'k8smaster01', 'sa.pub')).toMatchObject({written: 'current', ageDays: expect.any(Number)});

		const text = formatCertificates(result).join('\n');
		expect(text).toMatch(/^kubernetes\s+k8smaster02\s+\/etc\/kubernetes\/cert\/kubernetes\.pem\s+\d{4}-\d\d-\d\d\s+364\s+as written$/m);
		expect(text).toContain('SANs kubernetes, kubernetes.default');
		expect(text).not.toMatch(/WARN|FAIL/);
	});

	test('a foreign or missing file on a master is flagged, an unreachable master named; a certificate within warnDays exits 1', async () => {
		const {cluster, report, configFile, tarball} = await installed();
		const pair = await generateKeyPair();
		const foreign = issueCertificate({subject: {CN: 'kube-scheduler'}, profile: 'server-client', validityDays: 365}, pair);
		cluster.hosts.get(ips[0]!)!.files.get('/etc/kubernetes/cert/kube-scheduler.pem')!.content = Buffer.from(foreign);
		cluster.hosts.get(ips[1]!)!.files.delete('/etc/kubernetes/cert/proxy-client.pem');
		cluster.hosts.get(ips[2]!)!.reachable = false;
		const result = await report();
		expect(row(result.rows, 'kube-scheduler', 'k8smaster01')).toMatchObject({written: 'differs', subject: 'CN=kube-scheduler'});
		expect(row(result.rows, 'proxy-client', 'k8smaster02').written).toBe('missing');
		expect(result.unread.map(each => each.host)).toEqual(['k8smaster03']);
		expect(certificatesExitCode(result)).toBe(1);
		const text = formatCertificates(result).join('\n');
		expect(text).toMatch(/WARN kube-scheduler \(\/etc\/kubernetes\/cert\/kube-scheduler\.pem on k8smaster01\) is not what this install wrote/);
		expect(text).toMatch(/FAIL proxy-client \(\/etc\/kubernetes\/cert\/proxy-client\.pem on k8smaster02\) is missing/);
		expect(text).toMatch(/FAIL k8smaster03: could not be read: .*No route to host/);

		// Everything back; a warning window longer than the certificates' life: each leaf is to renew.
		cluster.hosts.get(ips[2]!)!.reachable = true;
		writeConfig(path.dirname(configFile), {...baseConfig(tarball), certificates: {warnDays: 400}});
		const late = await report();
		expect(row(late.rows, 'kubernetes', 'k8smaster03').expiry).toBe('renew');
		expect(row(late.rows, 'ca', 'k8smaster03').expiry).toBe('ok');
		expect(certificatesExitCode(late)).toBe(1);
		expect(formatCertificates(late).join('\n')).toContain('ends in 364 days (certificates.warnDays: 400): k8s-master-install certs renew kubernetes');
	});

	test('the command: exit 2 with the fix before an install; --json', async () => {
		const {dir, tarball, stateDir} = makeFixture();
		const configFile = writeConfig(dir, baseConfig(tarball));
		const err: string[] = [];
		expect(await main(['certs', '--config', configFile, '--state-dir', stateDir], {out: () => undefined, err: line => err.push(line)})).toBe(2);
		expect(err.join('\n')).toMatch(/--state-dir: holds no install of this cluster.*Fix: run apply first/);
	});
});

describe('certs\' read, run by a real shell', () => {
	test('per file its mtime, sha256 and certificate; of a kubeconfig only the client certificate; a missing file named', async () => {
		const dir = tempDir('k8smi-certs-');
		const pair = await generateKeyPair();
		const certificate = issueCertificate({subject: {CN: 'system:kube-scheduler'}, profile: 'client', validityDays: 30}, pair);
		const kubeconfig = `users:\n  - name: x\n    user:\n      client-certificate-data: ${Buffer.from(certificate).toString('base64')}\n      client-key-data: ${Buffer.from(pair.privateKeyPem).toString('base64')}\n`;
		writeFileSync(path.join(dir, 'kube-scheduler.pem'), certificate);
		writeFileSync(path.join(dir, 'kube-scheduler.kubeconfig'), kubeconfig);
		writeFileSync(path.join(dir, 'sa.pub'), pair.publicKeyPem);
		const targets = [
			{name: 'kube-scheduler' as const, path: path.join(dir, 'kube-scheduler.pem'), kind: 'pem' as const},
			{name: 'kube-scheduler' as const, path: path.join(dir, 'kube-scheduler.kubeconfig'), kind: 'kubeconfig' as const},
			{name: 'service-account key' as const, path: path.join(dir, 'sa.pub'), kind: 'public key' as const},
			{name: 'ca' as const, path: path.join(dir, 'ca.pem'), kind: 'pem' as const},
		];
		const output = execFileSync('sh', ['-c', certificatesScript(targets)], {encoding: 'utf8'});
		expect(output).not.toContain(Buffer.from(pair.privateKeyPem).toString('base64'));
		expect(output).not.toContain('PUBLIC KEY');
		const read = parseCertificatesOutput(output);
		const sha = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex');
		expect(read.get(targets[0]!.path)).toEqual({mtime: Math.floor(statSync(targets[0]!.path).mtimeMs / 1000), sha256: sha(targets[0]!.path), text: certificate});
		const fromKubeconfig = read.get(targets[1]!.path);
		expect(fromKubeconfig).toMatchObject({sha256: sha(targets[1]!.path)});
		expect(Buffer.from((fromKubeconfig as {text: string}).text.trim(), 'base64').toString()).toBe(certificate);
		expect(read.get(targets[2]!.path)).toMatchObject({sha256: sha(targets[2]!.path), text: ''});
		expect(read.get(targets[3]!.path)).toBe('missing');
	});
});

describe('the CA\'s own end, a year ahead', () => {
	test('status and verify warn within a year, not before', async () => {
		const now = new Date('2026-01-01T00:00:00Z');
		const state = {schema: 3 as const, cluster: 'kubernetes', steps: {}};
		const soon = formatStatus(state, '/s', [{name: 'ca', notAfter: new Date(now.getTime() + (200 * day))}, {name: 'admin', notAfter: new Date(now.getTime() + (20 * day))}], now);
		expect(soon).toMatch(/certificate ca .*\(200 days\)  ends within a year: plan the CA's replacement/);
		expect(soon).toMatch(/certificate admin .*\(20 days\)  expires soon: run certs renew admin/);
		expect(formatStatus(state, '/s', [{name: 'ca', notAfter: new Date(now.getTime() + (400 * day))}], now)).not.toMatch(/plan the CA/);

		const pair = await generateKeyPair();
		const ca = (days: number) => `==> /etc/kubernetes/cert/ca.pem\n${issueCertificate({subject: {CN: 'kubernetes-ca'}, profile: 'ca', validityDays: days}, pair)}`;
		expect(caExpiryCheck(ca(200))).toMatchObject({check: 'CA expiry', level: 'warn', fix: expect.stringContaining('README: Certificates')});
		expect(caExpiryCheck(ca(3650))).toMatchObject({check: 'CA expiry', level: 'pass'});
		expect(caExpiryCheck('==> /etc/kubernetes/cert/ca.pem\nmissing\n')).toBeUndefined();
	});
});

describe('certs renew', () => {
	test('names: the files\' own, the components\', all (or none); a bad one refused with the valid names', () => {
		expect(renewTargets(['scheduler'])).toEqual(['kube-scheduler']);
		expect(renewTargets(['apiserver', 'admin'])).toEqual(['kubernetes', 'admin']);
		expect(renewTargets(['kube-controller-manager,proxy-client'])).toEqual(['proxy-client', 'kube-controller-manager']);
		expect(renewTargets(['all'])).toEqual(['kubernetes', 'proxy-client', 'admin', 'kube-controller-manager', 'kube-scheduler']);
		expect(renewTargets([])).toEqual(renewTargets(['all']));
		expect(() => renewTargets(['schedular'])).toThrow(InputError);
		expect(() => renewTargets(['schedular'])).toThrow(/certs renew NAME: names no certificate this install renews \(got schedular\).*kubernetes, proxy-client, admin, kube-controller-manager, kube-scheduler/);
		expect(() => renewTargets(['ca'])).toThrow(/the CA is not renewed by this tool/);
	});

	test('a bad NAME exits 2 before anything is read or written', async () => {
		const {stateDir, configFile} = await installed();
		const state = readFileSync(path.join(stateDir, 'kubernetes', 'state.json'), 'utf8');
		const certificate = pki(stateDir, 'kube-scheduler.pem');
		const err: string[] = [];
		expect(await main(['certs', 'renew', 'schedular', '--config', configFile, '--state-dir', stateDir, '--yes'], {out: () => undefined, err: line => err.push(line)})).toBe(2);
		expect(err.join('\n')).toMatch(/^error: certs renew NAME: names no certificate/);
		expect(readFileSync(path.join(stateDir, 'kubernetes', 'state.json'), 'utf8')).toBe(state);
		expect(pki(stateDir, 'kube-scheduler.pem')).toBe(certificate);
	});

	test('the scheduler: same key, same lifetime, a later end; the preview names it and the schedulers; only they restart, one master at a time', async () => {
		const {cluster, engine, stateDir} = await installed();
		const before = readCertificate(pki(stateDir, 'kube-scheduler.pem'));
		const key = pki(stateDir, 'kube-scheduler-key.pem');
		const {engine: renewing, config, workspace} = await engine({rotate: ['kube-scheduler']});
		const plan = await renewing.plan();
		const preview = formatRenewPreview(plan, {leaves: ['kube-scheduler'], newKeys: false, validityDays: config.certificates.validityDays, lifetimes: new Map([['kube-scheduler', 365]]), adminKubeconfig: path.join(workspace.renderedDir, 'admin.kubeconfig')}).join('\n');
		expect(preview).toContain('Re-issue kube-scheduler with the same keys, each valid 365 days');
		expect(preview).toContain('certificates issued: kube-scheduler certificate');
		expect(preview).toContain('restarts (one master at a time):');
		for (const name of ['k8smaster01', 'k8smaster02', 'k8smaster03']) {
			expect(preview).toContain(`    ${name}: kube-scheduler`);
		}

		cluster.restartOrder.length = 0;
		// Certificates count whole seconds: issued in the install's second, the renewed one would end with it.
		await new Promise(resolve => setTimeout(resolve, 1005 - (Date.now() % 1000)));
		await renewing.apply({confirm: true});
		const after = readCertificate(pki(stateDir, 'kube-scheduler.pem'));
		expect(pki(stateDir, 'kube-scheduler-key.pem')).toBe(key);
		expect(after.publicKeyPem).toBe(before.publicKeyPem);
		expect(after.notAfter.getTime() - after.notBefore.getTime()).toBe(before.notAfter.getTime() - before.notBefore.getTime());
		expect(after.notAfter.getTime()).toBeGreaterThan(before.notAfter.getTime());
		for (const ip of ips) {
			expect(onMaster(cluster, ip, '/etc/kubernetes/cert/kube-scheduler.pem')).toBe(pki(stateDir, 'kube-scheduler.pem'));
			const kubeconfig = YAML.parse(onMaster(cluster, ip, '/etc/kubernetes/kube-scheduler.kubeconfig')) as {users: Array<{user: Record<string, string>}>};
			expect(Buffer.from(kubeconfig.users[0]!.user['client-certificate-data']!, 'base64').toString()).toBe(pki(stateDir, 'kube-scheduler.pem'));
			expect(Object.fromEntries(cluster.hosts.get(ip)!.unitRestarts)).toEqual({'kube-nginx': 1, 'kube-controller-manager': 1, 'kube-scheduler': 2});
			expect(cluster.hosts.get(ip)!.restarts).toBe(1);
		}

		// certs then reads the new end on every master, as written.
		const {engine: reading} = await engine();
		const rows = [...(await reading.certificates()).values()].flat() as CertificateRow[];
		expect(rows.filter(each => each.name === 'kube-scheduler').map(each => [each.notAfter, each.written])).toEqual(Array.from({length: 6}, () => [after.notAfter.toISOString(), 'current']));
	});

	test('the apiserver\'s: only the apiservers restart, one after the other', async () => {
		const {cluster, engine} = await installed();
		cluster.restartOrder.length = 0;
		await (await engine({rotate: ['kubernetes']})).engine.apply({confirm: true});
		expect(cluster.restartOrder).toEqual(ips);
		expect(ips.map(ip => Object.fromEntries(cluster.hosts.get(ip)!.unitRestarts))).toEqual(ips.map(() => ({'kube-nginx': 1, 'kube-controller-manager': 1, 'kube-scheduler': 1})));
	});

	test('admin: the admin kubeconfig is written again with the new certificate; nothing restarts', async () => {
		const {cluster, engine, stateDir} = await installed();
		const kubeconfigFile = path.join(stateDir, 'kubernetes', 'rendered', 'admin.kubeconfig');
		const old = readFileSync(kubeconfigFile, 'utf8');
		await (await engine({rotate: ['admin']})).engine.apply({confirm: true});
		const kubeconfig = YAML.parse(readFileSync(kubeconfigFile, 'utf8')) as {users: Array<{user: Record<string, string>}>};
		expect(readFileSync(kubeconfigFile, 'utf8')).not.toBe(old);
		expect(Buffer.from(kubeconfig.users[0]!.user['client-certificate-data']!, 'base64').toString()).toBe(pki(stateDir, 'admin.pem'));
		expect(statSync(kubeconfigFile).mode & 0o777).toBe(0o600);
		expect(ips.map(ip => cluster.hosts.get(ip)!.restarts)).toEqual([1, 1, 1]);
		expect(ips.map(ip => [...cluster.hosts.get(ip)!.unitRestarts.values()])).toEqual(ips.map(() => [1, 1, 1]));
	});

	test('--new-keys: a new key pair (0600), the one kept here is the one shipped, the lifetime kept', async () => {
		const {cluster, engine, stateDir} = await installed();
		const before = readCertificate(pki(stateDir, 'kube-controller-manager.pem'));
		const {engine: renewing, events} = await engine({rotate: ['kube-controller-manager'], newKeys: ['kube-controller-manager']});
		await renewing.plan();
		await renewing.apply({confirm: true});
		const key = pki(stateDir, 'kube-controller-manager-key.pem');
		const after = readCertificate(pki(stateDir, 'kube-controller-manager.pem'));
		expect(after.publicKeyPem).not.toBe(before.publicKeyPem);
		expect(after.publicKeyPem).toBe(publicKeyPemOf(key));
		expect(statSync(path.join(stateDir, 'kubernetes', 'pki', 'kube-controller-manager-key.pem')).mode & 0o777).toBe(0o600);
		expect(after.notAfter.getTime() - after.notBefore.getTime()).toBe(before.notAfter.getTime() - before.notBefore.getTime());
		for (const ip of ips) {
			expect(onMaster(cluster, ip, '/etc/kubernetes/cert/kube-controller-manager-key.pem')).toBe(key);
			expect(Object.fromEntries(cluster.hosts.get(ip)!.unitRestarts)).toEqual({'kube-nginx': 1, 'kube-controller-manager': 2, 'kube-scheduler': 1});
		}

		expect(events.some(event => event.type === 'material' && event.changes.some(change => change.item === 'kube-controller-manager key' && change.action === 'made'))).toBe(true);
		// The key is never printed.
		expect(JSON.stringify(events)).not.toContain(key.split('\n')[1]);
	});

	test('the preview says when the configured lifetime is shorter than the certificate\'s now', () => {
		const plan = {materialChanges: [], changes: undefined} as unknown as Parameters<typeof formatRenewPreview>[0];
		const text = formatRenewPreview(plan, {leaves: ['admin'], newKeys: false, validityDays: 90, lifetimes: new Map([['admin', 365]]), adminKubeconfig: '/s/admin.kubeconfig'}).join('\n');
		expect(text).toContain('note: admin is valid 365 days now; renewed it is valid 90 (certificates.validityDays is shorter)');
		expect(text).toContain('admin kubeconfig rewritten: /s/admin.kubeconfig');
	});
});
