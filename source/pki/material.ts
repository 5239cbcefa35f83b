import {existsSync, readdirSync} from 'node:fs';
import {randomBytes} from 'node:crypto';
import path from 'node:path';
import type {ResolvedConfig} from '../config/load.js';
import {InputError} from '../errors.js';
import {sha256, writeFileAtomic, writeFileExclusive} from '../files.js';
import {readLocalText, type FileKind} from '../safe-read.js';
import type {Workspace} from '../workspace.js';
import {
	certificateMatches, generateKeyPair, issueCertificate, publicKeyPemOf, readCertificate,
	type CertificateRequest, type KeyPair,
} from './certs.js';

export type LeafName = 'kubernetes' | 'proxy-client' | 'admin' | 'kube-controller-manager' | 'kube-scheduler';

export const leafNames: readonly LeafName[] = ['kubernetes', 'proxy-client', 'admin', 'kube-controller-manager', 'kube-scheduler'];

export type Material = {
	ca: {certPem: string; keyPem: string; imported: boolean; certFile: string; keyFile: string};
	leaves: Record<LeafName, {certPem: string; keyPem: string}>;
	serviceAccount: KeyPair | undefined;
	encryptionKeys: EncryptionKeys;
};

/** One key of the encryption config. Its name tags what it encrypted in etcd (k8s:enc:aescbc:v1:<name>:). */
export type EncryptionKey = {name: string; secret: string};

/** The keys in the order the apiserver reads them: the first encrypts, every one decrypts. */
export type EncryptionKeys = [EncryptionKey, ...EncryptionKey[]];

/** What the state keeps of one encryption key: its name and the sha256 of its secret. */
export type EncryptionKeyRecord = {name: string; sha256: string};

/** What rendering did to the key material: the operator sees it, the state keeps it. */
export type MaterialChange = {item: string; action: 'made' | 'kept' | 'issued' | 'reissued' | 'imported'; reason?: string};

/** What the state remembers of the material: paths and hashes, never the secrets. */
export type MaterialRecord = {caCertSha256: string; encryptionKeys: EncryptionKeyRecord[]; serviceAccountKey?: ServiceAccountKey};

/** What signs service-account tokens: a dedicated sa.key, or the CA key as the tutorial does. */
export type ServiceAccountKey = 'dedicated' | 'ca';

const caValidityDays = 3650;

export function leafRequests(config: ResolvedConfig): Record<LeafName, CertificateRequest> {
	const subject = config.certificates.subject;
	const validityDays = config.certificates.validityDays;
	const domain = config.network.clusterDomain;
	// Clients through the control-plane endpoint check that the apiserver's certificate names it.
	const extraSans = [...config.certificates.extraSans, ...(config.controlPlane ? [config.controlPlane.host] : [])];
	return {
		kubernetes: {
			subject: {...subject, CN: 'kubernetes'},
			profile: 'server-client',
			ipSans: [...new Set(['127.0.0.1', ...config.masters.map(master => master.ip), config.serviceIp, ...extraSans.filter(isIp)])],
			dnsSans: [...new Set(['kubernetes', 'kubernetes.default', 'kubernetes.default.svc', `kubernetes.default.svc.${domain.split('.')[0]}`, `kubernetes.default.svc.${domain}`, ...extraSans.filter(name => !isIp(name))])],
			validityDays,
		},
		'proxy-client': {subject: {...subject, CN: 'aggregator'}, profile: 'client', validityDays},
		admin: {subject: {...subject, O: 'system:masters', CN: 'admin'}, profile: 'client', validityDays},
		// Client of the apiserver (user = CN, group = O) and server of its own secure port.
		'kube-controller-manager': componentRequest(config, 'system:kube-controller-manager'),
		'kube-scheduler': componentRequest(config, 'system:kube-scheduler'),
	};
}

function componentRequest(config: ResolvedConfig, user: string): CertificateRequest {
	return {
		subject: {...config.certificates.subject, O: user, CN: user},
		profile: 'server-client',
		ipSans: [...new Set(['127.0.0.1', ...config.masters.map(master => master.ip)])],
		validityDays: config.certificates.validityDays,
	};
}

function isIp(value: string): boolean {
	return /^\d+\.\d+\.\d+\.\d+$/.test(value);
}

/** A file the operator named in the config. */
async function readConfigured(file: string, field: string, kind: 'pem' | 'encryption key'): Promise<string> {
	return readLocalText(file, {field, kind, fix: `point ${field} at the file itself (a regular file)`});
}

/** A file of the state folder, which holds only what this tool wrote there. */
async function readKept(file: string, kind: FileKind = 'pem'): Promise<string> {
	return readLocalText(file, {field: '--state-dir', kind, fix: `restore ${file} from your backup of the state folder`});
}

async function importCa(config: ResolvedConfig, now: Date): Promise<Material['ca']> {
	const {certFile, keyFile} = config.ca!;
	const certPem = await readConfigured(certFile, 'ca.certFile', 'pem');
	const keyPem = await readConfigured(keyFile, 'ca.keyFile', 'pem');
	let facts;
	try {
		facts = readCertificate(certPem);
	} catch {
		throw new InputError('ca.certFile', certFile, 'is not a PEM RSA certificate', 'point ca.certFile at the CA certificate (ca.pem)');
	}

	let publicKeyPem;
	try {
		publicKeyPem = publicKeyPemOf(keyPem);
	} catch {
		throw new InputError('ca.keyFile', keyFile, 'is not a PEM RSA private key', 'point ca.keyFile at the CA key (ca-key.pem)');
	}

	if (!facts.isCa) {
		throw new InputError('ca.certFile', certFile, 'is not a CA certificate (basicConstraints CA:FALSE)', 'point ca.certFile at the cluster CA, not at a leaf certificate');
	}

	if (facts.publicKeyPem !== publicKeyPem) {
		throw new InputError('ca.keyFile', keyFile, `does not belong to the certificate ${certFile}`, 'give the key pair that was made together (ca.pem with ca-key.pem)');
	}

	if (facts.notAfter <= now) {
		throw new InputError('ca.certFile', certFile, `expired on ${facts.notAfter.toISOString()}`, 'renew the CA first; certificates signed by an expired CA are refused');
	}

	return {certPem, keyPem, imported: true, certFile, keyFile};
}

type Save = (file: string, data: string, mode: number) => void;

async function keyPairAt(file: string, changes: MaterialChange[], item: string, save: Save, cache?: Map<string, KeyPair>, replace = false): Promise<KeyPair> {
	if (replace) {
		// Cached by file: the checks before apply and apply itself must ship the same new key.
		const pair = cache?.get(`${file} (new)`) ?? await generateKeyPair();
		cache?.set(`${file} (new)`, pair);
		save(file, pair.privateKeyPem, 0o600);
		changes.push({item, action: 'made', reason: 'a new key asked (--new-keys)'});
		return pair;
	}

	if (existsSync(file)) {
		const privateKeyPem = await readKept(file);
		return {privateKeyPem, publicKeyPem: publicKeyPemOf(privateKeyPem)};
	}

	const pair = cache?.get(file) ?? await generateKeyPair();
	cache?.set(file, pair);
	save(file, pair.privateKeyPem, 0o600);
	changes.push({item, action: 'made'});
	return pair;
}

function validEncryptionKey(value: string): boolean {
	return /^[A-Za-z\d+/]+={0,2}$/.test(value) && Buffer.from(value, 'base64').length === 32;
}

async function encryptionKey(config: ResolvedConfig, workspace: Workspace, changes: MaterialChange[], save: Save, inUse: boolean): Promise<string> {
	const file = encryptionKeyFile(workspace, firstKeyName);
	const configured = config.encryption.keyFile ? (await readConfigured(config.encryption.keyFile, 'encryption.keyFile', 'encryption key')).trim() : undefined;
	if (configured !== undefined && !validEncryptionKey(configured)) {
		throw new InputError('encryption.keyFile', config.encryption.keyFile, 'does not hold the base64 of exactly 32 bytes', 'write one line made by `head -c 32 /dev/urandom | base64`, or remove the setting to have a key made once');
	}

	if (existsSync(file)) {
		const kept = (await readKept(file, 'encryption key')).trim();
		// A key made here that never reached a master may still give way to the key of a running cluster.
		if (configured !== undefined && configured !== kept && !inUse) {
			save(file, `${configured}\n`, 0o600);
			changes.push({item: 'encryption key', action: 'imported', reason: 'replaces a key made here that no master uses yet'});
			return configured;
		}

		if (configured !== undefined && configured !== kept) {
			throw new InputError('encryption.keyFile', config.encryption.keyFile, 'holds a different key than the one this install already uses; changing it would make every stored secret unreadable', 'remove encryption.keyFile from the config, or restore the file to the key in use');
		}

		changes.push({item: 'encryption key', action: 'kept'});
		return kept;
	}

	const key = configured ?? randomBytes(32).toString('base64');
	save(file, `${key}\n`, 0o600);
	changes.push({item: 'encryption key', action: configured === undefined ? 'made' : 'imported'});
	return key;
}

/** The name the single key has always had in the rendered config, as the tutorial names it. */
export const firstKeyName = 'key1';

/** Names this tool gives its keys; anything else in the state is not a name of ours (nor a safe file name). */
const keyNamePattern = /^key([1-9]\d{0,8})$/;

/** Where a key lives in the state folder: the first as it always has (encryption.key), every later one beside it. */
export function encryptionKeyFile(workspace: Workspace, name: string): string {
	if (!keyNamePattern.test(name)) {
		throw new InputError('--state-dir', name, 'is not the name of an encryption key this tool makes (key1, key2, …)', `restore ${path.join(workspace.root, 'state.json')} from your backup of the state folder`);
	}

	return workspace.pki(name === firstKeyName ? 'encryption.key' : `encryption-${name}.key`);
}

/** The name the next key made here gets: after the highest one in the state folder. */
export function nextEncryptionKeyName(workspace: Workspace): string {
	const folder = path.dirname(encryptionKeyFile(workspace, firstKeyName));
	const numbers = (existsSync(folder) ? readdirSync(folder) : []).flatMap(file => {
		const number = /^encryption-key([1-9]\d{0,8})\.key$/.exec(file)?.[1];
		return number ? [Number(number)] : [];
	});
	return `key${Math.max(1, ...numbers) + 1}`;
}

/**
 * Makes a new key for a rotation to add, beside the keys already here. Its name follows the highest
 * one here, so it is never the name of a key etcd may hold data under; its file is written once,
 * 0600, and never over an existing one.
 */
export function stageEncryptionKey(workspace: Workspace): EncryptionKey {
	const key = {name: nextEncryptionKeyName(workspace), secret: randomBytes(32).toString('base64')};
	const file = encryptionKeyFile(workspace, key.name);
	try {
		writeFileExclusive(file, `${key.secret}\n`, 0o600);
	} catch (error) {
		if ((error as NodeJS.ErrnoException).code === 'EEXIST') {
			throw new InputError('--state-dir', file, 'already exists; an encryption key is never overwritten', 'make sure no other run of k8s-master-install uses this state folder, then run again');
		}

		throw error;
	}

	return key;
}

/**
 * The keys of the encryption config, the write key first: the one key (made once, or imported)
 * until the state records a list, then the recorded keys in their recorded order, each from its
 * file. A key whose file no longer holds the recorded secret is refused: the masters use that one.
 */
async function encryptionKeys(config: ResolvedConfig, workspace: Workspace, changes: MaterialChange[], save: Save, recorded: readonly EncryptionKeyRecord[] | undefined): Promise<EncryptionKeys> {
	const keys: EncryptionKey[] = [];
	for (const {name, sha256: recordedSha256} of recorded ?? [{name: firstKeyName}]) {
		const file = encryptionKeyFile(workspace, name);
		let secret: string;
		if (name === firstKeyName) {
			secret = await encryptionKey(config, workspace, changes, save, recorded !== undefined);
		} else {
			secret = (await readKept(file, 'encryption key')).trim();
			changes.push({item: `encryption key ${name}`, action: 'kept'});
		}

		if (recorded && sha256(secret) !== recordedSha256) {
			throw new InputError('encryption', '(key file in the state folder)', 'is not the key this install already put on the masters', `restore pki/${path.basename(file)} in the state folder from your backup; never make a new key for a running cluster`);
		}

		// A key made or imported here was checked already; a file of the state folder may have been damaged.
		if (!validEncryptionKey(secret)) {
			throw new InputError('--state-dir', file, 'does not hold the base64 of exactly 32 bytes', `restore ${file} from your backup of the state folder`);
		}

		keys.push({name, secret});
	}

	const [write, ...read] = keys;
	if (!write) {
		throw new InputError('--state-dir', path.join(workspace.root, 'state.json'), 'records no encryption key', 'restore state.json from your backup of the state folder');
	}

	return [write, ...read];
}

/**
 * Why a kept certificate no longer fits its request, said in full: the addresses a change of masters
 * adds or removes (the key pair is kept, so nothing that pins it changes), else its subject, key or CA.
 */
function mismatch(existing: string, request: CertificateRequest): string {
	const have = (() => {
		try {
			const facts = readCertificate(existing);
			return [...facts.ipSans, ...facts.dnsSans];
		} catch {
			return undefined;
		}
	})();
	const want = [...(request.ipSans ?? []), ...(request.dnsSans ?? [])];
	const added = want.filter(san => !have?.includes(san));
	const removed = have?.filter(san => !want.includes(san)) ?? [];
	if (have === undefined || added.length + removed.length === 0) {
		return 'its subject, key or CA changed';
	}

	return `its SANs changed (${[...added.map(san => `+${san}`), ...removed.map(san => `-${san}`)].join(', ')}); same key pair`;
}

export type MaterialOptions = {
	rotate?: readonly string[];
	/** Leaves whose key pair is made anew (certs renew --new-keys); their certificates are issued again for it. */
	newKeys?: readonly LeafName[];
	now?: Date;
	previous?: MaterialRecord;
	/** The encryption keys a reset left recorded (the state's keptEncryptionKeys): used while no material is recorded. */
	keptKeys?: readonly EncryptionKeyRecord[];
	/** false for plan: what is missing is made in memory only and reported, nothing is written. */
	persist?: boolean;
	/** Key pairs made in memory by an earlier call (persist: false) of the same run, reused rather than made twice. */
	keyCache?: Map<string, KeyPair>;
};

/**
 * Makes what is missing and keeps what exists: the CA and the encryption key are made once, key
 * pairs are kept, and a certificate is issued again only when its inputs changed or rotation is asked.
 */
export async function ensureMaterial(config: ResolvedConfig, workspace: Workspace, options: MaterialOptions = {}): Promise<{material: Material; changes: MaterialChange[]; record: MaterialRecord}> {
	const now = options.now ?? new Date();
	const changes: MaterialChange[] = [];
	const save: Save = options.persist === false ? () => undefined : writeFileAtomic;

	if (!config.ca && existsSync(workspace.pki('ca.pem')) && !existsSync(workspace.pki('ca-key.pem'))) {
		throw new InputError('ca', workspace.pki('ca-key.pem'), 'is missing while the CA certificate beside it exists', 'restore ca-key.pem from your backup; a new CA would invalidate every certificate the masters use');
	}

	const serviceAccountKey = config.serviceAccount.signingKey;
	// Installs recorded before the setting existed used sa.key exactly when they made one.
	const previousServiceAccountKey = options.previous && (options.previous.serviceAccountKey ?? (existsSync(workspace.pki('sa.key')) ? 'dedicated' : 'ca'));
	if (previousServiceAccountKey && previousServiceAccountKey !== serviceAccountKey) {
		throw new InputError('serviceAccount.signingKey', serviceAccountKey, `differs from the ${previousServiceAccountKey === 'ca' ? 'CA key' : 'dedicated sa.key'} this cluster signs service-account tokens with; changing it makes every issued token invalid`, `set serviceAccount.signingKey: ${previousServiceAccountKey === 'ca' ? 'ca' : 'dedicated'}`);
	}

	// Missing key pairs are made side by side: Node's crypto runs them on its thread pool.
	const keyItems: Array<[string, string, boolean?]> = [
		...(config.ca ? [] : [['CA key', workspace.pki('ca-key.pem')] as [string, string]]),
		...leafNames.map((name): [string, string, boolean] => [`${name} key`, workspace.pki(`${name}-key.pem`), options.newKeys?.includes(name) === true]),
		...(config.serviceAccount.signingKey === 'dedicated' ? [['service-account key', workspace.pki('sa.key')] as [string, string]] : []),
	];
	const made: MaterialChange[][] = keyItems.map(() => []);
	const pairs = new Map(await Promise.all(keyItems.map(async ([item, file, replace], index) => [item, await keyPairAt(file, made[index]!, item, save, options.keyCache, replace)] as const)));
	changes.push(...made.flat());

	let ca: Material['ca'];
	if (config.ca) {
		ca = await importCa(config, now);
		changes.push({item: 'CA', action: 'imported'});
	} else {
		const certFile = workspace.pki('ca.pem');
		const keyFile = workspace.pki('ca-key.pem');
		const pair = pairs.get('CA key')!;
		const request: CertificateRequest = {subject: {...config.certificates.subject, CN: 'kubernetes-ca'}, profile: 'ca', validityDays: caValidityDays};
		const certPem = existsSync(certFile) ? await readKept(certFile) : issueCertificate(request, pair, undefined, now);
		if (!existsSync(certFile)) {
			save(certFile, certPem, 0o644);
			changes.push({item: 'CA certificate', action: 'made'});
		}

		ca = {certPem, keyPem: pair.privateKeyPem, imported: false, certFile, keyFile};
	}

	const caCertSha256 = sha256(ca.certPem);
	if (options.previous && options.previous.caCertSha256 !== caCertSha256) {
		throw new InputError(config.ca ? 'ca.certFile' : 'ca', config.ca?.certFile ?? '(made here)', `is not the CA this install already uses (sha256 ${options.previous.caCertSha256.slice(0, 16)}…); the masters trust that one`, 'restore the CA this install used, or start a separate install with a new --state-dir');
	}

	const leaves = {} as Material['leaves'];
	for (const [name, request] of Object.entries(leafRequests(config)) as Array<[LeafName, CertificateRequest]>) {
		const pair = pairs.get(`${name} key`)!;
		const certFile = workspace.pki(`${name}.pem`);
		const existing = existsSync(certFile) ? await readKept(certFile) : undefined;
		const rotate = options.rotate?.includes(name) || options.rotate?.includes('all');
		if (existing && !rotate && certificateMatches(existing, request, pair, ca.certPem)) {
			leaves[name] = {certPem: existing, keyPem: pair.privateKeyPem};
			continue;
		}

		const certPem = issueCertificate(request, pair, {certPem: ca.certPem, keyPem: ca.keyPem}, now);
		save(certFile, certPem, 0o644);
		changes.push({item: `${name} certificate`, action: existing ? 'reissued' : 'issued', reason: existing ? (rotate ? `rotation asked; ${options.newKeys?.includes(name) ? 'new' : 'same'} key pair` : mismatch(existing, request)) : undefined});
		leaves[name] = {certPem, keyPem: pair.privateKeyPem};
	}

	const serviceAccount = pairs.get('service-account key');
	const keys = await encryptionKeys(config, workspace, changes, save, options.previous?.encryptionKeys ?? options.keptKeys);
	const record: MaterialRecord = {caCertSha256, encryptionKeys: keys.map(({name, secret}) => ({name, sha256: sha256(secret)})), serviceAccountKey};
	return {material: {ca, leaves, serviceAccount, encryptionKeys: keys}, changes, record};
}
