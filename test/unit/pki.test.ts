import {execFileSync} from 'node:child_process';
import {createHash} from 'node:crypto';
import {existsSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync} from 'node:fs';
import path from 'node:path';
import {describe, expect, test} from 'vitest';
import {loadConfig} from '../../source/config/load.js';
import {InputError} from '../../source/errors.js';
import {generateKeyPair, isSignedBy, issueCertificate, readCertificate} from '../../source/pki/certs.js';
import {writeFileExclusive} from '../../source/files.js';
import {ensureMaterial, stageEncryptionKey, type MaterialRecord} from '../../source/pki/material.js';
import {Workspace} from '../../source/workspace.js';
import {baseConfig, makeFixture, writeConfig} from '../helpers/fixture.js';

async function setup(change: (config: Record<string, any>) => void = () => undefined) {
	const fixture = makeFixture();
	const raw = baseConfig(fixture.tarball);
	change(raw);
	const config = await loadConfig(writeConfig(fixture.dir, raw));
	return {...fixture, config, workspace: new Workspace(fixture.stateDir, config.name)};
}

function openssl(args: string[]): string {
	return execFileSync('openssl', args, {encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe']});
}

const mode = (file: string) => statSync(file).mode & 0o777;

describe('key material', () => {
	test('a certificate is signed by its CA, not by another CA of the same name, and never when unreadable', async () => {
		const [caKey, otherKey, leafKey] = await Promise.all([generateKeyPair(), generateKeyPair(), generateKeyPair()]);
		const subject = {CN: 'kubernetes-ca'};
		const ca = issueCertificate({subject, profile: 'ca', validityDays: 10}, caKey);
		const other = issueCertificate({subject, profile: 'ca', validityDays: 10}, otherKey);
		const leaf = issueCertificate({subject: {CN: 'admin', O: 'system:masters'}, profile: 'client', validityDays: 10}, leafKey, {certPem: ca, keyPem: caKey.privateKeyPem});
		expect(isSignedBy(leaf, ca)).toBe(true);
		expect(isSignedBy(leaf, other)).toBe(false);
		expect(isSignedBy(leaf, leaf)).toBe(false);
		expect(isSignedBy('not a certificate', ca)).toBe(false);
	});

	test('the certificates verify with openssl and carry the SANs, subject and usages asked', async () => {
		const {config, workspace} = await setup();
		await ensureMaterial(config, workspace);
		const ca = workspace.pki('ca.pem');
		for (const name of ['kubernetes', 'proxy-client', 'admin']) {
			expect(openssl(['verify', '-CAfile', ca, workspace.pki(`${name}.pem`)])).toContain(': OK');
		}

		const text = openssl(['x509', '-in', workspace.pki('kubernetes.pem'), '-noout', '-text']);
		expect(text).toMatch(/Subject: C ?= ?CN, ST ?= ?Shanghai, L ?= ?Shanghai, O ?= ?k8s, OU ?= ?System, CN ?= ?kubernetes/);
		for (const san of ['IP Address:127.0.0.1', 'IP Address:172.24.8.71', 'IP Address:172.24.8.72', 'IP Address:172.24.8.73', 'IP Address:10.254.0.1', 'DNS:kubernetes,', 'DNS:kubernetes.default,', 'DNS:kubernetes.default.svc,', 'DNS:kubernetes.default.svc.cluster,', 'DNS:kubernetes.default.svc.cluster.local']) {
			expect(text).toContain(san);
		}

		expect(text).not.toContain('cluster.local.');
		expect(text).toContain('TLS Web Server Authentication, TLS Web Client Authentication');
		expect(text).toContain('X509v3 Authority Key Identifier');
		const caText = openssl(['x509', '-in', ca, '-noout', '-text']);
		expect(caText).toMatch(/CN ?= ?kubernetes-ca/);
		expect(caText).toContain('CA:TRUE');
		// The CA's own subject differs from the server's: curl --cacert would otherwise call it self-signed.
		expect(openssl(['x509', '-in', ca, '-noout', '-subject'])).not.toEqual(openssl(['x509', '-in', workspace.pki('kubernetes.pem'), '-noout', '-subject']));

		const proxy = openssl(['x509', '-in', workspace.pki('proxy-client.pem'), '-noout', '-text']);
		expect(proxy).toMatch(/CN ?= ?aggregator/);
		expect(proxy).toContain('TLS Web Client Authentication');
		expect(proxy).not.toContain('TLS Web Server Authentication');
		expect(openssl(['x509', '-in', workspace.pki('admin.pem'), '-noout', '-subject'])).toMatch(/O ?= ?system:masters.*CN ?= ?admin/);
		// The key matches its certificate.
		expect(openssl(['x509', '-in', workspace.pki('kubernetes.pem'), '-noout', '-pubkey'])).toBe(openssl(['pkey', '-in', workspace.pki('kubernetes-key.pem'), '-pubout']));
	});

	test('private keys and the encryption key are 0600', async () => {
		const {config, workspace} = await setup();
		await ensureMaterial(config, workspace);
		for (const file of ['ca-key.pem', 'kubernetes-key.pem', 'proxy-client-key.pem', 'admin-key.pem', 'sa.key', 'encryption.key']) {
			expect(mode(workspace.pki(file)), file).toBe(0o600);
		}

		expect(Buffer.from(readFileSync(workspace.pki('encryption.key'), 'utf8').trim(), 'base64')).toHaveLength(32);
	});

	test('rendering again keeps the CA, every key pair, every certificate and the encryption key', async () => {
		const {config, workspace} = await setup();
		const first = await ensureMaterial(config, workspace);
		const files = ['ca.pem', 'ca-key.pem', 'kubernetes.pem', 'kubernetes-key.pem', 'proxy-client.pem', 'admin.pem', 'sa.key', 'encryption.key'];
		const before = files.map(file => readFileSync(workspace.pki(file), 'utf8'));
		const second = await ensureMaterial(config, workspace, {previous: first.record});
		expect(files.map(file => readFileSync(workspace.pki(file), 'utf8'))).toEqual(before);
		expect(second.changes.filter(change => change.action !== 'kept')).toEqual([]);
	});

	test('a changed SAN re-issues only the apiserver certificate, with the same key', async () => {
		const {dir, tarball, workspace} = await setup();
		const raw = baseConfig(tarball);
		const first = await ensureMaterial(await loadConfig(writeConfig(dir, raw)), workspace);
		const key = readFileSync(workspace.pki('kubernetes-key.pem'), 'utf8');
		const proxy = readFileSync(workspace.pki('proxy-client.pem'), 'utf8');
		raw.certificates = {extraSans: ['203.0.113.10', 'api.example.com']};
		const second = await ensureMaterial(await loadConfig(writeConfig(dir, raw)), workspace, {previous: first.record});
		expect(second.changes.filter(change => change.action === 'reissued').map(change => change.item)).toEqual(['kubernetes certificate']);
		expect(readFileSync(workspace.pki('kubernetes-key.pem'), 'utf8')).toBe(key);
		expect(readFileSync(workspace.pki('proxy-client.pem'), 'utf8')).toBe(proxy);
		const text = openssl(['x509', '-in', workspace.pki('kubernetes.pem'), '-noout', '-text']);
		expect(text).toContain('IP Address:203.0.113.10');
		expect(text).toContain('DNS:api.example.com');
	});

	test('controlPlaneEndpoint goes into the apiserver certificate as an IP or a DNS name; a new one re-issues only it, with the same key', async () => {
		const {dir, tarball, workspace} = await setup();
		const raw = {...baseConfig(tarball), controlPlaneEndpoint: '172.24.8.70:6443'};
		const first = await ensureMaterial(await loadConfig(writeConfig(dir, raw)), workspace);
		expect(readCertificate(first.material.leaves.kubernetes.certPem).ipSans).toContain('172.24.8.70');
		const key = readFileSync(workspace.pki('kubernetes-key.pem'), 'utf8');
		const again = await ensureMaterial(await loadConfig(writeConfig(dir, raw)), workspace, {previous: first.record});
		expect(again.changes.filter(change => change.action !== 'kept')).toEqual([]);

		raw.controlPlaneEndpoint = 'k8s-api.example.com';
		const second = await ensureMaterial(await loadConfig(writeConfig(dir, raw)), workspace, {previous: first.record});
		expect(second.changes.filter(change => change.action === 'reissued').map(change => change.item)).toEqual(['kubernetes certificate']);
		expect(readFileSync(workspace.pki('kubernetes-key.pem'), 'utf8')).toBe(key);
		const text = openssl(['x509', '-in', workspace.pki('kubernetes.pem'), '-noout', '-text']);
		expect(text).toContain('DNS:k8s-api.example.com');
		expect(text).not.toContain('172.24.8.70');
		// Only the apiserver serves behind the endpoint.
		expect(readCertificate(second.material.leaves['kube-controller-manager'].certPem).dnsSans).toEqual([]);
	});

	test('rotation happens only when asked, and keeps the key pair', async () => {
		const {config, workspace} = await setup();
		const first = await ensureMaterial(config, workspace);
		const cert = readFileSync(workspace.pki('admin.pem'), 'utf8');
		const key = readFileSync(workspace.pki('admin-key.pem'), 'utf8');
		await ensureMaterial(config, workspace, {previous: first.record, rotate: ['admin']});
		expect(readFileSync(workspace.pki('admin.pem'), 'utf8')).not.toBe(cert);
		expect(readFileSync(workspace.pki('admin-key.pem'), 'utf8')).toBe(key);
	});

	test('an imported CA signs the certificates and its key never leaves its file', async () => {
		const {dir, tarball} = makeFixture();
		const pair = await generateKeyPair();
		writeFileSync(path.join(dir, 'ca.pem'), issueCertificate({subject: {CN: 'imported-ca'}, profile: 'ca', validityDays: 30}, pair));
		writeFileSync(path.join(dir, 'ca-key.pem'), pair.privateKeyPem, {mode: 0o600});
		const raw = {...baseConfig(tarball), ca: {certFile: './ca.pem', keyFile: './ca-key.pem'}};
		const config = await loadConfig(writeConfig(dir, raw));
		const workspace = new Workspace(path.join(dir, 'state'), config.name);
		const {material} = await ensureMaterial(config, workspace);
		expect(material.ca.imported).toBe(true);
		expect(openssl(['verify', '-CAfile', path.join(dir, 'ca.pem'), workspace.pki('kubernetes.pem')])).toContain(': OK');
		expect(() => statSync(workspace.pki('ca-key.pem'))).toThrow();
	});

	test('a CA certificate and key that do not match, or an expired CA, are refused naming the field', async () => {
		const {dir, tarball} = makeFixture();
		const pair = await generateKeyPair();
		const other = await generateKeyPair();
		writeFileSync(path.join(dir, 'ca.pem'), issueCertificate({subject: {CN: 'imported-ca'}, profile: 'ca', validityDays: 30}, pair));
		writeFileSync(path.join(dir, 'ca-key.pem'), other.privateKeyPem);
		const config = await loadConfig(writeConfig(dir, {...baseConfig(tarball), ca: {certFile: './ca.pem', keyFile: './ca-key.pem'}}));
		const workspace = new Workspace(path.join(dir, 'state'), config.name);
		await expect(ensureMaterial(config, workspace)).rejects.toThrow(/ca\.keyFile: does not belong to the certificate/);

		writeFileSync(path.join(dir, 'ca.pem'), issueCertificate({subject: {CN: 'old-ca'}, profile: 'ca', validityDays: 1}, pair, undefined, new Date(Date.now() - (10 * 86_400_000))));
		writeFileSync(path.join(dir, 'ca-key.pem'), pair.privateKeyPem);
		await expect(ensureMaterial(config, workspace)).rejects.toThrow(/ca\.certFile: expired/);
		await expect(ensureMaterial(config, workspace)).rejects.toBeInstanceOf(InputError);
	});

	test('an encryption key file that differs from the key in use is refused, and the key is kept', async () => {
		const {dir, tarball, workspace} = await setup();
		const config = await loadConfig(writeConfig(dir, baseConfig(tarball)));
		const first = await ensureMaterial(config, workspace);
		const inUse = readFileSync(workspace.pki('encryption.key'), 'utf8');
		writeFileSync(path.join(dir, 'other.key'), Buffer.alloc(32, 1).toString('base64'));
		const changed = await loadConfig(writeConfig(dir, {...baseConfig(tarball), encryption: {keyFile: './other.key'}}));
		await expect(ensureMaterial(changed, workspace, {previous: first.record})).rejects.toThrow(/encryption\.keyFile: holds a different key/);
		expect(readFileSync(workspace.pki('encryption.key'), 'utf8')).toBe(inUse);
	});

	test('a key made here that no master uses yet gives way to the key of a running cluster', async () => {
		const {dir, tarball, workspace} = await setup();
		await ensureMaterial(await loadConfig(writeConfig(dir, baseConfig(tarball))), workspace);
		const running = Buffer.alloc(32, 9).toString('base64');
		writeFileSync(path.join(dir, 'running.key'), running);
		const adopted = await ensureMaterial(await loadConfig(writeConfig(dir, {...baseConfig(tarball), encryption: {keyFile: './running.key'}})), workspace);
		expect(adopted.material.encryptionKeys).toEqual([{name: 'key1', secret: running}]);
		expect(readFileSync(workspace.pki('encryption.key'), 'utf8').trim()).toBe(running);
	});

	test('a staged key is the next name, base64 of 32 bytes in its own 0600 file beside encryption.key; no key file is ever replaced', async () => {
		const {config, workspace} = await setup();
		await ensureMaterial(config, workspace);
		const first = readFileSync(workspace.pki('encryption.key'), 'utf8');
		const key2 = stageEncryptionKey(workspace);
		expect(key2.name).toBe('key2');
		expect(Buffer.from(key2.secret, 'base64')).toHaveLength(32);
		expect(readFileSync(workspace.pki('encryption-key2.key'), 'utf8')).toBe(`${key2.secret}\n`);
		expect(mode(workspace.pki('encryption-key2.key'))).toBe(0o600);
		const key3 = stageEncryptionKey(workspace);
		expect(key3.name).toBe('key3');
		expect(key3.secret).not.toBe(key2.secret);
		expect(readFileSync(workspace.pki('encryption-key2.key'), 'utf8')).toBe(`${key2.secret}\n`);
		expect(readFileSync(workspace.pki('encryption.key'), 'utf8')).toBe(first);
		// The write itself refuses an existing file, and leaves no temporary file either way.
		expect(() => writeFileExclusive(workspace.pki('encryption-key3.key'), 'other\n', 0o600)).toThrow(/EEXIST/);
		expect(readFileSync(workspace.pki('encryption-key3.key'), 'utf8')).toBe(`${key3.secret}\n`);
		expect(readdirSync(workspace.pki('.')).filter(file => file.startsWith('encryption')).sort()).toEqual(['encryption-key2.key', 'encryption-key3.key', 'encryption.key']);
	});

	test('recorded keys come back in their recorded order; a key whose file changed is refused as the single key always was', async () => {
		const {config, workspace} = await setup();
		const first = await ensureMaterial(config, workspace);
		const key2 = stageEncryptionKey(workspace);
		const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');
		// The second phase of a rotation: the new key writes, the old one still reads.
		const previous: MaterialRecord = {...first.record, encryptionKeys: [{name: 'key2', sha256: sha256(key2.secret)}, ...first.record.encryptionKeys]};
		const again = await ensureMaterial(config, workspace, {previous});
		expect(again.material.encryptionKeys).toEqual([key2, first.material.encryptionKeys[0]]);
		expect(again.record.encryptionKeys).toEqual(previous.encryptionKeys);

		const other = Buffer.alloc(32, 7).toString('base64');
		writeFileSync(workspace.pki('encryption-key2.key'), `${other}\n`);
		await expect(ensureMaterial(config, workspace, {previous})).rejects.toThrow(/^encryption: is not the key this install already put on the masters \(got \(key file in the state folder\)\)\. Fix: restore pki\/encryption-key2\.key in the state folder from your backup; never make a new key for a running cluster$/);
		expect(readFileSync(workspace.pki('encryption-key2.key'), 'utf8')).toBe(`${other}\n`);
		writeFileSync(workspace.pki('encryption-key2.key'), `${key2.secret}\n`);
		const key1 = readFileSync(workspace.pki('encryption.key'), 'utf8');
		writeFileSync(workspace.pki('encryption.key'), `${other}\n`);
		await expect(ensureMaterial(config, workspace, {previous})).rejects.toThrow(/^encryption: is not the key this install already put on the masters \(got \(key file in the state folder\)\)\. Fix: restore pki\/encryption\.key in the state folder from your backup; never make a new key for a running cluster$/);
		writeFileSync(workspace.pki('encryption.key'), key1);

		rmSync(workspace.pki('encryption-key2.key'));
		await expect(ensureMaterial(config, workspace, {previous})).rejects.toThrow(/^--state-dir: does not exist \(got .*encryption-key2\.key\)\. Fix: restore .*encryption-key2\.key from your backup of the state folder$/);
		expect(existsSync(workspace.pki('encryption-key2.key'))).toBe(false);
		// What the record names is a file name too: only names this tool makes are taken.
		await expect(ensureMaterial(config, workspace, {previous: {...first.record, encryptionKeys: [{name: '../ca-key', sha256: sha256('x')}]}})).rejects.toThrow(/^--state-dir: is not the name of an encryption key this tool makes/);
	});

	test('a key file of the state folder that is not 32 bytes of base64, or not a regular file, is refused, named', async () => {
		const {config, workspace} = await setup();
		const first = await ensureMaterial(config, workspace);
		const short = Buffer.alloc(16, 1).toString('base64');
		writeFileSync(workspace.pki('encryption-key2.key'), `${short}\n`);
		const previous: MaterialRecord = {...first.record, encryptionKeys: [...first.record.encryptionKeys, {name: 'key2', sha256: createHash('sha256').update(short).digest('hex')}]};
		await expect(ensureMaterial(config, workspace, {previous})).rejects.toThrow(/^--state-dir: does not hold the base64 of exactly 32 bytes \(got .*encryption-key2\.key\)\. Fix: restore/);
		rmSync(workspace.pki('encryption-key2.key'));
		execFileSync('mkfifo', [workspace.pki('encryption-key2.key')]);
		await expect(ensureMaterial(config, workspace, {previous})).rejects.toThrow(/^--state-dir: is a named pipe \(FIFO\), not a regular file; only regular files are read \(got .*encryption-key2\.key\)/);
	});

	test('plan mode makes nothing on disk', async () => {
		const {config, workspace} = await setup();
		const {changes} = await ensureMaterial(config, workspace, {persist: false});
		expect(changes.map(change => change.item)).toContain('CA certificate');
		expect(() => statSync(workspace.root)).toThrow();
	});

	test('key generation leaves the event loop free (the callback form)', async () => {
		let ticks = 0;
		const timer = setInterval(() => ticks++, 1);
		await Promise.all([generateKeyPair(), generateKeyPair(), generateKeyPair()]);
		clearInterval(timer);
		expect(ticks).toBeGreaterThan(0);
	});
});

