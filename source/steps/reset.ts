import type {Master} from '../config/schema.js';
import {releaseBinDir, workingDirectories} from '../render/artifacts.js';
import {shellWords} from '../remote/quote.js';
import {install} from '../operations/install.js';
import {readRemoteFiles, uploadsOf} from './files.js';
import {services} from './readiness.js';
import {ownLink, recordedReleases} from './releases.js';
import type {StepContext, StepDefinition} from './types.js';

/**
 * Undoes an install on one master: stops and disables the units, removes every file whose content
 * is still what this install wrote (recorded, or what it would write now) and binDir's links it made,
 * then the folders it made (each release's too) if they are empty. A file changed since is kept and
 * named; audit and nginx logs stay, and so does anything else in binDir (etcd's tools).
 */
export async function resetHost(context: StepContext, master: Master): Promise<string> {
	const units = services.map(service => service.name).reverse();
	await context.remote.check(master, `for u in ${units.join(' ')}; do systemctl stop "$u" 2>/dev/null; systemctl disable "$u" 2>/dev/null; done; true`, {step: 'reset', display: `systemctl stop and disable ${units.join(' ')}`});

	const ours = context.state.writtenFiles(master.name);
	for (const upload of uploadsOf(install.steps.flatMap(step => step.plan(context, master)))) {
		ours.set(upload.path, (ours.get(upload.path) ?? new Set()).add(upload.sha256));
	}

	// binDir/NAME of every binary this install placed: a link of its own is removed, whatever release it names.
	const releases = recordedReleases(context, master);
	const names = [...[...releases.values()].flat().map(binary => binary.name), ...context.binaries?.map(binary => binary.name) ?? []];
	const links = [...new Set(names)].map(name => `${context.config.paths.binDir}/${name}`);
	const facts = await readRemoteFiles(context, master, 'reset', [...new Set([...ours.keys(), ...links])]);
	const remove: string[] = [];
	const kept: string[] = [];
	for (const remotePath of new Set([...ours.keys(), ...links])) {
		const found = facts.get(remotePath);
		if (found?.link !== undefined) {
			(ownLink(context, master, remotePath.slice(remotePath.lastIndexOf('/') + 1), found.link) ? remove : kept).push(remotePath);
		} else if (found?.sha256 !== undefined) {
			(ours.get(remotePath)?.has(found.sha256) ? remove : kept).push(remotePath);
		}
	}

	const {certDir, configDir, k8sDir, nginxDir} = context.config.paths;
	// Deepest first; rmdir leaves any folder that still holds something (logs, other files).
	const folders = [...new Set([...releases.keys(), releaseBinDir(context.config)]), ...workingDirectories(context.config), nginxDir, certDir, configDir, k8sDir];
	const removeScript = remove.length > 0 ? `rm -f -- ${shellWords(remove)}; ` : '';
	await context.remote.check(master, `${removeScript}systemctl daemon-reload; systemctl reset-failed 2>/dev/null; for d in ${shellWords(folders)}; do rmdir -- "$d" 2>/dev/null; done; true`, {step: 'reset', display: `rm -f ${remove.length} file(s); systemctl daemon-reload; rmdir empty folders`});
	return `units stopped and disabled, ${remove.length} file(s) removed${kept.length > 0 ? `; kept ${kept.length} changed since this install wrote them: ${kept.join(', ')}` : ''}`;
}

/** Every master at once; what was removed from a master is forgotten there, so apply starts it afresh. */
export const resetStep: StepDefinition = {
	id: 'reset',
	title: 'Remove the control plane from the masters',
	needs: [],
	scope: 'each-master',
	plan: context => [{kind: 'check', description: `stop and disable the units, remove the files this install wrote, its release folders and links in ${context.config.paths.binDir} among them (kept: etcd's data, ${context.workspace.root})`}],
	verify: async () => ({done: false}),
	async run(context, master) {
		const detail = await resetHost(context, master);
		context.state.forgetHost(master.name);
		return detail;
	},
};
