import type {PlanView} from '../engine/plan.js';
import type {CertificateSummary, ChangePreview, FileChange, HostPreview, ServicePreview} from '../steps/preview.js';
import {installRestartOrder, startPhases, type RestartOrder} from '../steps/services.js';
import type {ReleaseChange} from '../upgrade/skew.js';
import {formatBytes, formatDuration} from './format.js';

/** Whether apply would change anything on a master: plan --exit-code's answer. */
export function planChanges(plan: Pick<PlanView, 'changes'>): boolean {
	const changes = plan.changes;
	if (!changes) {
		return false;
	}

	// Before the first install nothing is read: every file is new.
	if (!changes.read) {
		return true;
	}

	const newRelease = changes.binariesPending !== undefined && changes.binariesPending.from !== changes.binariesPending.to;
	return newRelease || changes.hosts.some(host => host.files.length > 0 || host.services.length > 0);
}

/** The masters plan could not read (or was told to leave out): on them, whether apply changes anything is unknown. */
export function unreadMasters(plan: Pick<PlanView, 'changes'>): string[] {
	return plan.changes?.hosts.filter(host => host.unread !== undefined).map(host => host.host) ?? [];
}

const short = (hash: string | undefined) => (hash ? `${hash.slice(0, 12)}…` : 'none');

function certificateLines(before: CertificateSummary | undefined, after: CertificateSummary): string[] {
	if (!before) {
		return [`subject ${after.subject}, issuer ${after.issuer}, SANs ${after.sans.join(', ') || 'none'}, not after ${after.notAfter.slice(0, 10)}`];
	}

	const fields: Array<[string, string, string]> = [
		['subject', before.subject, after.subject],
		['SANs', before.sans.join(', ') || 'none', after.sans.join(', ') || 'none'],
		['not after', before.notAfter.slice(0, 10), after.notAfter.slice(0, 10)],
		['issuer', before.issuer, after.issuer],
	];
	const changed = fields.filter(([, was, will]) => was !== will);
	// Issued again with the same facts (a new serial, a new signature): said as such.
	return changed.length > 0 ? changed.map(([name, was, will]) => `${name}: ${was} → ${will}`) : ['issued again with the same subject, SANs, expiry and issuer'];
}

/** One file's change: a heading, then its diff, certificate facts, release or hashes. Never a secret's content. */
export function fileChangeLines(file: FileChange): string[] {
	const mark = file.change === 'new' ? '+' : '~';
	const drift = file.byHand ? '  (changed on the master by hand: apply asks before it puts back what the config writes, or needs --overwrite; the master\'s copy is kept as a backup)' : '';
	const heading = `${mark} ${file.path}  [${file.step}]${drift}`;
	const mode = file.mode.before && file.mode.before !== file.mode.after ? [`mode ${file.mode.before} → ${file.mode.after}`] : [];
	if (file.change === 'mode') {
		return [heading, ...mode.map(line => `    ${line}`)];
	}

	const body: string[] = [];
	switch (file.kind) {
		case 'secret': {
			body.push(`secret: ${file.change === 'new' ? 'new' : 'changed'}, sha256 ${short(file.sha256.before)} → ${short(file.sha256.after)} (content not shown)`);
			break;
		}

		case 'binary': {
			const {before, after} = file.binary ?? {after: {release: '?'}};
			const was = before ? `${before.release ?? 'a release this install did not unpack'}${before.bytes === undefined ? '' : `, ${formatBytes(before.bytes)}`}` : 'none';
			body.push(`${file.label} ${was} → ${after.release}${after.bytes === undefined ? '' : `, ${formatBytes(after.bytes)}`}`);
			if (file.link) {
				body.push(`link ${file.link.before ?? '(a regular file)'} → ${file.link.after}`);
			}

			break;
		}

		case 'certificate': {
			body.push(...(file.certificate ? certificateLines(file.certificate.before, file.certificate.after) : [`sha256 ${short(file.sha256.before)} → ${short(file.sha256.after)}`]));
			break;
		}

		case 'text': {
			body.push(...(file.diff ? file.diff.split('\n') : [`sha256 ${short(file.sha256.before)} → ${short(file.sha256.after)} (too large to show)`]));
			break;
		}
	}

	return [heading, ...[...body, ...mode].map(line => `    ${line}`)];
}

/** "restart kube-apiserver (a file it reads changed: /etc/…/kube-apiserver.service)". */
function serviceLine(service: ServicePreview): string {
	return `${service.action} ${service.name} (${service.reason}${service.files.length > 0 ? `: ${service.files.join(', ')}` : ''})`;
}

/**
 * In the order the start steps take them (installRestartOrder, or one step's groups): group after
 * group, a group's restarts in one systemctl restart, then its reloads; the next group once the group is ready.
 */
export function restartSequence(services: ServicePreview[], order: RestartOrder = installRestartOrder): string[] {
	const lines: string[] = [];
	let previous: readonly string[] = [];
	for (const group of order) {
		const inGroup = group.flatMap(name => services.filter(service => service.name === name));
		const restarts = inGroup.filter(service => service.action === 'restart');
		const together = restarts.length > 1 ? [`restart ${restarts.map(service => service.name).join(' and ')} in one systemctl restart:`, ...restarts.map(service => `  ${serviceLine(service).replace(/^restart /, '')}`)] : restarts.map(serviceLine);
		const groupLines = [...together, ...inGroup.filter(service => service.action === 'reload').map(serviceLine)];
		if (groupLines.length > 0 && lines.length > 0) {
			groupLines[0] = `then, once ${previous.join(' and ')} are ready: ${groupLines[0]}`;
		}

		lines.push(...groupLines);
		previous = group;
	}

	return lines;
}

function expectedTime(host: HostPreview): string {
	if (!host.services.some(service => service.action === 'restart')) {
		return 'a reload takes well under a second';
	}

	return host.lastRestart
		? `expected about ${formatDuration(host.lastRestart.ms)} (its last restart, of ${host.lastRestart.services.join(', ')}, took that on ${host.lastRestart.at.slice(0, 10)})`
		: 'no earlier restart of it is recorded to estimate from';
}

/** The change preview as text: each file's diff per master, then what restarts, in which order, why, and how long. */
export function formatChanges(changes: ChangePreview): string[] {
	const {files, restarts} = formatChangeParts(changes);
	return [...files, ...restarts];
}

/** The change preview in its two parts: a screen may cut the diffs short, never what restarts. */
export function formatChangeParts(changes: ChangePreview): {files: string[]; restarts: string[]} {
	if (!changes.read) {
		return {files: ['No install of this cluster is recorded: everything below is new (the masters were not read).'], restarts: []};
	}

	return {files: fileLines(changes), restarts: restartLines(changes)};
}

function fileLines(changes: ChangePreview): string[] {
	const lines = [...changes.upgrade ? upgradeLines(changes.upgrade) : [], 'Changes: what apply would write, against what each master holds now (read from it; secrets by their hash only)'];
	if (changes.binariesPending) {
		const {from, to, paths} = changes.binariesPending;
		lines.push(from && from !== to
			? `  binaries: ${paths.length} of release ${to} replace ${from} on every master (sizes and hashes known once apply unpacks the tarball)`
			: `  binaries: compared with the sha256 this install recorded on each master (the tarball of ${to} is not unpacked here: apply reads it again and checks each binary's sha256 on the master)`);
	}

	for (const host of changes.hosts) {
		if (host.unread !== undefined) {
			lines.push(`${host.host}: not read (${host.unread}): what apply would change there is not known`);
			continue;
		}

		if (host.files.length === 0) {
			lines.push(`${host.host}: no file differs`);
			continue;
		}

		lines.push(`${host.host}: ${host.files.length} file(s) differ`);
		for (const file of host.files) {
			lines.push(...fileChangeLines(file).map(line => `  ${line}`));
		}
	}

	return lines;
}

function restartLines(changes: ChangePreview): string[] {
	const lines: string[] = [];
	const restarting = changes.hosts.filter(host => host.services.length > 0);
	if (restarting.length === 0) {
		lines.push('', 'Restarts: none');
		return lines;
	}

	const total = restarting.reduce((sum, host) => sum + (host.lastRestart?.ms ?? 0), 0);
	const rolling = changes.restartOrder === 'one master at a time';
	lines.push('', `Restarts, ${changes.restartOrder}${rolling ? ` (${restarting.map(host => host.host).join(', then ')}; the others keep serving)` : ''}:`);
	// One start step per phase (see startPhases): every master's apiserver before any controller-manager or scheduler.
	const timed = new Set<string>();
	for (const [index, phase] of startPhases.entries()) {
		const inPhase = restarting.filter(host => host.services.some(service => phase.flat().includes(service.name)));
		if (inPhase.length === 0) {
			continue;
		}

		const names = phase.flat().join(' and ');
		lines.push(`  ${index === 0 ? names : `then, once every apiserver is ready, ${names}`}, ${rolling ? 'master by master' : 'on every master at once'}:`);
		for (const host of inPhase) {
			lines.push(`  ${host.host}:${timed.has(host.host) ? '' : ` ${expectedTime(host)}`}`, ...restartSequence(host.services, phase).map(line => `    ${line}`));
			timed.add(host.host);
		}
	}

	if (rolling && restarting.every(host => host.lastRestart)) {
		lines.push(`  in all about ${formatDuration(total)} of restarts, from the last restarts recorded on this cluster`);
	}

	return lines;
}

/** An upgrade (or a way back): each master's release before and after, and why the order is what it is. */
export function upgradeLines(upgrade: ReleaseChange): string[] {
	const kind = upgrade.downgrade ? 'a downgrade' : upgrade.minor ? 'a minor release' : 'a patch release';
	return [
		`Upgrade to ${upgrade.to} (${kind}): ${upgrade.masters.map(each => (each.move === 'same' ? `${each.host} runs it already` : `${each.host} ${each.from} → ${upgrade.to}`)).join(', ')}`,
		`  every master's kube-apiserver first, then the controller-managers and schedulers: none of them is ever newer than an apiserver it talks to (through kube-nginx, all of them). A failure stops the run on that master; the others keep serving. The way back: set version to the release they ran and apply again, ${upgrade.minor ? 'while no master has finished the new minor release (its controller-manager and scheduler on it); after that, only etcd\'s snapshot (status lists them)' : 'with --allow-downgrade once a master has finished the new release'}.`,
	];
}
