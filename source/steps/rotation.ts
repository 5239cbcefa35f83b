import YAML from 'yaml';
import type {Master} from '../config/schema.js';
import {InputError, StepError} from '../errors.js';
import {sha256} from '../files.js';
import {encryptionKeyFile, nextEncryptionKeyName, stageEncryptionKey, type EncryptionKey, type EncryptionKeyRecord, type EncryptionKeys} from '../pki/material.js';
import {renderEncryptionConfig} from '../render/artifacts.js';
import {readLocalTextSync} from '../safe-read.js';
import {rotationPhases, type EncryptionRotation, type RotationPhase} from '../state/store.js';
import {readinessPath} from '../versions.js';
import {apiserver} from './clients.js';
import {uploadsStartReads} from './definitions.js';
import {filesStep, readRemoteFiles, type Upload} from './files.js';
import {adminTls} from './readiness.js';
import {countSecretValues, describeCount, secretCountScript} from './secret-count.js';
import {startStep} from './services.js';
import type {PlannedAction, StepContext, StepDefinition, StepId, Verification} from './types.js';

/**
 * Rotating the encryption key as the Kubernetes documentation's "Rotating a decryption key" does it,
 * each phase finished on every master before the next begins:
 * prepare (the new key second: every apiserver can read it), rotate (the new key first: new writes
 * use it), rewrite (every secret written back, then every raw value in etcd counted per key: none may
 * be left under another key), drop (the old keys removed). The state records the phase begun last
 * and, before any master gets a phase's config, that phase's key list: an apply in between renders
 * what the masters use, and a killed run continues where it was.
 */

/** The phases that change the masters' encryption config. */
type ConfigPhase = 'prepare' | 'rotate' | 'drop';

/** Where cluster-wide steps are recorded and report progress (engine/plan.ts's clusterHost). */
const clusterRecord = 'cluster';

/** Secrets asked per list call: each page is recorded, so a killed run repeats at most one. */
export const rewritePageSize = 100;

const rank = (phase: RotationPhase) => rotationPhases.indexOf(phase);

/** The rotation under way; none before it starts (plan) and none once it is done. */
export function runningRotation(context: Pick<StepContext, 'state'>): EncryptionRotation | undefined {
	const rotation = context.state.encryptionRotation();
	return rotation && rotation.phase !== 'done' ? rotation : undefined;
}

/** A later phase has begun: this one is finished on every master. */
function finishedEverywhere(context: StepContext, phase: RotationPhase): boolean {
	const rotation = runningRotation(context);
	return rotation !== undefined && rank(rotation.phase) > rank(phase);
}

/** The keys of a phase's encryption config, in the order the apiserver reads them (the first encrypts). */
export function phaseKeys(rotation: Pick<EncryptionRotation, 'from' | 'to'>, phase: ConfigPhase): EncryptionKeyRecord[] {
	const [write, ...others] = rotation.from;
	switch (phase) {
		case 'prepare': {
			return [write!, rotation.to, ...others];
		}

		case 'rotate': {
			return [rotation.to, ...rotation.from];
		}

		case 'drop': {
			return [rotation.to];
		}
	}
}

const keysRead = new WeakMap<StepContext, Map<string, EncryptionKey>>();

/** A key of the state folder, read once per run and checked against the sha256 the rotation recorded. */
function keptKey(context: StepContext, record: EncryptionKeyRecord): EncryptionKey {
	const read = keysRead.get(context) ?? new Map<string, EncryptionKey>();
	keysRead.set(context, read);
	const cached = read.get(`${record.name} ${record.sha256}`);
	if (cached) {
		return cached;
	}

	const file = encryptionKeyFile(context.workspace, record.name);
	const secret = readLocalTextSync(file, {field: '--state-dir', kind: 'encryption key', fix: `restore ${file} from your backup of the state folder`}).trim();
	if (sha256(secret) !== record.sha256) {
		throw new InputError('--state-dir', file, `is not the key ${record.name} the rotation recorded (its sha256 differs)`, `restore ${file} from your backup of the state folder; the masters or etcd's data use that key`);
	}

	context.runner.addSecret(secret);
	const key = {name: record.name, secret};
	read.set(`${record.name} ${record.sha256}`, key);
	return key;
}

/** A phase's encryption config as an upload; undefined before the rotation has its new key (plan). */
function phaseUpload(context: StepContext, phase: ConfigPhase): Upload | undefined {
	const rotation = runningRotation(context);
	if (!rotation) {
		return undefined;
	}

	const records = phaseKeys(rotation, phase);
	const artifact = renderEncryptionConfig(context.config, records.map(record => keptKey(context, record)) as EncryptionKeys);
	return {
		kind: 'upload',
		path: artifact.remote!.path,
		mode: artifact.mode,
		sha256: sha256(artifact.content),
		bytes: Buffer.byteLength(artifact.content),
		secret: true,
		source: {content: artifact.content},
		label: `encryption-config.yaml (keys ${records.map(record => record.name).join(', ')})`,
	};
}

/** How plan names the keys before the new one exists: the one the rotation would make, by name. */
function plannedKeys(context: StepContext, phase: ConfigPhase): string {
	const current = context.material.encryptionKeys.map(key => ({name: key.name, sha256: ''}));
	const keys = phaseKeys({from: current, to: {name: `${nextEncryptionKeyName(context.workspace)} (new)`, sha256: ''}}, phase);
	return keys.map(key => key.name).join(', ');
}

/** Begins a phase: recorded, with its key list, before any master gets its config. */
function beginPhase(context: StepContext, phase: Exclude<RotationPhase, 'done'>): EncryptionRotation {
	const rotation = runningRotation(context);
	if (!rotation) {
		throw new StepError({step: phase, host: clusterRecord, message: 'no key rotation is under way', fix: 'run rotate-encryption-key again: it starts with the new key'});
	}

	const begun = rank(rotation.phase) < rank(phase) ? {...rotation, phase} : rotation;
	if (begun !== rotation) {
		context.state.recordEncryptionRotation(begun);
	}

	if (phase !== 'rewrite') {
		context.state.recordEncryptionKeys(phaseKeys(rotation, phase));
	}

	return begun;
}

const done = (phase: RotationPhase): Verification => ({done: true, detail: `the ${phase} phase is finished on every master (recorded)`});

/**
 * The rewrite writes back secrets and proves it by counting /registry/secrets/: a config that also
 * encrypts other resources, or an apiserver keeping its keys under another prefix, would leave data
 * under the old key that drop then removes for good.
 */
function refuseUnprovable(context: StepContext): void {
	const prefixFlag = context.config.extraFlags['kube-apiserver'].find(flag => /^--etcd[-_]prefix\b/.test(flag));
	if (prefixFlag) {
		throw new InputError('extraFlags.kube-apiserver', prefixFlag, 'moves the apiserver\'s data out of /registry/, where the rotation proves that no secret is left under the old key', 'rotate by hand (the Kubernetes documentation\'s "Rotating a decryption key"), or run without this flag');
	}

	const rendered = YAML.parse(renderEncryptionConfig(context.config, context.material.encryptionKeys).content) as {resources?: Array<{resources?: unknown}>};
	const others = (rendered.resources ?? []).flatMap(entry => (Array.isArray(entry.resources) ? entry.resources : [])).filter(resource => resource !== 'secrets');
	if (others.length > 0) {
		throw new InputError('templatesDir', `${context.config.templatesDir ?? 'templates'}/encryption-config.yaml`, `encrypts ${others.join(', ')} besides secrets: the rotation writes back and counts secrets only`, 'rotate by hand for those resources (the Kubernetes documentation\'s "Rotating a decryption key"), or encrypt secrets only');
	}
}

/**
 * The first step, a check before anything is made: every master runs the encryption config this
 * install wrote there and its apiserver is ready. A rotation on a master that drifted or is down
 * would leave it unable to read what the others write.
 */
export const rotationCheck: StepDefinition = {
	id: 'rotation-check',
	title: 'Check that every master runs its encryption config and serves',
	needs: [],
	scope: 'each-master',
	plan: (context, master) => [{kind: 'check', description: `${context.config.paths.configDir}/encryption-config.yaml is the one this install wrote; https://${master.ip}:6443${readinessPath(context.config.kubeVersion)} answers ok`}],
	verify: async () => ({done: false}),
	async run(context, master) {
		refuseUnprovable(context);
		const file = `${context.config.paths.configDir}/encryption-config.yaml`;
		const [facts, ready] = await Promise.all([
			readRemoteFiles(context, master, 'rotation-check', [file], ['encryption']),
			context.probe(master.ip, 6443, readinessPath(context.config.kubeVersion), adminTls(context)),
		]);
		const found = facts.get(file)?.sha256;
		if (!found || !context.state.writtenHashes(master.name, file).has(found)) {
			throw new StepError({step: 'rotation-check', host: master.name, message: `${file} ${found ? 'was changed since this install wrote it' : 'is missing'}`, fix: 'run apply first, so that every master runs the encryption config of this install'});
		}

		if (!ready.ok) {
			throw new StepError({step: 'rotation-check', host: master.name, message: `kube-apiserver is not ready (${ready.error ?? `HTTP ${ready.status}`})`, fix: 'run apply (or k8s-master-install verify) until every master serves, then rotate'});
		}

		return 'encryption config in place, apiserver ready';
	},
};

/** Makes the new key (0600 in the state folder, never over a file) and records the rotation, unless one is under way. */
export const newKey: StepDefinition = {
	id: 'new-key',
	title: 'Make the new encryption key',
	needs: [],
	scope: 'cluster',
	plan: context => [{kind: 'local', display: `make ${nextEncryptionKeyName(context.workspace)} (32 random bytes, base64) in ${context.workspace.pki('')} (mode 0600); the state records its name and sha256`}],
	async verify(context) {
		const rotation = runningRotation(context);
		return rotation ? {done: true, detail: `rotation ${rotation.from[0]!.name} → ${rotation.to.name} under way since ${rotation.startedAt}`} : {done: false};
	},
	async run(context) {
		const from = context.material.encryptionKeys.map(key => ({name: key.name, sha256: sha256(key.secret)}));
		const key = stageEncryptionKey(context.workspace);
		context.runner.addSecret(key.secret);
		context.state.recordEncryptionRotation({from, to: {name: key.name, sha256: sha256(key.secret)}, startedAt: new Date().toISOString(), phase: 'prepare'});
		return `${key.name} made (${encryptionKeyFile(context.workspace, key.name)}, mode 0600)`;
	},
};

const phaseTitles: Record<ConfigPhase, string> = {
	prepare: 'Prepare: add the new key second (every apiserver can read it)',
	rotate: 'Rotate: put the new key first (new writes use it)',
	drop: 'Drop: remove the old key',
};

/** The count that lets drop go ahead: every secret's value in etcd under the new key. */
function requireProof(rotation: EncryptionRotation | undefined, master: Master): void {
	const left = Object.entries(rotation?.count?.byKey ?? {}).filter(([key, count]) => key !== rotation!.to.name && count > 0);
	// Secrets written back but none counted under the new key: the count read the wrong place (another --etcd-prefix), not a proof.
	const counted = (rotation?.count?.byKey[rotation.to.name] ?? 0) > 0 || (rotation?.rewrite?.rewritten ?? 0) === 0;
	if (rotation?.count && left.length === 0 && counted && rank(rotation.phase) >= rank('rewrite')) {
		return;
	}

	throw new StepError({
		step: 'drop',
		host: master.name,
		message: rotation?.count && left.length > 0 ? `the old key is still needed: etcd holds ${left.map(([key, count]) => `${count} secret value(s) under ${key}`).join(', ')}` : 'the old key is still needed: the rewrite has not proved that no secret is left under it',
		fix: 'run rotate-encryption-key again: it finishes the rewrite first',
	});
}

/** A phase's config written on every master (side by side: an apiserver reads it only when it starts). */
function phaseFiles(phase: ConfigPhase, needs: StepId[]): StepDefinition {
	const files = filesStep({
		id: phase,
		title: phaseTitles[phase],
		needs,
		plan: (context): PlannedAction[] => {
			const upload = phaseUpload(context, phase);
			return upload ? [upload] : [{kind: 'check', description: `write ${context.config.paths.configDir}/encryption-config.yaml (0600) with the aescbc keys ${plannedKeys(context, phase)}`}];
		},
	});
	return {
		...files,
		async verify(context, master, record, inputs) {
			return finishedEverywhere(context, phase) ? done(phase) : files.verify(context, master, record, inputs);
		},
		async run(context, master, inputs, verification) {
			if (phase === 'drop') {
				requireProof(runningRotation(context), master);
			}

			beginPhase(context, phase);
			return files.run(context, master, inputs, verification);
		},
	};
}

/** The files the apiserver starts with in a phase: the install's, with the phase's encryption config. */
function phaseStartReads(phase: ConfigPhase) {
	return (context: StepContext, master: Master): Upload[] => {
		const config = phaseUpload(context, phase);
		return uploadsStartReads(context, master).map(upload => (config && upload.path === config.path ? config : upload));
	};
}

/** The apiservers restarted on the phase's config, one master after the other, each out of kube-nginx meanwhile (see drain.ts). */
function phaseRestart(phase: ConfigPhase): StepDefinition {
	const id = `${phase}-restart`;
	const start = startStep(phaseStartReads(phase), {id, order: [['kube-apiserver']]});
	return {
		...start,
		title: `Restart kube-apiserver with the ${phase} config, one master after the other`,
		needs: [phase],
		order: 'rolling',
		async verify(context, master, record, inputs) {
			return finishedEverywhere(context, phase) ? done(phase) : start.verify(context, master, record, inputs);
		},
	};
}

type SecretItem = {metadata?: {name?: string; namespace?: string; resourceVersion?: string}} & Record<string, unknown>;
type SecretList = {items?: SecretItem[]; metadata?: {continue?: string; remainingItemCount?: number}};

/**
 * Every secret of every namespace read and written back unchanged, page by page (limit/continue), as
 * `kubectl get secrets -A -o json | kubectl replace -f -` does: the apiserver encrypts each with its
 * write key. Each page's continue token is recorded once the page is written: a killed run goes on
 * from there (writing a secret twice is harmless); an expired token starts the list over.
 */
async function rewriteSecrets(context: StepContext, master: Master): Promise<{rewritten: number; gone: number; changed: number}> {
	const recorded = runningRotation(context)?.rewrite;
	let token = recorded?.continue;
	let rewritten = token ? recorded!.rewritten : 0;
	let gone = token ? recorded!.gone : 0;
	let changed = 0;
	for (;;) {
		context.throwIfStopping();
		const path = `/api/v1/secrets?limit=${rewritePageSize}${token ? `&continue=${encodeURIComponent(token)}` : ''}`;
		const page = await apiserver(context, master, 'rewrite', {method: 'GET', path});
		if (!page.ok && page.status === 410 && token) {
			// etcd compacted the revision the token lists at (the real apiserver's "Expired").
			context.runner.log({event: 'rewrite-restarted', host: master.name, reason: page.problem});
			context.progress('rewrite', clusterRecord, {message: 'the list expired; starting it over (writing a secret again is harmless)'});
			token = undefined;
			rewritten = 0;
			gone = 0;
			continue;
		}

		if (!page.ok) {
			throw new StepError({step: 'rewrite', host: master.name, message: `listing the secrets failed: ${page.problem}`, command: `GET ${path}`});
		}

		const list = page.object as SecretList;
		for (const item of list.items ?? []) {
			const namespace = item.metadata?.namespace ?? '';
			const name = item.metadata?.name ?? '';
			const itemPath = `/api/v1/namespaces/${encodeURIComponent(namespace)}/secrets/${encodeURIComponent(name)}`;
			const put = await apiserver(context, master, 'rewrite', {method: 'PUT', path: itemPath, body: {...item, apiVersion: 'v1', kind: 'Secret'}});
			if (put.ok) {
				rewritten++;
			} else if (put.reason === 'NotFound') {
				gone++;
			} else if (put.reason === 'Conflict') {
				// Written since it was listed, by an apiserver that already encrypts with the new key (rotate is done everywhere).
				changed++;
			} else {
				throw new StepError({step: 'rewrite', host: master.name, message: `writing secret ${namespace}/${name} back failed: ${put.problem}`, command: `PUT ${itemPath}`});
			}
		}

		token = list.metadata?.continue || undefined;
		context.state.recordEncryptionRotation({...runningRotation(context)!, rewrite: {continue: token, rewritten, gone, at: new Date().toISOString()}});
		const remaining = list.metadata?.remainingItemCount;
		context.progress('rewrite', clusterRecord, {message: `${rewritten} secret(s) written back${remaining === undefined ? '' : `, about ${remaining} to go`}`});
		if (!token) {
			return {rewritten, gone, changed};
		}
	}
}

export const rewrite: StepDefinition = {
	id: 'rewrite',
	title: 'Rewrite: every secret written back with the new key, then etcd counted per key',
	needs: ['rotate-restart'],
	scope: 'cluster',
	plan: (context, master) => [
		{kind: 'local', display: `GET https://${master.ip}:6443/api/v1/secrets?limit=${rewritePageSize}, page after page (continue), each secret PUT back unchanged (as kubectl get secrets -A -o json | kubectl replace -f -)`},
		{kind: 'remote', script: secretCountScript(context, master), display: 'etcdctl get /registry/secrets/ --prefix: each raw value\'s key prefix, counted per key'},
		{kind: 'check', description: 'every value starts k8s:enc:aescbc:v1:<new key>: (0 under the old key, else the rotation stops here)'},
	],
	async verify(context) {
		return finishedEverywhere(context, 'rewrite') ? done('rewrite') : {done: false};
	},
	async run(context, master) {
		const rotation = beginPhase(context, 'rewrite');
		const written = await rewriteSecrets(context, master);
		context.throwIfStopping();
		const count = await countSecretValues(context, master, 'rewrite');
		context.state.recordEncryptionRotation({...runningRotation(context)!, count: {at: new Date().toISOString(), byKey: count.byKey}});
		const left = Object.entries(count.byKey).filter(([key]) => key !== rotation.to.name);
		const leftTotal = left.reduce((sum, [, each]) => sum + each, 0);
		const order = [rotation.to.name, ...rotation.from.map(key => key.name)];
		if (leftTotal > 0) {
			throw new StepError({
				step: 'rewrite',
				host: master.name,
				message: `${leftTotal} secret value(s) in etcd are not under ${rotation.to.name} after the rewrite: ${describeCount(count.byKey, order)} (e.g. ${left.flatMap(([key]) => count.samples[key] ?? []).slice(0, 5).join(', ')})`,
				command: 'etcdctl get /registry/secrets/ --prefix',
				fix: 'run rotate-encryption-key again: the rewrite starts over; the old key stays until no value is left under it',
			});
		}

		const extra = [written.gone > 0 ? `${written.gone} deleted meanwhile` : '', written.changed > 0 ? `${written.changed} changed meanwhile (written with the new key)` : ''].filter(Boolean).join(', ');
		return `${written.rewritten} secret(s) written back${extra ? ` (${extra})` : ''}; etcd: ${describeCount(count.byKey, order)}`;
	},
};

/** The rotation recorded as done; the old keys' files stay in the state folder until removed on request. */
export const rotationDone: StepDefinition = {
	id: 'rotation-done',
	title: 'Record the rotation as done',
	needs: ['drop-restart'],
	scope: 'cluster',
	plan: context => [{kind: 'local', display: `record the rotation as done; the old key file(s) stay in ${context.workspace.pki('')} until rotate-encryption-key --remove-old-key`}],
	verify: async context => ({done: runningRotation(context) === undefined && context.state.encryptionRotation() !== undefined}),
	async run(context) {
		const rotation = beginPhase(context, 'drop');
		context.state.recordEncryptionRotation({...rotation, phase: 'done', finishedAt: new Date().toISOString()});
		return `${rotation.to.name} is the only key; ${rotation.from.map(key => key.name).join(', ')} kept in the state folder`;
	},
};

/**
 * The rotation's steps in order; `snapshot`, when given, is taken after the check and before the new
 * key is made (the check stays first: see checksFirst; the snapshot must not need it).
 */
export function rotationSteps(snapshot?: StepDefinition): StepDefinition[] {
	return [
		rotationCheck,
		...(snapshot ? [snapshot] : []),
		{...newKey, needs: snapshot ? [snapshot.id] : []},
		phaseFiles('prepare', ['new-key']),
		phaseRestart('prepare'),
		phaseFiles('rotate', ['prepare-restart']),
		phaseRestart('rotate'),
		rewrite,
		phaseFiles('drop', ['rewrite']),
		phaseRestart('drop'),
		rotationDone,
	];
}
