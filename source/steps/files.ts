import {randomBytes} from 'node:crypto';
import {createTwoFilesPatch} from './diff.js';
import type {Master} from '../config/schema.js';
import {StepError} from '../errors.js';
import {shellQuote} from '../remote/quote.js';
import type {PlannedAction, StepContext, StepDefinition, StepId, Verification} from './types.js';

export type Upload = Extract<PlannedAction, {kind: 'upload'}>;

/**
 * `stat` is device:inode:size:mtime:ctime (ns); any write, rename or chmod changes at least one of them.
 * `link`: the target a symbolic link names (its sha256 is its target's, when that is a regular file).
 * A folder has its mode and owner alone.
 */
export type RemoteFileFacts = {sha256?: string; mode?: number; owner?: string; stat?: string; link?: string};

export const statFormat = '%d:%i:%s:%.9Y:%.9Z';
const preciseIdentity = /^\d+:\d+:\d+:\d+\.(?!0{9})\d{9}:\d+\.\d{9}$/;

/** Identities recorded with their hashes, trusted only with nanosecond times: with whole seconds (another stat, an old file system) a change of the same size within the second of our write would look unchanged. */
export function knownIdentities(context: StepContext, master: Master, step: StepId): Record<string, {stat: string; sha256: string}> {
	return Object.fromEntries(Object.entries(context.state.host(step, master.name)?.stats ?? {}).filter(([, seen]) => preciseIdentity.test(seen.stat)));
}

/**
 * One stat for every path (absent ones print nothing), then one sha256sum for the regular files whose
 * identity is not the recorded one: a couple of processes whatever the number of files. %f is the raw
 * mode in hex: 8xxx is a regular file, axxx a link, 4xxx a folder (its mode and owner printed, nothing
 * hashed). The loop reads a here-document, so it runs in this shell.
 */
export function fileFactsScript(paths: string[], known: Record<string, {stat: string}>): string {
	const unchanged = paths.filter(file => known[file]).map(file => shellQuote(`${known[file]!.stat} ${file}`));
	return [
		`k8smi_stats=$(stat -c '%f %a:%U ${statFormat} %n' -- ${paths.map(file => shellQuote(file)).join(' ')} 2>/dev/null)`,
		'while IFS=\' \' read -r kind access identity path; do',
		// A link to a regular file counts as present, as `[ -f ]` says: its target is hashed (it may not be ours).
		// What a link names is printed too: the binaries' links are told apart by it.
		'case $kind in 8???) ;; a???) printf \'L %s\\t%s\\n\' "$path" "$(readlink -- "$path")"; [ -f "$path" ] || continue ;; 4???) printf \'D %s %s\\n\' "$access" "$path"; continue ;; *) continue ;; esac',
		'printf \'F %s %s %s\\n\' "$access" "$identity" "$path"',
		unchanged.length > 0 ? `case "$identity $path" in ${unchanged.join('|')}) ;; *) set -- "$@" "$path" ;; esac` : 'set -- "$@" "$path"',
		'done <<k8smi_end',
		'$k8smi_stats',
		'k8smi_end',
		'[ "$#" -eq 0 ] || sha256sum -- "$@"',
	].join('\n');
}

/**
 * One round trip that reads mode, owner and identity of every path (absent files are simply
 * missing) and hashes each file whose identity differs from the one recorded with its hash, the
 * way git and rsync skip unchanged files: a master's binaries are then not read again on every run.
 */
async function readFacts(context: StepContext, master: Master, step: StepId, requests: Array<{step: StepId; paths: string[]}>): Promise<Map<string, RemoteFileFacts>> {
	const known = Object.assign({}, ...requests.map(request => knownIdentities(context, master, request.step))) as Record<string, {stat: string; sha256: string}>;
	const paths = requests.flatMap(request => request.paths);
	const script = fileFactsScript(paths, known);
	const result = await context.remote.check(master, script, {step, display: `read sha256, mode and owner of ${paths.length} file(s)${requests.length > 1 ? ` (${requests.map(request => request.step).join(', ')})` : ''}`});
	return parseFileFacts(result.stdout, known);
}

/** What fileFactsScript printed, per path; a file whose identity is the known one keeps its known hash. */
export function parseFileFacts(output: string, known: Record<string, {stat: string; sha256: string}>): Map<string, RemoteFileFacts> {
	const facts = new Map<string, RemoteFileFacts>();
	for (const line of output.split('\n')) {
		const stat = /^F (\d+):(\S+) (\S+) (.+)$/.exec(line);
		if (stat) {
			const file = stat[4]!;
			const unchanged = known[file]?.stat === stat[3];
			facts.set(file, {...facts.get(file), mode: Number.parseInt(stat[1]!, 8), owner: stat[2]!, stat: stat[3]!, ...(unchanged ? {sha256: known[file]!.sha256} : {})});
			continue;
		}

		const folder = /^D (\d+):(\S+) (.+)$/.exec(line);
		if (folder) {
			facts.set(folder[3]!, {mode: Number.parseInt(folder[1]!, 8), owner: folder[2]!});
			continue;
		}

		const link = /^L ([^\t]+)\t(.*)$/.exec(line);
		if (link) {
			facts.set(link[1]!, {...facts.get(link[1]!), link: link[2]!});
			continue;
		}

		const hash = /^([a-f\d]{64}) {2}(.+)$/.exec(line);
		if (hash) {
			facts.set(hash[2]!, {...facts.get(hash[2]!), sha256: hash[1]!});
		}
	}

	return facts;
}

/**
 * The facts of a step's files: those read for every step at the start of the run when still recent, else read now.
 * `knownTo`: the steps whose recorded identities spare hashes (other steps' files: the start step removing old binaries).
 */
export async function readRemoteFiles(context: StepContext, master: Master, step: StepId, paths: string[], knownTo: readonly StepId[] = [step]): Promise<Map<string, RemoteFileFacts>> {
	const [first = step, ...others] = knownTo;
	return (await context.readAhead.take(master.name, step, paths, context.changedFiles.get(master.name))) ?? readFacts(context, master, step, [{step: first, paths}, ...others.map(each => ({step: each, paths: []}))]);
}

/** asked: per step, the paths it may still take (two steps may read one path: the binaries' release folder). */
type ReadAhead = {at: number; asked: Map<StepId, Set<string>>; facts: Map<string, RemoteFileFacts>};

/**
 * The files of every files step, read in one round trip per master at the start of apply (beside
 * preflight) instead of one round trip per step. Each step takes its own facts once, unless one of
 * its files was written in this run or the facts are older than a few seconds: a hand edit on a
 * master during a long run (an upload over a slow link, a question to the operator) is read again.
 */
export class FilesReadAhead {
	private static readonly recentMs = 10_000;
	private readonly byHost = new Map<string, Promise<ReadAhead | undefined>>();

	/**
	 * Sent once the master's connection is up (a second handshake beside the first would cost more
	 * than it saves). Never fails: a master that cannot be read now is read by each step, which says why.
	 */
	async read(context: StepContext, master: Master, requests: () => Array<{step: StepId; paths: string[]}>): Promise<void> {
		const reading = (async () => {
			const asked = requests();
			// A master the first command did not get through to is left to the steps, which say why.
			if (asked.length === 0 || !await context.remote.connected(master)) {
				return undefined;
			}

			// The age counts from before the read: a change made while it ran is not older than the reading.
			const at = Date.now();
			const facts = await readFacts(context, master, 'preflight', asked);
			return {at, asked: new Map(asked.map(request => [request.step, new Set(request.paths)])), facts};
		})().catch(() => undefined);
		this.byHost.set(master.name, reading);
		await reading;
	}

	/** Files changed since they were read (a master leaving rewrote kube-nginx's config): the step that needs them reads them again. */
	forget(host: string, paths: string[]): void {
		void this.byHost.get(host)?.then(read => {
			for (const asked of read?.asked.values() ?? []) {
				for (const file of paths) {
					asked.delete(file);
				}
			}
		});
	}

	async take(host: string, step: StepId, paths: string[], written: Set<string> | undefined): Promise<Map<string, RemoteFileFacts> | undefined> {
		const read = await this.byHost.get(host);
		const asked = read?.asked.get(step);
		if (!read || !asked || Date.now() - read.at > FilesReadAhead.recentMs || paths.some(file => !asked.has(file) || written?.has(file))) {
			return undefined;
		}

		for (const file of paths) {
			asked.delete(file);
		}

		return new Map(paths.flatMap(file => (read.facts.has(file) ? [[file, read.facts.get(file)!] as const] : [])));
	}
}

function matches(upload: Upload, facts: RemoteFileFacts | undefined): boolean {
	return facts?.sha256 === upload.sha256 && facts.mode === upload.mode && facts.owner === 'root';
}

export const uploadsOf = (actions: PlannedAction[]) => actions.filter((action): action is Upload => action.kind === 'upload');

/** What crosses the wire for an upload: a compressed binary is sent as it is and unpacked by the master. */
export const sentBytes = (upload: Upload) => ('gzipFile' in upload.source ? upload.source.gzipBytes : upload.bytes);

const directoryOf = (upload: Upload) => shellQuote(upload.path.slice(0, upload.path.lastIndexOf('/')) || '/');

/** Below this a batch fits the pipe sshd writes it into as it is: asking for a larger one costs more than it saves. */
const widenFromBytes = 1024 * 1024;

/**
 * Asks for a 1 MiB pipe between sshd and the script (the most an unprivileged process may have,
 * fs.pipe-max-size) with perl (Debian's perl-base) or python3, where either is. sshd queues what the
 * 64 KiB pipe cannot take yet, and grows that queue by copying it into a new allocation each time: on
 * the lab's masters that made sshd spend 8 ms of CPU per MB received, 3 ms with the larger pipe (and
 * the whole machine 13 ms against 6). Where neither is, or stdin is no pipe, nothing changes but the speed.
 */
export const widenStdinPipe = '{ perl -e \'fcntl(STDIN, 1031, 1048576)\' || python3 -c \'import fcntl; fcntl.fcntl(0, 1031, 1048576)\'; } >/dev/null 2>&1 || true';

/**
 * Writes a batch of files from stdin in one script: `cat` for a single file, `head -c N` for each of
 * several sent one after the other (it reads no further than N bytes from a pipe), through `gzip -dc`
 * for a compressed binary. A few processes per batch, not six per file: on a busy master each one costs milliseconds.
 */
export function uploadScript(uploads: Upload[], token = randomBytes(4).toString('hex')): string {
	// Names of this upload alone: a session of a killed or cut-off run may still hold (and, when it
	// ends, remove) its own temporary files on the master; it must never share them with this one.
	const temporary = (upload: Upload) => shellQuote(`${upload.path}.k8smi-new-${token}`);
	// What such sessions left behind: removed (a writer still running keeps its unlinked copy).
	const leftovers = uploads.map(upload => `${shellQuote(upload.path)}.k8smi-new-*`).join(' ');
	const temporaries = uploads.map(temporary).join(' ');
	const directories = [...new Set(uploads.map(directoryOf))].join(' ');
	const discard = `rm -f ${temporaries}`;
	const trap = `trap ${shellQuote(discard)} EXIT`;
	const read = (upload: Upload) => {
		const take = uploads.length === 1 ? 'cat' : `head -c ${sentBytes(upload)}`;
		return 'gzipFile' in upload.source ? `${uploads.length === 1 ? '' : `${take} | `}gzip -dc` : take;
	};

	const reads = uploads.map(upload => `if ! ${read(upload)} > ${temporary(upload)}; then exit 4; fi`);
	const expected = uploads.map(upload => upload.sha256).join(' ');
	const modes = [...new Set(uploads.map(upload => upload.mode))];
	const chmods = modes.map(mode => `chmod ${mode.toString(8)} ${uploads.filter(upload => upload.mode === mode).map(temporary).join(' ')}`);
	const moves = uploads.map(upload => `mv -f ${temporary(upload)} ${shellQuote(upload.path)}`);
	// umask first: a secret is never readable by others, not even while it is being written.
	// If ssh dies mid-stream, the reader sees a normal end of input: only a batch whose every file has
	// its expected sha256 replaces anything. Whatever fails (disk full, a chmod) leaves no temporary file.
	// The identity of each new file is printed for the state, so the next run need not hash it.
	const sent = uploads.reduce((sum, upload) => sum + sentBytes(upload), 0);
	return [
		`set -e; umask 077; ${trap}; mkdir -p ${directories}; rm -f -- ${leftovers}`,
		...sent >= widenFromBytes ? [widenStdinPipe] : [],
		...reads,
		checkSumsScript(temporaries, expected, 'incomplete upload discarded'),
		`chown root:root ${temporaries}`,
		...chmods,
		...moves,
		'trap - EXIT',
		`stat -c 'S ${statFormat} %n' -- ${uploads.map(upload => shellQuote(upload.path)).join(' ')}`,
	].join('; ');
}

/**
 * Fails (exit 3, saying `problem`) unless the files (shell words) hold these sha256s, in order.
 * openssl's sha256 uses the CPU's SHA instructions (about twice coreutils' speed here); sha256sum where it is missing.
 */
export function checkSumsScript(files: string, expected: string, problem: string): string {
	return [
		`if command -v openssl >/dev/null 2>&1; then k8smi_sums=$(openssl dgst -sha256 -r ${files}); else k8smi_sums=$(sha256sum ${files}); fi`,
		`if [ "$(printf '%s\\n' "$k8smi_sums" | cut -d' ' -f1 | tr '\\n' ' ')" != ${shellQuote(`${expected} `)} ]; then echo ${shellQuote(problem)} >&2; exit 3; fi`,
	].join('; ');
}

export async function confirmOverwrite(context: StepContext, master: Master, step: StepId, upload: Upload): Promise<void> {
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
	// -P: a link is backed up as the link it is (its target may be anywhere, or nowhere).
	await context.remote.check(master, `cp -P -p -- ${shellQuote(upload.path)} ${backup}`, {step, display: `back up ${upload.path}`});
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
	const total = uploads.reduce((sum, upload) => sum + sentBytes(upload), 0);
	let inPlaceBytes = 0;
	const pending: Upload[] = [];
	for (const upload of uploads) {
		context.throwIfStopping();
		const current = facts.get(upload.path);
		if (matches(upload, current)) {
			context.state.recordFile(step, master.name, upload.path, upload.sha256, current?.stat);
			shipped(context, step);
			inPlaceBytes += sentBytes(upload);
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
		sent += batch.reduce((sum, upload) => sum + sentBytes(upload), 0);
	}

	context.progress(step, master.name, {bytes: total, total});
	return `${written} written, ${uploads.length - pending.length} already in place`;
}

/**
 * Files up to this size share a round trip, up to this much together; a larger file goes with at
 * most that much of the small ones beside it, so a stop waits for one large file at most.
 */
const batchBytes = 8 * 1024 * 1024;

export function batches(uploads: Upload[]): Upload[][] {
	const large = uploads.filter(upload => sentBytes(upload) > batchBytes);
	const small: Upload[][] = [];
	let bytes = Number.POSITIVE_INFINITY;
	for (const upload of uploads.filter(upload => sentBytes(upload) <= batchBytes)) {
		if (bytes + sentBytes(upload) > batchBytes) {
			small.push([]);
			bytes = 0;
		}

		small.at(-1)!.push(upload);
		bytes += sentBytes(upload);
	}

	return Array.from({length: Math.max(large.length, small.length)}, (_, index) => [...small[index] ?? [], ...(large[index] ? [large[index]] : [])]);
}

/**
 * One round trip: the batch's files streamed one after the other, checked, and renamed into place
 * by the master; records the files it reports in place (a rename that failed midway leaves the rest
 * unrecorded: the next run finds them by their hash).
 */
async function writeBatch(context: StepContext, master: Master, step: StepId, batch: Upload[], progress: {sent: number; total: number}): Promise<number> {
	const bytes = batch.reduce((sum, upload) => sum + sentBytes(upload), 0);
	// The file being sent, for the view: the one whose bytes the stream is in.
	const sending = (offset: number) => {
		let end = 0;
		return batch.find(upload => (end += sentBytes(upload)) > offset)?.path;
	};

	const options = {
		step,
		// Large binaries over a slow link: the limit grows with the size (at least 256 KiB/s).
		timeoutMs: (context.config.timeouts.commandSeconds * 1000) + Math.ceil(bytes / 256),
		display: batch.length === 1
			? `write ${batch[0]!.path} (${batch[0]!.bytes} bytes${'gzipFile' in batch[0]!.source ? `, ${sentBytes(batch[0]!)} sent gzip-compressed` : ''}, mode ${batch[0]!.mode.toString(8)})`
			: `write ${batch.length} files: ${batch.map(upload => `${upload.path} (${upload.mode.toString(8)})`).join(', ')}`,
		inputParts: batch.map(upload => ('gzipFile' in upload.source ? {file: upload.source.gzipFile} : 'file' in upload.source ? {file: upload.source.file} : {bytes: Buffer.from(upload.source.content)})),
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
export function filesStep(definition: Pick<StepDefinition, 'id' | 'title' | 'needs' | 'afterWhenLive' | 'plan'>): StepDefinition {
	return {
		...definition,
		scope: 'each-master',
		reads: (context, master) => uploadsOf(definition.plan(context, master)).map(upload => upload.path),
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
