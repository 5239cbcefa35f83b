import {randomBytes} from 'node:crypto';
import {linkSync, lstatSync, mkdirSync, rmSync, statSync} from 'node:fs';
import path from 'node:path';
import type {Master} from '../config/schema.js';
import {InputError, StepError} from '../errors.js';
import {sha256OfFile} from '../files.js';
import {flagContext} from '../render/artifacts.js';
import {shellQuote, shellWords} from '../remote/quote.js';
import type {SnapshotRecord} from '../state/store.js';
import {etcdctlScript} from './clients.js';
import type {BackupOptions, PlannedAction, StepContext, StepDefinition} from './types.js';

export const snapshotStepId = 'snapshot';

/** Where the snapshot is made on the master: a new folder of its own, 0700 and root's, on disk (a tmpfs /tmp may be small). */
const remoteParent = '/var/tmp';

/** Whether this run takes a snapshot, and why (or why not), in the words the plan and the state use. */
export type Occasion = (context: StepContext) => {take: boolean; why: string};

/** Before an upgrade (or a downgrade): the release the state records differs from the config's. */
export const beforeUpgrade: Occasion = context => {
	const from = context.state.recordedVersion();
	const to = context.config.version;
	return from === undefined
		? {take: false, why: 'first install: etcd holds nothing of this install yet'}
		: from === to
			? {take: false, why: `no release change (${to})`}
			: {take: true, why: `before the upgrade ${from} → ${to}`};
};

/** The snapshot's file on this workstation: backup --out, else one named for the cluster and the UTC time in the state folder. */
export function snapshotTarget(context: StepContext): string {
	if (context.backup.out) {
		return path.resolve(context.backup.out);
	}

	const stamp = new Date().toISOString().replaceAll(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
	return path.join(context.workspace.root, 'snapshots', `${context.config.name}-${stamp}.db`);
}

/** backup --out names a file that must not exist yet: nothing is overwritten. */
export function refuseExistingOut(out: string | undefined): void {
	if (out !== undefined && existsAt(out)) {
		throw new InputError('--out', path.resolve(out), 'already exists', 'choose a file that does not exist yet; backup never replaces one');
	}
}

/** reset --remove-local deletes the state folder: the snapshot reset takes first must go elsewhere (--out), or be declined (--no-backup). */
export function refuseLostSnapshot(removeLocal: boolean | undefined, backup: BackupOptions | undefined, stateFolder: string): void {
	if (removeLocal && !backup?.skip && !backup?.out) {
		throw new InputError('--remove-local', 'set', `would delete the snapshot reset takes first, with ${stateFolder}`, 'pass --out FILE to keep that snapshot outside the state folder (copy the older ones in its snapshots folder out too), or --no-backup');
	}
}

/** A link counts too, even one that names nothing: nothing is written where a name is taken. */
function existsAt(file: string): boolean {
	try {
		lstatSync(file);
		return true;
	} catch {
		return false;
	}
}

/** The master's own member first (no network between them), then the others. */
function endpointsFrom(context: StepContext, master: Master): string[] {
	const {endpoints} = context.config.etcd;
	const own = endpoints.filter(endpoint => new URL(endpoint).hostname === master.ip);
	return [...own, ...endpoints.filter(endpoint => !own.includes(endpoint))];
}

/**
 * On the master, under umask 077 in a new 0700 folder: etcdctl snapshot save from one member (each
 * endpoint in turn until one answers: snapshot save takes exactly one), then what etcd says of the
 * file (snapshot status as JSON: hash, revision, keys, size) and its sha256.
 */
export function saveScript(context: StepContext, master: Master, folder: string): string {
	const files = flagContext(context.config, master.ip);
	const file = `${folder}/etcd.db`;
	// etcd 3.4's snapshot save waits for ever on a member that is down (tried: still waiting after 40 s):
	// asked first whether it answers (bounded by its dial and command timeouts), a dead member is passed over.
	const saves = endpointsFrom(context, master).map(endpoint => `{ ${etcdctlScript(context, master, ['endpoint', 'health', '--dial-timeout=3s', '--command-timeout=5s'], [endpoint])} && ${etcdctlScript(context, master, ['snapshot', 'save', file], [endpoint])}; }`);
	const searchPath = [...new Set([context.config.paths.binDir, '/opt/k8s/bin'])].join(':');
	return [
		'umask 077',
		`for f in ${shellWords([files.etcdCaFile, files.etcdCertFile, files.etcdKeyFile])}; do if [ ! -r "$f" ]; then echo "k8smi: $f is missing" >&2; exit 3; fi; done`,
		// What a killed run left (a snapshot of etcd and every secret in it) goes first.
		`rm -rf -- ${remoteParent}/k8smi-snapshot-*`,
		`mkdir -m 700 -- ${shellQuote(folder)} || exit 1`,
		`if ! { ${saves.join(' || ')}; } > ${shellQuote(`${folder}/save.log`)} 2>&1; then tail -n 5 ${shellQuote(`${folder}/save.log`)} >&2; rm -rf -- ${shellQuote(folder)}; exit 4; fi`,
		// etcd 3.6 moved snapshot status to etcdutl.
		`status=$(${etcdctlScript(context, master, ['snapshot', 'status', file, '-w', 'json'])} 2>/dev/null || PATH="$PATH":${shellQuote(searchPath)} etcdutl snapshot status ${shellQuote(file)} -w json) || exit 5`,
		'echo "status=$status"',
		`echo "sha256=$(sha256sum -- ${shellQuote(file)} | cut -d' ' -f1)"`,
	].join('\n');
}

/** What etcdctl snapshot status -w json says: {"hash":…,"revision":…,"totalKey":…,"totalSize":…}. */
export type SnapshotStatus = {hash: number; revision: number; totalKey: number; totalSize: number};

export function parseSaveOutput(stdout: string): {status: SnapshotStatus; sha256: string} | undefined {
	const field = (name: string) => new RegExp(`^${name}=(.*)$`, 'm').exec(stdout)?.[1]?.trim();
	const sha256 = field('sha256');
	let status: Partial<SnapshotStatus> | undefined;
	try {
		status = JSON.parse(field('status') ?? '') as Partial<SnapshotStatus>;
	} catch {}

	const numbers = status && [status.hash, status.revision, status.totalKey, status.totalSize].every(value => Number.isInteger(value));
	return numbers && sha256 && /^[a-f\d]{64}$/.test(sha256) ? {status: status as SnapshotStatus, sha256} : undefined;
}

function mebibytes(bytes: number): string {
	return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

/**
 * etcd's snapshot taken through one master, copied here and checked: made under umask 077 in a
 * root-only folder there, streamed into a file here that is 0600 from its first byte, its sha256
 * compared with the master's, then removed from the master (also after a failure).
 */
export async function takeSnapshot(context: StepContext, master: Master, why: string): Promise<SnapshotRecord> {
	const step = snapshotStepId;
	const target = snapshotTarget(context);
	refuseExistingOut(context.backup.out);
	const folder = `${remoteParent}/k8smi-snapshot-${randomBytes(6).toString('hex')}`;
	const remoteFile = `${folder}/etcd.db`;
	mkdirSync(path.dirname(target), {recursive: true, mode: 0o700});
	const partial = `${target}.${randomBytes(4).toString('hex')}.partial`;
	const timeoutMs = Math.max(context.config.timeouts.commandSeconds * 1000, 600_000);
	try {
		const script = saveScript(context, master, folder);
		const display = `umask 077; etcdctl snapshot save ${remoteFile} (from one member, ${master.name}'s own first); etcdctl snapshot status -w json; sha256sum`;
		const saved = await context.remote.run(master, script, {step, display, timeoutMs});
		if (saved.exitCode !== 0) {
			const fix = saveFixes(master)[saved.exitCode];
			throw fix ? new StepError({step, host: master.name, message: `exit ${saved.exitCode}: ${lastLine(saved.stderr) || display}`, command: display, output: context.runner.redact(saved.stderr.slice(-2000)), fix}) : context.remote.failure(master, script, {step, display}, saved);
		}

		const facts = parseSaveOutput(saved.stdout);
		if (!facts) {
			throw new StepError({step, host: master.name, message: 'etcdctl snapshot status gave no hash, revision, keys and size', output: context.runner.redact(saved.stdout.slice(-2000)), fix: 'check etcdctl on the master (etcd 3.4 or later), or pass --no-backup to go on without a snapshot'});
		}

		context.throwIfStopping();
		const copying = setInterval(() => {
			context.progress(step, 'cluster', {message: 'copy', bytes: sizeOf(partial), total: facts.status.totalSize});
		}, 500);
		let copied;
		try {
			copied = await context.remote.run(master, `cat -- ${shellQuote(remoteFile)}`, {step, display: `cat ${remoteFile} > ${target} (0600 here)`, timeoutMs, outputFile: partial});
		} finally {
			clearInterval(copying);
		}

		if (copied.exitCode !== 0) {
			throw context.remote.failure(master, `cat -- ${remoteFile}`, {step}, copied);
		}

		const sha256 = await sha256OfFile(partial, {field: 'backup', kind: 'etcd snapshot', fix: `remove ${partial} and run backup again`});
		if (sha256 !== facts.sha256) {
			throw new StepError({step, host: master.name, message: `the copy's sha256 is ${sha256}, the snapshot's on ${master.name} is ${facts.sha256}: the copy was discarded`, fix: 'run it again (a cut or a full disk here may have cut the copy short), or pass --no-backup to go on without a snapshot'});
		}

		const placed = placeSnapshot(partial, target, context.backup.out !== undefined);
		const record: SnapshotRecord = {path: placed, sha256, at: new Date().toISOString(), revision: facts.status.revision, keys: facts.status.totalKey, bytes: sizeOf(partial), master: master.name, occasion: why};
		context.state.recordSnapshot(record);
		return record;
	} finally {
		rmSync(partial, {force: true});
		// Always: even an ssh that failed (exit 255) may have cut the connection after the snapshot was made.
		await removeRemoteFolder(context, master, folder);
	}
}

async function removeRemoteFolder(context: StepContext, master: Master, folder: string): Promise<void> {
	const removed = await context.remote.run(master, `rm -rf -- ${shellQuote(folder)}`, {step: snapshotStepId, display: `rm -rf ${folder}`});
	if (removed.exitCode !== 0) {
		context.warn(`${folder} on ${master.name} could not be removed (${lastLine(removed.stderr) || `exit ${removed.exitCode}`}): remove it by hand, it may hold a snapshot of etcd and every secret in it`);
	}
}

/** What to do when the save script stops on purpose: 3, the client files are missing; 4, no member gave a snapshot. */
function saveFixes(master: Master): Record<number, string> {
	return {
		3: `the apiserver's etcd client files are not on ${master.name} (is the control plane installed there?): install it, or pass --no-backup to go on without a snapshot`,
		4: `no etcd member gave ${master.name} a snapshot (etcd down, or its client certificate refused): check etcd (etcdctl endpoint health), or pass --no-backup to go on without a snapshot`,
	};
}

function lastLine(text: string): string {
	return text.split('\n').map(line => line.trim()).filter(Boolean).at(-1) ?? '';
}

/**
 * The checked copy under its name, by a link, not a rename: it fails rather than replace a file. --out
 * names one file (taken meanwhile: refused); in the state folder a second snapshot within the same
 * second gets the next free number.
 */
function placeSnapshot(partial: string, target: string, named: boolean): string {
	for (let attempt = 1; ; attempt++) {
		const file = attempt === 1 ? target : target.replace(/\.db$/, `-${attempt}.db`);
		try {
			linkSync(partial, file);
			return file;
		} catch (error) {
			if ((error as NodeJS.ErrnoException).code !== 'EEXIST') {
				throw error;
			}

			if (named) {
				throw new InputError('--out', target, 'already exists', 'choose a file that does not exist yet; backup never replaces one');
			}
		}
	}
}

function sizeOf(file: string): number {
	try {
		return statSync(file).size;
	} catch {
		return 0;
	}
}

/**
 * A cluster step that takes an etcd snapshot through the first reachable master when the occasion
 * asks for one; --no-backup leaves it out with a warning. Operations include it before they change
 * anything: backup itself, an upgrade, reset.
 */
export function snapshotStep(occasion: Occasion): StepDefinition {
	return {
		id: snapshotStepId,
		title: 'Take an etcd snapshot',
		needs: [],
		scope: 'cluster',
		plan(context, master): PlannedAction[] {
			const {take, why} = occasion(context);
			if (!take) {
				return [{kind: 'check', description: `no snapshot: ${why}`}];
			}

			if (context.backup.skip) {
				return [{kind: 'check', description: `no snapshot ${why}: --no-backup`}];
			}

			const target = context.backup.out ? path.resolve(context.backup.out) : path.join(context.workspace.root, 'snapshots', `${context.config.name}-<UTC time>.db`);
			return [
				{kind: 'remote', script: saveScript(context, master, `${remoteParent}/k8smi-snapshot-<random>`), display: `${why}: umask 077; etcdctl snapshot save ${remoteParent}/k8smi-snapshot-<random>/etcd.db from one member; etcdctl snapshot status -w json; sha256sum`},
				{kind: 'remote', script: `cat -- ${remoteParent}/k8smi-snapshot-<random>/etcd.db`, display: `cat the snapshot into ${target} (0600 here), its sha256 checked`},
				{kind: 'remote', script: `rm -rf -- ${remoteParent}/k8smi-snapshot-<random>`, display: `rm -rf ${remoteParent}/k8smi-snapshot-<random> (also after a failure)`},
			];
		},
		async verify(context) {
			const {take, why} = occasion(context);
			if (!take) {
				return {done: true, detail: `no snapshot: ${why}`};
			}

			if (context.backup.skip) {
				context.warn(`no etcd snapshot taken ${why} (--no-backup): if this run goes wrong, only a snapshot taken earlier can bring etcd back`);
				return {done: true, detail: 'no snapshot: --no-backup'};
			}

			return {done: false};
		},
		async run(context, master) {
			const {why} = occasion(context);
			const record = await takeSnapshot(context, master, why);
			return `snapshot ${why}: ${record.path} (${mebibytes(record.bytes)}, revision ${record.revision}, ${record.keys} keys, sha256 ${record.sha256.slice(0, 16)}…)`;
		},
	};
}

/** backup: always, on request. */
export const snapshot = snapshotStep(() => ({take: true, why: 'on request'}));

/** Before reset stops the control plane. */
export const snapshotBeforeReset = snapshotStep(() => ({take: true, why: 'before reset'}));
