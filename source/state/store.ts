import {existsSync} from 'node:fs';
import path from 'node:path';
import Conf from 'conf';
import {InputError} from '../errors.js';
import {firstKeyName, type EncryptionKeyRecord, type MaterialRecord} from '../pki/material.js';
import {checkLocalFile} from '../safe-read.js';

import type {StepId} from '../steps/types.js';

export type HostRecord = {
	status: 'done' | 'running' | 'failed';
	at: string;
	/** Fingerprint of what the step does on this host; a change means the step must run again. */
	inputs: string;
	/** Remote path -> sha256 of what this install wrote there (also after a failure, per action). */
	files?: Record<string, string>;
	/** Remote path -> its identity (device:inode:size:mtime:ctime) when it last had this sha256: unchanged, it is not hashed again. */
	stats?: Record<string, {stat: string; sha256: string}>;
	/** Service -> fingerprint of the files it read when it last started healthy (start step). */
	services?: Record<string, string>;
	error?: string;
	note?: string;
};

export type RunRecord = {
	/** The operation that ran ("install"): a resume offers that one. */
	operation: string;
	startedAt: string;
	updatedAt: string;
	status: 'running' | 'done' | 'failed' | 'stopped';
	/** The step within that operation ("start"). */
	step?: StepId;
	host?: string;
	error?: string;
};

export type InstallState = {
	schema: 3;
	cluster: string;
	version?: string;
	material?: MaterialRecord;
	run?: RunRecord;
	/** Per step, keyed by operation and step ("install/start"). */
	steps: Partial<Record<string, {hosts: Record<string, HostRecord>}>>;
	/** Per master, how long its last restart took (from the restart until every service was ready): plan's estimate. */
	restartTimes?: Record<string, RestartTime>;
	/** Per master, the releases the start step brought up healthy there, oldest first: the last two are the current one and the way back. */
	startedReleases?: Record<string, string[]>;
	/** The etcd snapshots taken (backup, before an upgrade or a reset), oldest first: where and what, never their content. */
	snapshots?: SnapshotRecord[];
	/** Per master this install was run on, its address as the config gave it then: a master the config no longer lists (or lists at another address) is decommissioned there. */
	masters?: Record<string, RecordedMaster>;
	/** The last (or running) encryption-key rotation: rotate-encryption-key. */
	encryptionRotation?: EncryptionRotation;
	/**
	 * The encryption keys a reset left recorded: etcd keeps the data they encrypted, so the next apply
	 * must use them, not a key of its own. Set only when they are not the first key alone.
	 */
	keptEncryptionKeys?: EncryptionKeyRecord[];
};

/** One etcd snapshot kept on this workstation: its file (mode 0600), its sha256 and what etcdctl snapshot status read in it. */
export type SnapshotRecord = {path: string; sha256: string; at: string; revision: number; keys: number; bytes: number; master: string; occasion: string};

/** The phases of a rotation, in order; each is finished on every master before the next begins. */
export const rotationPhases = ['prepare', 'rotate', 'rewrite', 'drop', 'done'] as const;

export type RotationPhase = typeof rotationPhases[number];

/** What the state keeps of a key rotation: names and sha256 of the keys, never a secret. */
export type EncryptionRotation = {
	/** The keys the masters used before it, the write key first; their files stay until removed on request. */
	from: EncryptionKeyRecord[];
	/** The key it brings in. */
	to: EncryptionKeyRecord;
	startedAt: string;
	/** The phase begun last: a phase begins only once the one before is finished on every master. */
	phase: RotationPhase;
	/** Where the rewrite stands: the continue token of the next page (none: from the start) and what was written back. */
	rewrite?: {continue?: string; rewritten: number; gone: number; at: string};
	/** The last count of the secrets' raw values in etcd, per key name (`plain`: not encrypted). */
	count?: {at: string; byKey: Record<string, number>};
	finishedAt?: string;
	/** When the old keys' files were removed from the state folder (on request). */
	oldKeysRemovedAt?: string;
};

/** Where a master was reached (the config's entry when it was first installed). */
export type RecordedMaster = {ip: string; sshHost?: string};

export type RestartTime = {ms: number; at: string; services: string[]};

/** Schema 2 (one encryption key): the material record held that key's sha256 alone. */
type StateSchema2 = Omit<InstallState, 'schema' | 'material'> & {schema: 2; material?: Omit<MaterialRecord, 'encryptionKeys'> & {encryptionKeySha256: string}};

/** Schema 1 (before operations): the install's steps under their bare ids, and a run record naming no operation. */
type StateSchema1 = Omit<StateSchema2, 'schema' | 'run'> & {schema: 1; run?: Omit<RunRecord, 'operation'>};

/** Where an operation's step is kept in the state. */
export function stepKey(operation: string, step: StepId): string {
	return `${operation}/${step}`;
}

/**
 * A state of an earlier schema, brought to this one step by step; nothing recorded is lost, so
 * nothing is redone. Before operations (1) everything was the install's: its steps move under
 * "install/", its run names the install ("reset" was never a step and is dropped). Before more than
 * one encryption key (2), the one key is the list's only key, key1, as the rendered config named it.
 */
export function migrateState(stored: StateSchema1 | StateSchema2): InstallState {
	if (stored.schema === 1) {
		const steps = Object.fromEntries(Object.entries(stored.steps).filter(([step]) => step !== 'reset').map(([step, record]) => [stepKey('install', step), record]));
		return migrateState({...stored, schema: 2, steps, run: stored.run && {operation: 'install', ...stored.run}});
	}

	const {material, ...rest} = stored;
	if (!material) {
		return {...rest, schema: 3};
	}

	const {encryptionKeySha256, ...kept} = material;
	return {...rest, schema: 3, material: {...kept, encryptionKeys: [{name: firstKeyName, sha256: encryptionKeySha256}]}};
}

/**
 * One operation's view of the progress: its steps are named as the operation names them; what any
 * operation wrote on a host (writtenFiles, writtenHashes, forgetFiles, forgetHost) is the whole state's.
 */
export type Progress = Pick<StateStore, 'writtenHashes' | 'writtenFiles' | 'forgetFiles' | 'forgetHost' | 'recordRestartTime' | 'recordStartedRelease' | 'startedReleases' | 'recordMasters' | 'encryptionRotation' | 'recordEncryptionRotation' | 'recordEncryptionKeys' | 'recordSnapshot' | 'recordedVersion'> & {
	host(key: string, host: string): HostRecord | undefined;
	recordHost(key: string, host: string, record: HostRecord, options?: {later?: boolean}): void;
	recordFile(key: string, host: string, remotePath: string, hash: string, stat?: string): void;
	recordStats(key: string, host: string, files: Array<{path: string; stat?: string; sha256: string}>): void;
	/** Per service, the fingerprint of the files it last started healthy with on this host, by whichever operation. */
	startedWith(host: string): Record<string, string> | undefined;
	recordService(host: string, service: string, inputs: string): void;
};

/**
 * Where the services' fingerprints are kept: the install's start step's record, as before day-2
 * operations restarted services too, so a state written then is read as it was. A restart by a key
 * rotation or an upgrade updates it: the next apply restarts only what changed since.
 */
const serviceRecordKey = stepKey('install', 'start');

/** conf's own folder for this tool: the default --state-dir. */
export function defaultStateDir(): string {
	return path.dirname(new Conf({projectName: 'k8s-master-install', configName: 'location'}).path);
}

/**
 * The install's progress, per step and per host, written after every action. conf writes
 * through a temporary file and a rename, so a SIGKILL leaves the previous or the next state.
 */
export class StateStore {
	readonly path: string;
	private conf: Conf<InstallState> | undefined;
	private state: InstallState;
	/** The state as last written (or read): a change that leaves it so writes nothing. */
	private written: string | undefined;

	constructor(private readonly folder: string, cluster: string) {
		this.path = path.join(folder, 'state.json');
		// conf makes its folder when opened: a state that was never written is not opened, so plan leaves no trace.
		const stored: Partial<InstallState> | Partial<StateSchema2> | Partial<StateSchema1> = existsSync(this.path) ? this.openChecked() : {};
		if (typeof stored.schema === 'number' && stored.schema > 3) {
			// Read as empty, it would lose the progress and the record of the keys the masters use.
			throw new InputError('--state-dir', this.path, `was written by a newer k8s-master-install (state schema ${stored.schema}; this one reads up to 3)`, 'run the newer version that wrote it');
		}

		this.state = stored.schema === 3 ? stored as InstallState : stored.schema === 1 || stored.schema === 2 ? migrateState(stored as StateSchema1 | StateSchema2) : {schema: 3, cluster, steps: {}};
		this.written = stored.schema === 3 ? JSON.stringify(this.state) : undefined;
	}

	/** conf reads the file whole and synchronously: it must be a regular file of a sane size first. */
	private openChecked(): Partial<InstallState> | Partial<StateSchema2> | Partial<StateSchema1> {
		checkLocalFile(this.path, {field: '--state-dir', kind: 'state', fix: `restore ${this.path} from your backup of the state folder`});
		return this.open().store as Partial<InstallState> | Partial<StateSchema2> | Partial<StateSchema1>;
	}

	/** The progress of one operation, its steps named as it names them. */
	progress(operation: string): Progress {
		return {
			host: (step, host) => this.host(stepKey(operation, step), host),
			recordHost: (step, host, record, options) => this.recordHost(stepKey(operation, step), host, record, options),
			recordFile: (step, host, remotePath, hash, stat) => this.recordFile(stepKey(operation, step), host, remotePath, hash, stat),
			recordStats: (step, host, files) => this.recordStats(stepKey(operation, step), host, files),
			startedWith: host => this.host(serviceRecordKey, host)?.services,
			recordService: (host, service, inputs) => this.recordService(serviceRecordKey, host, service, inputs),
			writtenHashes: (host, remotePath) => this.writtenHashes(host, remotePath),
			writtenFiles: host => this.writtenFiles(host),
			forgetFiles: (host, remotePaths) => this.forgetFiles(host, remotePaths),
			forgetHost: host => this.forgetHost(host),
			recordRestartTime: (host, time) => this.recordRestartTime(host, time),
			recordStartedRelease: (host, version) => this.recordStartedRelease(host, version),
			startedReleases: host => this.startedReleases(host),
			recordMasters: masters => this.recordMasters(masters),
			encryptionRotation: () => this.encryptionRotation(),
			recordEncryptionRotation: rotation => this.recordEncryptionRotation(rotation),
			recordEncryptionKeys: keys => this.recordEncryptionKeys(keys),
			recordSnapshot: record => this.recordSnapshot(record),
			recordedVersion: () => this.recordedVersion(),
		};
	}

	private open(): Conf<InstallState> {
		this.conf ??= new Conf<InstallState>({cwd: this.folder, configName: 'state', configFileMode: 0o600, accessPropertiesByDotNotation: false, projectName: 'k8s-master-install'});
		return this.conf;
	}

	get snapshot(): InstallState {
		return structuredClone(this.state);
	}

	get isEmpty(): boolean {
		return Object.keys(this.state.steps).length === 0 && this.state.run === undefined;
	}

	private host(key: string, host: string): HostRecord | undefined {
		return this.state.steps[key]?.hosts[host];
	}

	/**
	 * Changes the state and writes it. `later`: a change no action depends on (where the run is, a
	 * check under way) is written with the next change that is written, not on its own: each write
	 * costs the run a serialisation, an fsync and a rename on its one thread.
	 */
	update(change: (state: InstallState) => void, {later = false}: {later?: boolean} = {}): void {
		change(this.state);
		if (later) {
			return;
		}

		// A record written again as it was (a step found done again) costs a write and an fsync for nothing.
		const text = JSON.stringify(this.state);
		if (text === this.written) {
			return;
		}

		this.open().store = this.state;
		this.written = text;
	}

	private recordHost(key: string, host: string, record: HostRecord, options?: {later?: boolean}): void {
		// Recorded again as it is (a step found done again): not even the state as a whole is compared.
		if (JSON.stringify(this.host(key, host)) === JSON.stringify(record)) {
			return;
		}

		this.update(state => {
			(state.steps[key] ??= {hosts: {}}).hosts[host] = record;
		}, options);
	}

	/** Remembers one file written (or found in place) on a host, before the step as a whole is done. */
	private recordFile(key: string, host: string, remotePath: string, hash: string, stat?: string): void {
		this.updateHost(key, host, record => {
			record.files = {...record.files, [remotePath]: hash};
			if (stat) {
				record.stats = {...record.stats, [remotePath]: {stat, sha256: hash}};
			}
		});
	}

	/** Remembers the identity of files found in place with these hashes. */
	private recordStats(key: string, host: string, files: Array<{path: string; stat?: string; sha256: string}>): void {
		const seen = files.filter((file): file is {path: string; stat: string; sha256: string} => file.stat !== undefined);
		const stats = this.host(key, host)?.stats ?? {};
		if (seen.every(file => stats[file.path]?.stat === file.stat && stats[file.path]?.sha256 === file.sha256)) {
			return;
		}

		this.updateHost(key, host, record => {
			record.stats = {...record.stats, ...Object.fromEntries(seen.map(file => [file.path, {stat: file.stat, sha256: file.sha256}]))};
		});
	}

	/** Remembers that a service started healthy with these inputs, before the step as a whole is done. */
	private recordService(key: string, host: string, service: string, inputs: string): void {
		this.updateHost(key, host, record => {
			record.services = {...record.services, [service]: inputs};
		});
	}

	/** Changes a host's record in place; a host without one gets an "interrupted" record to change. */
	private updateHost(key: string, host: string, change: (record: HostRecord) => void): void {
		this.update(state => {
			const hosts = (state.steps[key] ??= {hosts: {}}).hosts;
			const record = hosts[host] ?? {status: 'failed', at: new Date().toISOString(), inputs: '', error: 'interrupted'};
			change(record);
			hosts[host] = record;
		});
	}

	/** Every hash this install ever wrote at a remote path on a host, for "is this file ours?". */
	writtenHashes(host: string, remotePath: string): Set<string> {
		const hashes = new Set<string>();
		for (const step of Object.values(this.state.steps)) {
			const hash = step?.hosts[host]?.files?.[remotePath];
			if (hash) {
				hashes.add(hash);
			}
		}

		return hashes;
	}

	setRun(run: Partial<RunRecord> & Pick<RunRecord, 'operation' | 'status'>, options?: {later?: boolean}): void {
		this.update(state => {
			const now = new Date().toISOString();
			state.run = {startedAt: state.run?.startedAt ?? now, ...state.run, ...run, updatedAt: now};
		}, options);
	}

	/** Every remote path this install wrote on a host, with the hashes it wrote there. */
	writtenFiles(host: string): Map<string, Set<string>> {
		const files = new Map<string, Set<string>>();
		for (const step of Object.values(this.state.steps)) {
			for (const [remotePath, hash] of Object.entries(step?.hosts[host]?.files ?? {})) {
				files.set(remotePath, (files.get(remotePath) ?? new Set()).add(hash));
			}
		}

		return files;
	}

	/** Remembers how long a master's restart took, for the next plan's estimate. */
	recordRestartTime(host: string, time: RestartTime): void {
		this.update(state => {
			state.restartTimes = {...state.restartTimes, [host]: time};
		});
	}

	/** Remembers that a release started healthy on a master; one started again moves to the end. */
	recordStartedRelease(host: string, version: string): void {
		const started = this.startedReleases(host);
		if (started.at(-1) === version) {
			return;
		}

		this.update(state => {
			state.startedReleases = {...state.startedReleases, [host]: [...started.filter(each => each !== version), version].slice(-2)};
		});
	}

	/** The releases that started healthy on a master, oldest first (none recorded before this record existed). */
	startedReleases(host: string): string[] {
		return this.state.startedReleases?.[host] ?? [];
	}

	/** Remembers an etcd snapshot kept on this workstation. */
	recordSnapshot(record: SnapshotRecord): void {
		this.update(state => {
			state.snapshots = [...state.snapshots ?? [], record];
		});
	}

	/** The release the state records the masters on (set once an apply's checks passed); undefined before the first. */
	recordedVersion(): string | undefined {
		return this.state.version;
	}

	/** Forgets files that are no longer on a host (removed with an old release), whichever step wrote them. */
	forgetFiles(host: string, remotePaths: string[]): void {
		this.update(state => {
			for (const record of Object.values(state.steps).map(step => step?.hosts[host])) {
				for (const remotePath of remotePaths) {
					delete record?.files?.[remotePath];
					delete record?.stats?.[remotePath];
				}
			}
		});
	}

	/** Forgets what was done on one host (after reset removed it there). */
	forgetHost(host: string): void {
		this.update(state => {
			for (const step of Object.values(state.steps)) {
				delete step?.hosts[host];
			}

			delete state.startedReleases?.[host];
			delete state.restartTimes?.[host];
			delete state.masters?.[host];
		});
	}

	/**
	 * Remembers where masters are reached, for a later apply that no longer lists one. A name already
	 * recorded keeps its address: at another address it is a new machine, and the old one is
	 * decommissioned (then forgotten) before the new address is recorded.
	 */
	recordMasters(masters: ReadonlyArray<{name: string; ip: string; sshHost?: string}>): void {
		const missing = masters.filter(master => !this.state.masters?.[master.name]);
		if (missing.length === 0) {
			return;
		}

		this.update(state => {
			state.masters = {...state.masters, ...Object.fromEntries(missing.map(({name, ip, sshHost}) => [name, sshHost === undefined ? {ip} : {ip, sshHost}]))};
		});
	}

	/**
	 * Forgets that the key material is in use: no master holds it any more. Keys other than the
	 * first alone (a rotation's) are kept: etcd's data, which a reset keeps, is encrypted with them.
	 */
	forgetMaterialInUse(): void {
		this.update(state => {
			const keys = state.material?.encryptionKeys;
			if (keys && (keys.length > 1 || keys[0]?.name !== firstKeyName)) {
				state.keptEncryptionKeys = keys;
			}

			delete state.material;
		});
	}

	/** The running or last encryption-key rotation. */
	encryptionRotation(): EncryptionRotation | undefined {
		return this.state.encryptionRotation && structuredClone(this.state.encryptionRotation);
	}

	recordEncryptionRotation(rotation: EncryptionRotation): void {
		this.update(state => {
			state.encryptionRotation = rotation;
		});
	}

	/** The encryption keys the masters are given now, in order: recorded before any master gets them. */
	recordEncryptionKeys(keys: EncryptionKeyRecord[]): void {
		this.update(state => {
			if (state.material) {
				state.material.encryptionKeys = keys;
			}

			delete state.keptEncryptionKeys;
		});
	}

	/** Forgets progress (not the key material): "start over". */
	/**
	 * Forgets every step's progress. Where masters are reached stays: it is the inventory of what this
	 * install runs on, and a master the config dropped must still be decommissioned by the next apply.
	 */
	clearProgress(): void {
		this.update(state => {
			state.steps = {};
			delete state.run;
		});
	}
}
