import {createTwoFilesPatch} from './diff.js';
import type {Master} from '../config/schema.js';
import {StepError} from '../errors.js';
import {shellQuote, shellWords} from '../remote/quote.js';
import type {StepId} from '../state/store.js';
import type {PlannedAction, StepContext, StepDefinition, Verification} from './types.js';

export type Upload = Extract<PlannedAction, {kind: 'upload'}>;

export type RemoteFileFacts = {sha256?: string; mode?: number; owner?: string};

/** One round trip that reads hash, mode and owner of every path (absent files are simply missing). */
export async function readRemoteFiles(context: StepContext, master: Master, step: StepId, paths: string[]): Promise<Map<string, RemoteFileFacts>> {
	const quoted = shellWords(paths);
	const script = `for f in ${quoted}; do if [ -f "$f" ]; then printf 'F %s %s\\n' "$(stat -c '%a:%U' -- "$f")" "$f"; sha256sum -- "$f"; fi; done`;
	const result = await context.remote.check(master, script, {step, display: `read sha256, mode and owner of ${paths.length} file(s)`});
	const facts = new Map<string, RemoteFileFacts>();
	for (const line of result.stdout.split('\n')) {
		const stat = /^F (\d+):(\S+) (.+)$/.exec(line);
		if (stat) {
			facts.set(stat[3]!, {...facts.get(stat[3]!), mode: Number.parseInt(stat[1]!, 8), owner: stat[2]!});
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
	return `if ! ${read} > ${temporary}; then rm -f ${temporary}; exit 4; fi; if ! printf '%s  %s\\n' ${upload.sha256} ${temporary} | sha256sum -c --status; then rm -f ${temporary}; echo 'incomplete upload discarded' >&2; exit 3; fi; chown root:root ${temporary}; chmod ${upload.mode.toString(8)} ${temporary}; mv -f ${temporary} ${target}`;
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
		return {done: false, detail: `${missing.length} of ${uploads.length} file(s) to write`};
	}

	shipped(context, step);
	return {done: true, detail: `${uploads.length} file(s) in place`};
}

/** Writes every upload that is not already in place, recording each one as soon as it lands. */
export async function runUploads(context: StepContext, master: Master, step: StepId, actions: PlannedAction[]): Promise<string> {
	const uploads = uploadsOf(actions);
	const facts = await readRemoteFiles(context, master, step, uploads.map(upload => upload.path));
	const total = uploads.reduce((sum, upload) => sum + upload.bytes, 0);
	let sent = 0;
	let written = 0;
	const landed = (upload: Upload) => {
		context.state.recordFile(step, master.name, upload.path, upload.sha256);
		shipped(context, step);
		if (!context.changedFiles.has(master.name)) {
			context.changedFiles.set(master.name, new Set());
		}

		context.changedFiles.get(master.name)!.add(upload.path);
		written++;
	};

	const write = async (batch: Upload[], source: {inputFile: string} | {input: Buffer}, display: string) => {
		const before = sent;
		const bytes = batch.reduce((sum, upload) => sum + upload.bytes, 0);
		await context.remote.check(master, uploadScript(batch), {
			step,
			// Large binaries over a slow link: the limit grows with the size (at least 256 KiB/s).
			timeoutMs: (context.config.timeouts.commandSeconds * 1000) + Math.ceil(bytes / 256),
			display,
			...source,
			onInputProgress: sentBytes => context.progress(step, master.name, {bytes: before + sentBytes, total, message: batch.length === 1 ? batch[0]!.path : undefined}),
		});
		sent += bytes;
		context.progress(step, master.name, {bytes: sent, total});
	};

	// Generated files (certificates, configs, units) go in one round trip; binaries one by one, streamed.
	const generated: Upload[] = [];
	for (const upload of uploads) {
		context.throwIfStopping();
		const current = facts.get(upload.path);
		if (matches(upload, current)) {
			context.state.recordFile(step, master.name, upload.path, upload.sha256);
			shipped(context, step);
			sent += upload.bytes;
			context.progress(step, master.name, {bytes: sent, total});
			continue;
		}

		const ours = current?.sha256 === undefined || current.sha256 === upload.sha256 || context.state.writtenHashes(master.name, upload.path).has(current.sha256);
		if (!ours) {
			await confirmOverwrite(context, master, step, upload);
		}

		if ('file' in upload.source) {
			await write([upload], {inputFile: upload.source.file}, `write ${upload.path} (${upload.bytes} bytes, mode ${upload.mode.toString(8)})`);
			landed(upload);
		} else {
			generated.push(upload);
		}
	}

	if (generated.length > 0) {
		context.throwIfStopping();
		const input = Buffer.concat(generated.map(upload => Buffer.from('content' in upload.source ? upload.source.content : '')));
		await write(generated, {input}, generated.length === 1
			? `write ${generated[0]!.path} (${generated[0]!.bytes} bytes, mode ${generated[0]!.mode.toString(8)})`
			: `write ${generated.length} files: ${generated.map(upload => `${upload.path} (${upload.mode.toString(8)})`).join(', ')}`);
		for (const upload of generated) {
			landed(upload);
		}
	}

	return `${written} written, ${uploads.length - written} already in place`;
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
		async run(context, master) {
			const actions = definition.plan(context, master);
			for (const action of actions.filter(action => action.kind === 'remote')) {
				await context.remote.check(master, action.script, {step: definition.id, display: action.display});
			}

			return runUploads(context, master, definition.id, actions);
		},
	};
}
