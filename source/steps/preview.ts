import {existsSync, readdirSync, readFileSync} from 'node:fs';
import path from 'node:path';
import type {ResolvedConfig} from '../config/load.js';
import type {Master} from '../config/schema.js';
import type {Operation} from '../operations/types.js';
import {readCertificate} from '../pki/certs.js';
import {releaseBinDir} from '../render/artifacts.js';
import {shellQuote} from '../remote/quote.js';
import {sectionsScript, splitSections} from '../remote/sections.js';
import type {RestartTime} from '../state/store.js';
import {createTwoFilesPatch, orderDiff} from './diff.js';
import {fileFactsScript, knownIdentities, parseFileFacts, uploadsOf, type RemoteFileFacts, type Upload} from './files.js';
import {binaryNames} from './binaries.js';
import {services, type ServiceName} from './readiness.js';
import {binariesStepOf, binariesSteps, ownLink} from './releases.js';
import {restartPolicy, serviceFingerprint, serviceInputs, type UnitStatus} from './restart-policy.js';
import {parseUnitStatus, unitStatusRead} from './services.js';
import type {StepContext, StepId} from './types.js';
import type {ReleaseChange} from '../upgrade/skew.js';

/** What a certificate says, never its key: enough to tell what a re-issue changes. */
export type CertificateSummary = {subject: string; issuer: string; sans: string[]; notAfter: string};

/**
 * One file whose copy on a master is not what apply would write. text: a unified diff; certificate:
 * what it says before and after; binary: the release it replaces and its size; secret: hashes only.
 */
export type FileChange = {
	step: StepId;
	path: string;
	label: string;
	kind: 'text' | 'certificate' | 'binary' | 'secret';
	/** new: not on the master; content: differs; mode: same content, another mode or owner. */
	change: 'new' | 'content' | 'mode';
	/** The master's copy is none this install wrote: changed there by hand (drift). */
	byHand: boolean;
	sha256: {before?: string; after: string};
	mode: {before?: string; after: string};
	diff?: string;
	certificate?: {before?: CertificateSummary; after: CertificateSummary};
	binary?: {before?: {release?: string; bytes?: number}; after: {release: string; bytes?: number}};
	/** binDir/NAME: what the link names now (none: not a link) and what apply points it at. */
	link?: {before?: string; after: string};
};

/** A service apply would restart or reload on a master, and the changed files that cause it. */
export type ServicePreview = {name: ServiceName; action: 'restart' | 'reload'; reason: string; files: string[]};

export type HostPreview = {
	host: string;
	files: FileChange[];
	services: ServicePreview[];
	/** How long this master's last restart took on this cluster (state), when recorded. */
	lastRestart?: RestartTime;
	/** Why this master was not read (down, or left out with --skip): what apply would change there is unknown. */
	unread?: string;
};

export type ChangePreview = {
	/** false: the masters were not read (no install of this cluster is recorded: everything is new). */
	read: boolean;
	hosts: HostPreview[];
	/** How the restarts go: one master after the other on a running cluster, all at once on a fresh one. */
	restartOrder: 'one master at a time' | 'all masters at once';
	/** Binaries of a release not unpacked yet: their hashes are known only once apply reads the tarball. */
	binariesPending?: PendingBinaries;
	/** The masters' releases (as recorded) when this run brings them to another one. */
	upgrade?: ReleaseChange;
};

/** The binaries' paths on the masters, the release they come from (recorded) and go to. */
export type PendingBinaries = {paths: string[]; from?: string; to: string};

/** Files shown as a diff are read up to this size (a unit, a config, a certificate). */
const contentLimit = 256 * 1024;

/** base64, one line per file: exact bytes whatever the file holds (no trailing newline lost, no marker inside). */
export function contentsScript(paths: string[]): string {
	return `for k8smi_file in ${paths.map(file => shellQuote(file)).join(' ')}; do if [ -f "$k8smi_file" ]; then printf 'C %s %s\\n' "$(base64 -w0 < "$k8smi_file")" "$k8smi_file"; fi; done`;
}

export function parseContents(output: string): Map<string, string> {
	return new Map([...output.matchAll(/^C (\S*) (.+)$/gm)].map(match => [match[2]!, Buffer.from(match[1]!, 'base64').toString('utf8')] as const));
}

const isShownAsText = (upload: Upload): upload is Upload & {source: {content: string}} => !upload.secret && 'content' in upload.source && upload.bytes <= contentLimit;

export function fileKind(upload: Upload): FileChange['kind'] {
	if (upload.secret) {
		return 'secret';
	}

	if (!('content' in upload.source)) {
		return 'binary';
	}

	return upload.source.content.includes('-----BEGIN CERTIFICATE-----') ? 'certificate' : 'text';
}

export function certificateSummary(pem: string): CertificateSummary | undefined {
	try {
		const facts = readCertificate(pem);
		return {subject: facts.subject, issuer: facts.issuer, sans: [...facts.dnsSans, ...facts.ipSans], notAfter: facts.notAfter.toISOString()};
	} catch {
		// A hand-edited file that is no certificate any more: its diff is its hash.
		return undefined;
	}
}

const octal = (mode: number | undefined) => (mode === undefined ? undefined : mode.toString(8).padStart(4, '0'));

/** `stat`'s identity is device:inode:size:mtime:ctime. */
const sizeOf = (facts: RemoteFileFacts | undefined) => (facts?.stat ? Number(facts.stat.split(':')[2]) : undefined);

export type ChangeFacts = {
	step: StepId;
	upload: Upload;
	facts: RemoteFileFacts | undefined;
	/** The master's copy, for a file shown as text or certificate. */
	current: string | undefined;
	/** Hashes this install wrote at this path on this master. */
	written: Set<string>;
	/** The release a binary's sha256 belongs to, among those unpacked here. */
	releaseOf: (sha256: string) => string | undefined;
	release: string;
	hostName: string;
	/** For a binary: the release its binDir/NAME link names now (the one operators and scripts call). */
	linkedRelease?: string;
};

/** What apply would change in one file, or undefined when the master's copy is already it. Pure. */
export function fileChange({step, upload, facts, current, written, releaseOf, release, hostName, linkedRelease}: ChangeFacts): FileChange | undefined {
	const sameContent = facts?.sha256 === upload.sha256;
	if (sameContent && facts?.mode === upload.mode && facts.owner === 'root') {
		return undefined;
	}

	const kind = fileKind(upload);
	const change: FileChange = {
		step,
		path: upload.path,
		label: upload.label,
		kind,
		change: facts === undefined ? 'new' : sameContent ? 'mode' : 'content',
		byHand: facts?.sha256 !== undefined && !sameContent && !written.has(facts.sha256),
		sha256: {before: facts?.sha256, after: upload.sha256},
		mode: {before: facts ? `${octal(facts.mode)} ${facts.owner}` : undefined, after: `${octal(upload.mode)} root`},
	};
	if (sameContent) {
		return change;
	}

	if (kind === 'text' && isShownAsText(upload)) {
		// Removed lines (the master's) before added ones in each run, as diff -u orders them.
		const {header, body} = orderDiff(createTwoFilesPatch(`${hostName}:${upload.path}`, 'apply writes', current ?? '', upload.source.content));
		change.diff = [...header, ...body].join('\n');
	} else if (kind === 'certificate' && 'content' in upload.source) {
		change.certificate = {before: current === undefined ? undefined : certificateSummary(current), after: certificateSummary(upload.source.content)!};
	} else if (kind === 'binary') {
		// Not in the release's folder yet (an upgrade): it replaces the release the link names.
		const before = facts ? {release: facts.sha256 ? releaseOf(facts.sha256) : undefined, bytes: sizeOf(facts)} : linkedRelease === undefined ? undefined : {release: linkedRelease};
		change.binary = {before, after: {release, bytes: upload.bytes}};
	}

	return change;
}

/** binDir/NAME, the link apply points at the release's binary. */
export const binaryLinkPath = (config: ResolvedConfig, upload: Upload) => `${config.paths.binDir}/${upload.label}`;

/** The release binDir/NAME holds now: the folder a link such as `v1.28.6/NAME` names, or a regular file's (the old layout) by its hash. */
export function linkedRelease(facts: RemoteFileFacts | undefined, name: string, releaseOf: (sha256: string) => string | undefined): string | undefined {
	if (facts?.link === undefined) {
		return facts?.sha256 ? releaseOf(facts.sha256) : undefined;
	}

	const [release, file, ...rest] = facts.link.split('/');
	return file === name && rest.length === 0 ? release : undefined;
}

export type LinkFacts = {
	upload: Upload;
	linkPath: string;
	facts: RemoteFileFacts | undefined;
	release: string;
	releaseOf: (sha256: string) => string | undefined;
	/** What is at the link's path is not what this install put there. */
	byHand: boolean;
};

/** The change of binDir/NAME when it does not name the release's binary (drift, or a run stopped before the switch), else undefined. Pure. */
export function linkChange({upload, linkPath, facts, release, releaseOf, byHand}: LinkFacts): FileChange | undefined {
	const target = `${release}/${upload.label}`;
	if (facts?.link === target) {
		return undefined;
	}

	return {
		step: binariesStepOf(upload.label),
		path: linkPath,
		label: upload.label,
		kind: 'binary',
		change: facts === undefined ? 'new' : 'content',
		byHand,
		sha256: {before: facts?.sha256, after: upload.sha256},
		// A link's own mode says nothing (the binary it names has the release's): a regular file's is shown.
		mode: {before: facts?.link === undefined && facts ? `${octal(facts.mode)} ${facts.owner}` : undefined, after: '0777 root'},
		binary: {before: facts && {release: linkedRelease(facts, upload.label, releaseOf)}, after: {release}},
		link: {before: facts?.link, after: target},
	};
}

/** Which services apply would restart or reload, why, and after which of the files it would write. Pure. */
export function servicePreview(uploads: Upload[], changing: Set<string>, recorded: Record<string, string> | undefined, units: Map<ServiceName, UnitStatus>): ServicePreview[] {
	const facts = services.map(({name}) => {
		const inputs = serviceInputs(name, uploads);
		return {name, inputs: serviceFingerprint(inputs), recorded: recorded?.[name], written: inputs.filter(upload => changing.has(upload.path)).map(upload => upload.path), unit: units.get(name)};
	});
	return restartPolicy(facts).map(change => {
		const service = facts.find(each => each.name === change.name)!;
		// Files as recorded, yet one differs on the master: it changed there, and apply writes it back.
		const drifted = service.recorded === service.inputs && service.written.length > 0;
		return {...change, reason: drifted ? 'a file it reads differs on the master from what this install wrote' : change.reason, files: service.written};
	});
}

/** sha256 → release, from the manifests of every release unpacked in the state folder. */
export function unpackedReleases(binariesRoot: string): Map<string, string> {
	const releases = new Map<string, string>();
	if (!existsSync(binariesRoot)) {
		return releases;
	}

	for (const version of readdirSync(binariesRoot)) {
		const manifest = path.join(binariesRoot, version, 'manifest.json');
		if (existsSync(manifest)) {
			const {files} = JSON.parse(readFileSync(manifest, 'utf8')) as {files: Array<{sha256: string}>};
			for (const file of files) {
				releases.set(file.sha256, version);
			}
		}
	}

	return releases;
}

/**
 * The release's binaries as this install wrote them on the master (their sha256 recorded), when the
 * tarball is not unpacked here (a state folder without binaries/, as in CI): apply writes the same
 * again, so the services' fingerprints hold them as start recorded them. None for a release not written yet.
 */
export function recordedBinaryUploads(context: StepContext, master: Master): Upload[] {
	return binaryNames(context.config).flatMap((name): Upload[] => {
		// A state from before the binaries went in two steps holds them all under binaries.
		const record = [binariesStepOf(name), 'binaries'].map(step => context.state.host(step, master.name)).find(each => each !== undefined);
		const file = `${releaseBinDir(context.config)}/${name}`;
		const sha256 = record?.files?.[file] ?? record?.stats?.[file]?.sha256;
		const bytes = Number(record?.stats?.[file]?.stat.split(':')[2] ?? 0);
		return sha256 ? [{kind: 'upload', path: file, mode: 0o755, sha256, bytes, secret: false, source: {file: path.join(context.workspace.binariesDir(context.config.version), name)}, label: name}] : [];
	});
}

/** The uploads of every files step of the operation on this master, with their step. */
function stepUploads(operation: Operation, context: StepContext, master: Master): Array<{step: StepId; upload: Upload}> {
	const planned = operation.steps.filter(step => step.scope === 'each-master' && step.reads).flatMap(step => uploadsOf(step.plan(context, master)).map(upload => ({step: step.id, upload})));
	const recorded = !context.binaries && operation.steps.some(step => step.id === 'binaries') ? recordedBinaryUploads(context, master) : [];
	return [...planned, ...recorded.map(upload => ({step: binariesStepOf(upload.label) as StepId, upload}))];
}

const isBinary = (planned: {step: StepId; upload: Upload}) => (binariesSteps as readonly StepId[]).includes(planned.step) && fileKind(planned.upload) === 'binary';

/**
 * One round trip per master: the mode, owner and sha256 of every file apply would write and of the
 * binaries' links, the content of those shown as a diff (never a secret's: a secret is compared by
 * its hash alone), and the units' state.
 */
async function readMaster(context: StepContext, master: Master, steps: StepId[], uploads: Upload[], links: string[]) {
	const known = Object.assign({}, ...steps.map(step => knownIdentities(context, master, step))) as Record<string, {stat: string; sha256: string}>;
	const shown = uploads.filter(upload => isShownAsText(upload)).map(upload => upload.path);
	const script = sectionsScript({files: fileFactsScript([...uploads.map(upload => upload.path), ...links], known), contents: contentsScript(shown), units: unitStatusRead.script});
	const result = await context.remote.check(master, script, {step: 'plan', display: `read ${uploads.length} file(s) and ${links.length} link(s) (content of ${shown.length}, none secret) and the units' state for plan`});
	const sections = splitSections(result.stdout);
	return {facts: parseFileFacts(sections.get('files') ?? '', known), contents: parseContents(sections.get('contents') ?? ''), units: parseUnitStatus(sections.get('units') ?? '')};
}

/** What apply would change on one master, read from it. */
export async function previewMaster(operation: Operation, context: StepContext, master: Master, releases: Map<string, string>, lastRestart: RestartTime | undefined, pending?: PendingBinaries): Promise<HostPreview> {
	const planned = stepUploads(operation, context, master);
	const uploads = planned.map(each => each.upload);
	const binaries = planned.filter(each => isBinary(each)).map(each => each.upload);
	const links = new Map(binaries.map(upload => [upload.path, binaryLinkPath(context.config, upload)] as const));
	const {facts, contents, units} = await readMaster(context, master, [...new Set(planned.map(each => each.step))], uploads, [...links.values()]);
	const releaseOf = (sha256: string) => releases.get(sha256);
	const files = planned.flatMap(({step, upload}) => {
		const linkPath = links.get(upload.path);
		const link = linkPath === undefined ? undefined : facts.get(linkPath);
		const change = fileChange({
			step,
			upload,
			facts: facts.get(upload.path),
			current: contents.get(upload.path),
			written: context.state.writtenHashes(master.name, upload.path),
			releaseOf,
			release: context.config.version,
			hostName: master.name,
			linkedRelease: linkedRelease(link, upload.label, releaseOf),
		});
		if (change || linkPath === undefined) {
			// A binary written anew: its link is switched with it, said in the one change.
			return change ?? [];
		}

		const byHand = link !== undefined && (link.link === undefined ? !context.state.writtenHashes(master.name, linkPath).has(link.sha256 ?? '') : !ownLink(context, master, upload.label, link.link));
		return linkChange({upload, linkPath, facts: link, release: context.config.version, releaseOf, byHand}) ?? [];
	});
	// A file whose mode alone differs is written again too: its readers restart as for any write.
	const changing = new Set(files.map(file => file.path));
	const recorded = context.state.startedWith(master.name);
	const restarts = servicePreview(uploads, changing, recorded, units);
	return {host: master.name, files, services: [...restarts, ...pendingBinaryRestarts(uploads, pending, restarts)], lastRestart};
}

/**
 * With a new release not unpacked yet, the binaries' hashes are unknown, but a component whose unit
 * runs one of them restarts with it: said from the release alone.
 */
export function pendingBinaryRestarts(uploads: Upload[], pending: PendingBinaries | undefined, already: ServicePreview[]): ServicePreview[] {
	if (!pending) {
		return [];
	}

	return services.flatMap(({name}): ServicePreview[] => {
		const unit = serviceInputs(name, uploads)[0];
		const binary = pending.paths.find(file => unit && 'content' in unit.source && unit.source.content.includes(file));
		return binary && !already.some(each => each.name === name) ? [{name, action: 'restart', reason: `its binary changes with the release (${pending.from ?? 'unknown'} → ${pending.to})`, files: [binary]}] : [];
	});
}
