import {createTwoFilesPatch} from './diff.js';
import type {Master} from '../config/schema.js';
import {StepError} from '../errors.js';
import {shellQuote} from '../remote/quote.js';
import type {StepId} from '../state/store.js';
import type {PlannedAction, StepContext, StepDefinition, Verification} from './types.js';

export type Upload = Extract<PlannedAction, {kind: 'upload'}>;

/** `stat` is device:inode:size:mtime:ctime (ns); any write, rename or chmod changes at least one of them. */
export type RemoteFileFacts = {sha256?: string; mode?: number; owner?: string; stat?: string};

const statFormat = '%d:%i:%s:%.9Y:%.9Z';
const preciseIdentity = /^\d+:\d+:\d+:\d+\.(?!0{9})\d{9}:\d+\.\d{9}$/;

/**
 * One round trip that reads mode, owner and identity of every path (absent files are simply
 * missing) and hashes each file whose identity differs from the one recorded with its hash, the
 * way git and rsync skip unchanged files: a master's binaries are then not read again on every run.
 */
export async function readRemoteFiles(context: StepContext, master: Master, step: StepId, paths: string[]): Promise<Map<string, RemoteFileFacts>> {
	// Trusted only with nanosecond times: with whole seconds (another stat, an old file system) a change
	// of the same size within the second of our write would look unchanged.
	const known = Object.fromEntries(Object.entries(context.state.host(step, master.name)?.stats ?? {}).filter(([, seen]) => preciseIdentity.test(seen.stat)));
	const calls = paths.map(file => `k8smi_file ${shellQuote(file)} ${shellQuote(known[file]?.stat ?? '-')}`).join('; ');
	const script = `k8smi_file() { if [ -f "$1" ]; then s=$(stat -c '%a:%U ${statFormat}' -- "$1") || return 0; printf 'F %s %s\n' "$s" "$1"; [ "\${s#* }" = "$2" ] || sha256sum -- "$1"; fi; }; ${calls}`;
	const result = await context.remote.check(master, script, {step, display: `read sha256, mode and owner of ${paths.length} file(s)`});
	const facts = new Map<string, RemoteFileFacts>();
	for (const line of result.stdout.split('\n')) {
		const stat = /^F (\d+):(\S+) (\S+) (.+)$/.exec(line);
		if (stat) {
			const file = stat[4]!;
			const unchanged = known[file]?.stat === stat[3];
			facts.set(file, {...facts.get(file), mode: Number.parseInt(stat[1]!, 8), owner: stat[2]!, stat: stat[3]!, ...(unchanged ? {sha256: known[file]!.sha256} : {})});
			continue;
		}

		const hash = /^([a-f\d]{64}) {2}(.+)$/.exec(line);
		if (hash) {
			facts.set(hash[2]!, {...facts.get(hash[2]!), sha256: hash[1]!});
		}
	}

	return facts;
}

function matches(upload: Upload, facts: RemoteFileFacts | undefined): boolean {
	return facts?.sha256 === upload.sha256 && facts.mode === upload.mode && facts.owner === 'root';
}

export const uploadsOf = (actions: PlannedAction[]) => actions.filter((action): action is Upload => action.kind === 'upload');

/**
 * Writes one file from stdin: `cat` for a single file, `head -c N` for one of several sent one after
 * the other on the same stdin (it reads no further than N bytes from a pipe).
 */
function writeScript(upload: Upload, read: string): string {
	const target = shellQuote(upload.path);
	const temporary = shellQuote(`${upload.path}.k8smi-new`);
	// umask first: a secret is never readable by others, not even while it is being written.
	// If ssh dies mid-stream, the reader sees a normal end of input: only content with the expected
	// sha256 may replace the file. A write that fails (disk full) leaves no partial file behind.
	// The identity of the new file is printed for the state, so the next run need not hash it.
	return `if ! ${read} > ${temporary}; then rm -f ${temporary}; exit 4; fi; if ! printf '%s  %s\\n' ${upload.sha256} ${temporary} | sha256sum -c --status; then rm -f ${temporary}; echo 'incomplete upload discarded' >&2; exit 3; fi; chown root:root ${temporary}; chmod ${upload.mode.toString(8)} ${temporary}; mv -f ${temporary} ${target}; printf 'S %s %s\\n' "$(stat -c '${statFormat}' -- ${target})" ${target}`;
}

const directoryOf = (upload: Upload) => shellQuote(upload.path.slice(0, upload.path.lastIndexOf('/')) || '/');

function uploadScript(uploads: Upload[]): string {
	const directories = [...new Set(uploads.map(directoryOf))].join(' ');
	const writes = uploads.length === 1 ? [writeScript(uploads[0]!, 'cat')] : uploads.map(upload => writeScript(upload, `head -c ${upload.bytes}`));
	return `set -e; umask 077; mkdir -p ${directories}; ${writes.join('; ')}`;
}

async function confirmOverwrite(context: StepContext, master: Master, step: StepId, upload: Upload): Promise<void> {
	let diff: string | undefined;
	if (!upload.secret && 'content' in upload.source && upload.bytes < 256 * 1024) {
		const current = await context.remote.check(master, `cat -- ${shellQuote(upload.path)}`, {step, display: `read ${upload.path}`});
		diff = createTwoFilesPatch(`${master.name}:${upload.path}`, 'rendered', current.stdout, upload.source.content);
	}

	const overwrite = await context.prompter.ask({
		kind: 'overwrite',
		host: master.name,
		path: upload.path,
		message: `${upload.path} on ${master.name} differs from what this install wrote there.`,
		diff,
	});
	if (!overwrite) {
		throw new StepError({step, host: master.name, message: `${upload.path} was changed on the host; left as it is`, fix: 'compare it with the rendered file (k8s-master-install render) and run apply again, answering overwrite, or pass --overwrite'});
	}

	const backup = shellQuote(`${upload.path}.k8smi-backup-${new Date().toISOString().replaceAll(/[:.]/g, '')}`);
	await context.remote.check(master, `cp -p -- ${shellQuote(upload.path)} ${backup}`, {step, display: `back up ${upload.path}`});
}

export async function verifyUploads(context: StepContext, master: Master, step: StepId, actions: PlannedAction[]): Promise<Verification> {
	const uploads = uploadsOf(actions);
	const facts = await readRemoteFiles(context, master, step, uploads.map(upload => upload.path));
	const missing = uploads.filter(upload => !matches(upload, facts.get(upload.path)));
	if (missing.length > 0) {
		return {done: false, detail: `${missing.length} of ${uploads.length} file(s) to write`, observed: facts};
	}

	context.state.recordStats(step, master.name, uploads.map(upload => ({path: upload.path, stat: facts.get(upload.path)?.stat, sha256: upload.sha256})));
	shipped(context, step);
	return {done: true, detail: `${uploads.length} file(s) in place`};
}

/** Writes every upload that is not already in place, recording each one as soon as it lands; `read`: what verify just read. */
export async function runUploads(context: StepContext, master: Master, step: StepId, actions: PlannedAction[], read?: Map<string, RemoteFileFacts>): Promise<string> {
	const uploads = uploadsOf(actions);
	const facts = read ?? await readRemoteFiles(context, master, step, uploads.map(upload => upload.path));
	const total = uploads.reduce((sum, upload) => sum + upload.bytes, 0);
	let inPlaceBytes = 0;
	const pending: Upload[] = [];
	for (const upload of uploads) {
		context.throwIfStopping();
		const current = facts.get(upload.path);
		if (matches(upload, current)) {
			context.state.recordFile(step, master.name, upload.path, upload.sha256, current?.stat);
			shipped(context, step);
			inPlaceBytes += upload.bytes;
			continue;
		}

		const ours = current?.sha256 === undefined || current.sha256 === upload.sha256 || context.state.writtenHashes(master.name, upload.path).has(current.sha256);
		if (!ours) {
			await confirmOverwrite(context, master, step, upload);
		}

		pending.push(upload);
	}

	context.progress(step, master.name, {bytes: inPlaceBytes, total});
	let sent = inPlaceBytes;
	let written = 0;
	for (const batch of batches(pending)) {
		context.throwIfStopping();
		written += await writeBatch(context, master, step, batch, {sent, total});
		sent += batch.reduce((sum, upload) => sum + upload.bytes, 0);
	}

	context.progress(step, master.name, {bytes: total, total});
	return `${written} written, ${uploads.length - pending.length} already in place`;
}

/** Files up to this size share a round trip; a larger one goes alone, so a stop waits for one file at most. */
const batchBytes = 8 * 1024 * 1024;

function batches(uploads: Upload[]): Upload[][] {
	const result: Upload[][] = [];
	let bytes = Number.POSITIVE_INFINITY;
	for (const upload of uploads) {
		if (bytes + upload.bytes > batchBytes) {
			result.push([]);
			bytes = 0;
		}

		result.at(-1)!.push(upload);
		bytes += upload.bytes;
	}

	return result;
}

/**
 * One round trip: the batch's files streamed one after the other, each checked and renamed into
 * place by the master; records every file that landed, also when a later one failed.
 */
async function writeBatch(context: StepContext, master: Master, step: StepId, batch: Upload[], progress: {sent: number; total: number}): Promise<number> {
	const bytes = batch.reduce((sum, upload) => sum + upload.bytes, 0);
	// The file being sent, for the view: the one whose bytes the stream is in.
	const sending = (offset: number) => {
		let end = 0;
		return batch.find(upload => (end += upload.bytes) > offset)?.path;
	};

	const options = {
		step,
		// Large binaries over a slow link: the limit grows with the size (at least 256 KiB/s).
		timeoutMs: (context.config.timeouts.commandSeconds * 1000) + Math.ceil(bytes / 256),
		display: batch.length === 1
			? `write ${batch[0]!.path} (${batch[0]!.bytes} bytes, mode ${batch[0]!.mode.toString(8)})`
			: `write ${batch.length} files: ${batch.map(upload => `${upload.path} (${upload.mode.toString(8)})`).join(', ')}`,
		inputParts: batch.map(upload => ('file' in upload.source ? {file: upload.source.file} : {bytes: Buffer.from(upload.source.content)})),
		onInputProgress: (sentBytes: number) => context.progress(step, master.name, {bytes: progress.sent + sentBytes, total: progress.total, message: sending(sentBytes)}),
	};
	const script = uploadScript(batch);
	const result = await context.remote.run(master, script, options);
	const landed = new Map([...result.stdout.matchAll(/^S (\S+) (.+)$/gm)].map(match => [match[2]!, match[1]!] as const));
	const changed = context.changedFiles.get(master.name) ?? new Set<string>();
	context.changedFiles.set(master.name, changed);
	for (const upload of batch.filter(upload => landed.has(upload.path))) {
		context.state.recordFile(step, master.name, upload.path, upload.sha256, landed.get(upload.path));
		shipped(context, step);
		changed.add(upload.path);
	}

	if (result.exitCode !== 0) {
		throw context.remote.failure(master, script, options, result);
	}

	return landed.size;
}

function shipped(context: StepContext, step: StepId): void {
	if (step === 'certs' || step === 'encryption') {
		context.materialShipped();
	}
}

/** A step that only places files: binaries, certs, encryption, audit, units. */
export function filesStep(definition: Pick<StepDefinition, 'id' | 'title' | 'needs' | 'plan'>): StepDefinition {
	return {
		...definition,
		scope: 'each-master',
		verify: async (context, master) => verifyUploads(context, master, definition.id, definition.plan(context, master)),
		async run(context, master, _inputs, verification) {
			const actions = definition.plan(context, master);
			for (const action of actions.filter(action => action.kind === 'remote')) {
				await context.remote.check(master, action.script, {step: definition.id, display: action.display});
			}

			return runUploads(context, master, definition.id, actions, verification?.observed as Map<string, RemoteFileFacts> | undefined);
		},
	};
}
