import {randomBytes} from 'node:crypto';
import type {ResolvedConfig} from '../config/load.js';
import type {Master} from '../config/schema.js';
import {releaseBinDir} from '../render/artifacts.js';
import {shellQuote, shellWords} from '../remote/quote.js';
import {checkSumsScript, confirmOverwrite, readRemoteFiles, runUploads, statFormat, type RemoteFileFacts, type Upload} from './files.js';
import type {PlannedAction, StepContext, StepDefinition, StepId, Verification} from './types.js';

/*
 * binDir holds each release in a folder of its own (binDir/v1.28.7/kube-apiserver) and a link per
 * binary to the current one (binDir/kube-apiserver -> v1.28.7/kube-apiserver). The units name the
 * release's folder, so a new release waits beside the running one until the start step restarts
 * each service; the links serve operators, scripts and the tool's own kubectl on the masters.
 */

const releaseName = /^v\d+\.\d+\.\d+$/;

/** binDir/NAME: the link operators and scripts call. */
const linkPath = (config: ResolvedConfig, name: string) => `${config.paths.binDir}/${name}`;

/** What binDir/NAME names: relative, so that the folder can be moved or mounted elsewhere whole. */
const linkTarget = (config: ResolvedConfig, name: string) => `${config.version}/${name}`;

/** Release folder -> the binaries this install wrote in it on a master (from the state, whichever run wrote them). */
export function recordedReleases(context: StepContext, master: Master): Map<string, Array<{path: string; name: string; hashes: Set<string>}>> {
	const {binDir} = context.config.paths;
	const releases = new Map<string, Array<{path: string; name: string; hashes: Set<string>}>>();
	for (const [remotePath, hashes] of context.state.writtenFiles(master.name)) {
		const [release, name, ...rest] = remotePath.startsWith(`${binDir}/`) ? remotePath.slice(binDir.length + 1).split('/') : [];
		if (release && name && rest.length === 0 && releaseName.test(release)) {
			const folder = `${binDir}/${release}`;
			releases.set(folder, [...releases.get(folder) ?? [], {path: remotePath, name, hashes}]);
		}
	}

	return releases;
}

/** A link this install made: it names NAME in a release folder this install wrote (or is writing). */
export function ownLink(context: StepContext, master: Master, name: string, target: string): boolean {
	const release = target.split('/');
	return release.length === 2 && release[1] === name && (release[0] === context.config.version || recordedReleases(context, master).has(`${context.config.paths.binDir}/${release[0]}`));
}

/** Whether what sits at binDir/NAME may be replaced by the link without asking. */
function replaceable(context: StepContext, master: Master, upload: Upload, facts: RemoteFileFacts | undefined): boolean {
	if (facts === undefined) {
		return true;
	}

	if (facts.link !== undefined) {
		return ownLink(context, master, upload.label, facts.link);
	}

	// A regular file: the old layout's binary, if this install wrote it (or it is the release's own).
	return facts.sha256 === upload.sha256 || (facts.sha256 !== undefined && context.state.writtenHashes(master.name, linkPath(context.config, upload.label)).has(facts.sha256));
}

/** Whether a release file may be written over without asking: absent, or holding bytes this install wrote there. */
function replacedWithoutAsking(context: StepContext, master: Master, remotePath: string, facts: RemoteFileFacts | undefined): boolean {
	return facts === undefined || (facts.sha256 !== undefined && context.state.writtenHashes(master.name, remotePath).has(facts.sha256));
}

/**
 * The binaries go in two steps: what the apiservers' start needs (kube-apiserver, and kubectl, which
 * asks kube-nginx's readiness where curl is missing) before it, the rest (the controller-manager, the
 * scheduler, binaries.include) while the apiservers start, which takes them seconds of waiting.
 */
export type BinariesStep = 'binaries' | 'controller-binaries';
const startsFirst = new Set(['kube-apiserver', 'kubectl']);
export const binariesStepOf = (name: string): BinariesStep => (startsFirst.has(name) ? 'binaries' : 'controller-binaries');
export const binariesSteps: readonly BinariesStep[] = ['binaries', 'controller-binaries'];

const releaseUploads = (actions: PlannedAction[]) => actions.filter((action): action is Upload => action.kind === 'upload');
type RemoteAction = Extract<PlannedAction, {kind: 'remote'}>;

/**
 * The release's folder, made by the uploads under umask 077, becomes 0755 root-owned first: no link
 * ever names a folder only root can enter. Then each link is made under a temporary name and renamed
 * over binDir/NAME, one rename per link: a caller sees the old binary or the new one, never none
 * (between two renames some links name the old release, some the new). Prints each link's identity.
 */
function switchLinksScript(config: ResolvedConfig, names: string[]): string {
	const temporary = (name: string) => `${shellQuote(linkPath(config, name))}.k8smi-link-$$`;
	return [
		// What a killed run's session left (it may have died between ln and mv).
		`set -e; rm -f -- ${names.map(name => `${shellQuote(linkPath(config, name))}.k8smi-link-*`).join(' ')}`,
		`chown root:root ${shellQuote(releaseBinDir(config))}`,
		`chmod 755 ${shellQuote(releaseBinDir(config))}`,
		...names.map(name => `ln -sfn -- ${shellQuote(linkTarget(config, name))} ${temporary(name)}; mv -T -f -- ${temporary(name)} ${shellQuote(linkPath(config, name))}`),
		`stat -c 'S ${statFormat} %n' -- ${shellWords(names.map(name => linkPath(config, name)))}`,
	].join('; ');
}

/**
 * The old layout's binaries (binDir/NAME, regular files) copied into the release's folder on the
 * master instead of being sent again: checked like an upload, then renamed into place. Prints each new file's identity.
 */
function copyScript(config: ResolvedConfig, copies: Upload[], token: string): string {
	const from = (upload: Upload) => shellQuote(linkPath(config, upload.path.slice(upload.path.lastIndexOf('/') + 1)));
	const temporary = (upload: Upload) => shellQuote(`${upload.path}.k8smi-new-${token}`);
	const temporaries = copies.map(temporary).join(' ');
	return [
		`set -e; umask 077; trap ${shellQuote(`rm -f ${temporaries}`)} EXIT; mkdir -p -- ${shellQuote(releaseBinDir(config))}; rm -f -- ${copies.map(upload => `${shellQuote(upload.path)}.k8smi-new-*`).join(' ')}`,
		...copies.map(upload => `cp -- ${from(upload)} ${temporary(upload)}`),
		checkSumsScript(temporaries, copies.map(upload => upload.sha256).join(' '), 'a binary changed while it was copied'),
		`chown root:root ${temporaries}`,
		`chmod 755 ${temporaries}`,
		...copies.map(upload => `mv -f ${temporary(upload)} ${shellQuote(upload.path)}`),
		'trap - EXIT',
		`stat -c 'S ${statFormat} %n' -- ${shellWords(copies.map(upload => upload.path))}`,
	].join('; ');
}

/**
 * Links held back on a master in this run: binDir/NAME is still the old layout's binary (a regular
 * file of another release), and the units systemd has loaded run that path. Switched to the new
 * release there, a unit that systemd restarts on its own (a crash, Restart=) before the start steps
 * would run the new release outside their order: on every master at once, a controller-manager
 * before the apiservers. So they are switched by the last start step, once every service on the
 * master runs from the release's folder (switchHeldLinks).
 */
const heldLinks = new WeakMap<StepContext, Map<string, string[]>>();

/** Whether binDir/NAME links wait on this master for the start steps (see heldLinks). */
export function linksHeld(context: StepContext, master: Master): boolean {
	return (heldLinks.get(context)?.get(master.name)?.length ?? 0) > 0;
}

/** Switches the links held back on this master, now that its services run from the release's folder. */
export async function switchHeldLinks(context: StepContext, master: Master, step: string): Promise<string | undefined> {
	const names = heldLinks.get(context)?.get(master.name) ?? [];
	if (names.length === 0) {
		return undefined;
	}

	const uploads = releaseUploads(binariesPlan(context)).filter(upload => names.includes(upload.label));
	const script = switchLinksScript(context.config, names);
	const linked = landedStats((await context.remote.check(master, script, {step, display: `point ${names.map(name => linkPath(context.config, name)).join(', ')} at ${context.config.version}/ (the old layout's files, kept until every service ran the new release)`})).stdout);
	recordLinks(context, master, uploads, linked);
	heldLinks.get(context)?.delete(master.name);
	return `${names.map(name => linkPath(context.config, name)).join(', ')} now link to ${context.config.version}/`;
}

const landedStats = (output: string) => new Map([...output.matchAll(/^S (\S+) (.+)$/gm)].map(match => [match[2]!, match[1]!] as const));

/** The uploads and the link switch of one binaries step (of both when none is named: the held links' lookup). */
function binariesPlan(context: StepContext, step?: BinariesStep): PlannedAction[] {
	const {config} = context;
	if (!context.binaries) {
		const which = step === 'binaries' ? 'kube-apiserver and kubectl' : 'the other server binaries';
		return [{kind: 'check', description: `unpack ${config.binaries.tarball ?? config.binaries.url} and copy ${which} to ${releaseBinDir(config)}/, then point ${config.paths.binDir}/NAME at them (hashes known once unpacked)`}];
	}

	const binaries = context.binaries.filter(binary => step === undefined || binariesStepOf(binary.name) === step);
	const names = binaries.map(binary => binary.name);
	return [
		...binaries.map((binary): Upload => ({
			kind: 'upload', path: `${releaseBinDir(config)}/${binary.name}`, mode: 0o755, sha256: binary.sha256, bytes: binary.bytes, secret: false, source: binary.gzipBytes === undefined ? {file: binary.file} : {gzipFile: binary.file, gzipBytes: binary.gzipBytes}, label: binary.name,
		})),
		{kind: 'remote', script: switchLinksScript(config, names), display: `point ${names.map(name => linkPath(config, name)).join(', ')} at ${config.version}/ (ln -s, mv -T)`},
	];
}

/** The step's release files, binDir's links to them and the release's folder. */
const binaryReads = (context: StepContext, step: BinariesStep) => [...releaseUploads(binariesPlan(context, step)).flatMap(upload => [upload.path, linkPath(context.config, upload.label)]), releaseBinDir(context.config)];

/** What is wrong with the release's folder (a run killed before its chmod leaves it 0700), if anything. */
function folderProblem(context: StepContext, facts: Map<string, RemoteFileFacts>): string | undefined {
	const folder = facts.get(releaseBinDir(context.config));
	return folder?.mode === 0o755 && folder.owner === 'root' ? undefined : `${releaseBinDir(context.config)} to make 0755 root-owned${folder ? ` (${folder.mode?.toString(8)} ${folder.owner})` : ''}`;
}

/** Whether every link already names this release. */
function linksInPlace(context: StepContext, uploads: Upload[], facts: Map<string, RemoteFileFacts>): boolean {
	return uploads.every(upload => facts.get(linkPath(context.config, upload.label))?.link === linkTarget(context.config, upload.label));
}

/** The links' identities with their targets' hashes: a later read does not hash 100 MB through a link that did not change. */
function recordLinks(context: StepContext, master: Master, uploads: Upload[], stats: Map<string, string | undefined>): void {
	for (const step of binariesSteps) {
		const own = uploads.filter(upload => binariesStepOf(upload.label) === step);
		if (own.length > 0) {
			context.state.recordStats(step, master.name, own.map(upload => ({path: linkPath(context.config, upload.label), stat: stats.get(linkPath(context.config, upload.label)), sha256: upload.sha256})));
		}
	}
}

/**
 * Copies the step's binaries of the release into binDir/VERSION/ (from the old layout's files on the
 * master when they hold the same bytes, else over ssh), then switches binDir/NAME to them. The
 * services keep running their own release's binaries until a start step restarts them.
 */
function binariesStep(id: BinariesStep, title: string, afterWhenLive?: StepId[]): StepDefinition {
	return {
		id,
		title,
		// A master that leaves under a name the config now gives a new machine is forgotten first.
		needs: ['leave'],
		afterWhenLive,
		scope: 'each-master',
		plan: context => binariesPlan(context, id),
		reads: context => binaryReads(context, id),
		verify: async (context, master) => verifyBinaries(context, master, id),
		run: async (context, master, _inputs, verification) => placeBinaries(context, master, id, verification),
	};
}

export const binaries = binariesStep('binaries', 'Copy kube-apiserver and kubectl');
// On a running cluster after the apiservers' restarts: beside one, the transfer made it 4 s slower on the lab.
export const controllerBinaries = binariesStep('controller-binaries', 'Copy the other server binaries, while the apiservers start (after them on a running cluster)', ['start']);

async function verifyBinaries(context: StepContext, master: Master, step: BinariesStep): Promise<Verification> {
	const uploads = releaseUploads(binariesPlan(context, step));
	const facts = await readRemoteFiles(context, master, step, binaryReads(context, step));
	const missing = uploads.filter(upload => !(facts.get(upload.path)?.sha256 === upload.sha256 && facts.get(upload.path)?.mode === upload.mode && facts.get(upload.path)?.owner === 'root'));
	const links = linksInPlace(context, uploads, facts) ? undefined : `${context.config.paths.binDir}'s links to switch to ${context.config.version}`;
	const folder = folderProblem(context, facts);
	if (missing.length > 0 || links || folder) {
		return {done: false, detail: missing.length > 0 ? `${missing.length} of ${uploads.length} binaries to write` : links ?? folder!, observed: facts};
	}

	context.state.recordStats(step, master.name, uploads.map(upload => ({path: upload.path, stat: facts.get(upload.path)?.stat, sha256: upload.sha256})));
	recordLinks(context, master, uploads, new Map(uploads.map(upload => [linkPath(context.config, upload.label), facts.get(linkPath(context.config, upload.label))?.stat])));
	return {done: true, detail: `${uploads.length} binaries of ${context.config.version} in place, linked from ${context.config.paths.binDir}`};
}

async function placeBinaries(context: StepContext, master: Master, step: BinariesStep, verification: Verification | undefined): Promise<string> {
	const {config} = context;
	const actions = binariesPlan(context, step);
	const uploads = releaseUploads(actions);
	const facts = new Map((verification?.observed as Map<string, RemoteFileFacts> | undefined) ?? await readRemoteFiles(context, master, step, binaryReads(context, step)));
	// Asked first, before a byte is sent: a file at binDir/NAME this install did not write.
	for (const upload of uploads) {
		const current = facts.get(linkPath(config, upload.label));
		if (current?.link !== linkTarget(config, upload.label) && !replaceable(context, master, upload, current)) {
			await confirmOverwrite(context, master, step, {...upload, path: linkPath(config, upload.label)});
		}
	}

	const [switchLinks] = actions.filter((action): action is RemoteAction => action.kind === 'remote');
	// The old layout's binary with this release's bytes: copied on the master (binaries are 100+ MB),
	// over nothing or a file this install wrote; over anyone else's, runUploads asks first.
	const copies = uploads.filter(upload => facts.get(upload.path)?.sha256 !== upload.sha256 && facts.get(linkPath(config, upload.label))?.link === undefined && facts.get(linkPath(config, upload.label))?.sha256 === upload.sha256 && replacedWithoutAsking(context, master, upload.path, facts.get(upload.path)));
	if (copies.length > 0) {
		context.throwIfStopping();
		const script = copyScript(config, copies, randomBytes(4).toString('hex'));
		const copied = landedStats((await context.remote.check(master, script, {step, display: `cp ${copies.map(upload => linkPath(config, upload.label)).join(', ')} into ${releaseBinDir(config)}/ (the same bytes: nothing sent)`})).stdout);
		const changed = context.changedFiles.get(master.name) ?? new Set<string>();
		context.changedFiles.set(master.name, changed);
		for (const upload of copies) {
			facts.set(upload.path, {sha256: upload.sha256, mode: upload.mode, owner: 'root', stat: copied.get(upload.path)});
			changed.add(upload.path);
		}
	}

	const note = await runUploads(context, master, step, actions, facts);
	context.throwIfStopping();
	// The old layout's binary of another release, which the loaded units run: held back (see heldLinks).
	const held = uploads.filter(upload => facts.get(linkPath(config, upload.label))?.link === undefined && ![undefined, upload.sha256].includes(facts.get(linkPath(config, upload.label))?.sha256)).map(upload => upload.label);
	const switched = uploads.filter(upload => !held.includes(upload.label));
	if (!heldLinks.has(context)) {
		heldLinks.set(context, new Map());
	}

	// Both binaries steps hold theirs on the master: each keeps the other's.
	const others = heldLinks.get(context)!.get(master.name)?.filter(name => !uploads.some(upload => upload.label === name)) ?? [];
	heldLinks.get(context)!.set(master.name, [...others, ...held]);
	if (switched.length > 0) {
		const script = held.length === 0 ? switchLinks!.script : switchLinksScript(config, switched.map(upload => upload.label));
		const linked = landedStats((await context.remote.check(master, script, {step, display: switchLinks!.display})).stdout);
		recordLinks(context, master, switched, linked);
	}

	const links = held.length > 0 ? `${held.map(name => linkPath(config, name)).join(', ')} (the old layout's files, which the running units start) keep their release until start ran ${config.version} on this master` : `${config.paths.binDir}/NAME point at ${config.version}/`;
	return `${copies.length > 0 ? `${copies.length} copied on the master from the old layout, ` : ''}${note}; ${links}`;
}

/**
 * After the start step on a master (every service ready on this release): release folders this
 * install wrote, other than this one and the previous one (the way back), are removed: the files it
 * wrote there, the links still naming them, then the folder if nothing else is left in it; their
 * files are forgotten. The previous release is the last other one the start step brought up healthy
 * here (recorded in the state, not read from a folder's time, which any change in the folder moves);
 * none recorded (a state from before that record): nothing is removed.
 */
export async function pruneReleases(context: StepContext, master: Master, step: string): Promise<string | undefined> {
	const {binDir} = context.config.paths;
	const previousVersion = context.state.startedReleases(master.name).findLast(version => version !== context.config.version);
	if (previousVersion === undefined) {
		return undefined;
	}

	const previous = `${binDir}/${previousVersion}`;
	const recorded = recordedReleases(context, master);
	const older = [...recorded.keys()].filter(folder => folder !== releaseBinDir(context.config) && folder !== previous);
	if (older.length === 0) {
		return undefined;
	}

	const files = older.flatMap(folder => recorded.get(folder)!);
	const links = [...new Set(files.map(file => file.name))].map(name => linkPath(context.config, name));
	const facts = await readRemoteFiles(context, master, step, [...files.map(file => file.path), ...links], binariesSteps);
	const ours = files.filter(file => file.hashes.has(facts.get(file.path)?.sha256 ?? '')).map(file => file.path);
	const oldLinks = links.filter(link => older.some(folder => facts.get(link)?.link === `${folder.slice(binDir.length + 1)}/${link.slice(link.lastIndexOf('/') + 1)}`));
	// A folder already gone is not reported as kept.
	const removal = `${[...ours, ...oldLinks].length > 0 ? `rm -f -- ${shellWords([...ours, ...oldLinks])}; ` : ''}for d in ${shellWords(older)}; do if [ -d "$d" ]; then rmdir -- "$d" 2>/dev/null || echo "K $d"; fi; done`;
	const result = await context.remote.check(master, removal, {step, display: `remove the releases ${older.join(', ')} (kept ${previous}, the previous one)`});
	// Removed, already gone or replaced by someone else's: none of them is this install's file on the master any more.
	context.state.forgetFiles(master.name, files.map(file => file.path));
	const kept = [...result.stdout.matchAll(/^K (\S+)$/gm)].map(match => match[1]!);
	const removed = older.filter(folder => !kept.includes(folder));
	return `removed ${removed.length > 0 ? removed.join(', ') : 'no release folder'}${kept.length > 0 ? ` (${kept.join(', ')} still hold files this install did not write: left)` : ''}; kept ${previous}, the way back`;
}
