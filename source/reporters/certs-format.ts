import type {PlanView} from '../engine/plan.js';
import type {CertificateRow, CertificatesReport} from '../pki/inventory.js';
import type {LeafName} from '../pki/material.js';

const writtenWords = {current: 'as written', older: 'older', differs: 'DIFFERS', missing: 'MISSING', unreadable: 'UNREADABLE'} as const;
const expiryWords = {ok: '', plan: '  plan the CA\'s replacement', renew: '  RENEW', expired: '  EXPIRED'} as const;

function byHost(a: string, b: string): number {
	// The workstation first, then the masters in name order (k8smaster01, 02, ...).
	return a === b ? 0 : a === 'workstation' ? -1 : b === 'workstation' ? 1 : a.localeCompare(b, 'en', {numeric: true});
}

function table(rows: string[][]): string[] {
	const widths = rows[0]!.map((_, column) => Math.max(...rows.map(row => row[column]!.length)));
	return rows.map(row => row.map((cell, column) => cell.padEnd(widths[column]!)).join('  ').trimEnd());
}

/**
 * The certificates: one line per certificate and place (the workstation, each master), its end and
 * days left, and whether a master holds what this install wrote; then each subject and its SANs once,
 * and what to do about anything that is not fine.
 */
export function formatCertificates(report: CertificatesReport): string[] {
	const rows = [...report.rows].sort((a, b) => byHost(a.where, b.where));
	const lines = table([
		['certificate', 'where', 'file', 'not after', 'days left', 'on the master'],
		...rows.map(row => [
			row.name,
			row.where,
			row.file,
			row.notAfter?.slice(0, 10) ?? (row.ageDays === undefined ? '-' : `(age ${row.ageDays} days)`),
			row.daysLeft === undefined ? '-' : `${row.daysLeft}${expiryWords[row.expiry ?? 'ok']}`,
			row.written ? writtenWords[row.written] : '-',
		]),
	]);
	const subjects = new Map<string, string[]>();
	for (const row of rows.filter(each => each.subject !== undefined)) {
		const key = `${row.name}: ${row.subject}${row.sans && row.sans.length > 0 ? `\n    SANs ${row.sans.join(', ')}` : ''}`;
		subjects.set(key, [...subjects.get(key) ?? [], row.where]);
	}

	lines.push('', 'Subjects:');
	for (const [text, places] of subjects) {
		lines.push(`  ${text}${[...new Set(places)].length < new Set(rows.map(row => row.where)).size ? `\n    (on ${[...new Set(places)].join(', ')})` : ''}`);
	}

	const notes = rows.flatMap(row => certificateNotes(row, report.warnDays));
	for (const unread of report.unread) {
		notes.push(`FAIL ${unread.host}: could not be read: ${unread.message}${unread.fix ? `\n     fix: ${unread.fix}` : ''}`);
	}

	return notes.length > 0 ? [...lines, '', ...new Set(notes)] : lines;
}

function certificateNotes(row: CertificateRow, warnDays: number): string[] {
	const where = `${row.name} (${row.file} on ${row.where})`;
	const notes: string[] = [];
	if (row.expiry === 'expired' || row.expiry === 'renew') {
		const when = row.expiry === 'expired' ? `expired on ${row.notAfter!.slice(0, 10)}` : `ends in ${row.daysLeft} days (certificates.warnDays: ${warnDays})`;
		notes.push(row.name === 'ca'
			? `FAIL ${where} ${when}: replace the CA (README: Certificates, replacing the CA)`
			: `FAIL ${where} ${when}: k8s-master-install certs renew ${row.name}`);
	} else if (row.expiry === 'plan') {
		notes.push(`WARN ${where} ends on ${row.notAfter!.slice(0, 10)} (${row.daysLeft} days): plan its replacement (README: Certificates, replacing the CA)`);
	}

	switch (row.written) {
		case 'differs': {
			notes.push(`WARN ${where} is not what this install wrote: apply puts this install's back (it asks first), or keep yours on purpose`);
			break;
		}

		case 'older': {
			notes.push(`WARN ${where} is an earlier one of this install's: apply places the current one`);
			break;
		}

		case 'missing':
		case 'unreadable': {
			notes.push(`FAIL ${where} is ${row.written}: apply puts it back`);
			break;
		}

		default: {
			break;
		}
	}

	return notes;
}

/** What `certs renew` is about to do: which certificates, with which keys and lifetime, and what restarts where. */
export function formatRenewPreview(plan: PlanView, renew: {leaves: LeafName[]; newKeys: boolean; validityDays: number; lifetimes: Map<LeafName, number>; adminKubeconfig: string}): string[] {
	const lines = [`Re-issue ${renew.leaves.join(', ')} with ${renew.newKeys ? 'new keys' : 'the same keys'}, each valid ${renew.validityDays} days (certificates.validityDays)`];
	for (const leaf of renew.leaves) {
		const before = renew.lifetimes.get(leaf);
		if (before !== undefined && before > renew.validityDays) {
			lines.push(`  note: ${leaf} is valid ${before} days now; renewed it is valid ${renew.validityDays} (certificates.validityDays is shorter): raise the setting to keep ${before}`);
		}
	}

	const reissued = plan.materialChanges.filter(change => change.action === 'reissued' || change.action === 'issued').map(change => change.item);
	lines.push(`  certificates issued: ${reissued.length > 0 ? reissued.join(', ') : 'none'}`);
	if (renew.leaves.includes('admin')) {
		lines.push(`  admin kubeconfig rewritten: ${renew.adminKubeconfig} (admin is used from this workstation only: nothing restarts for it)`);
	}

	if (!plan.changes?.read) {
		lines.push('  restarts: not known (the masters hold no install of this cluster yet)');
		return lines;
	}

	lines.push(`  restarts (${plan.changes.restartOrder}):`);
	for (const host of plan.changes.hosts) {
		const restarts = host.services.filter(service => service.action === 'restart').map(service => service.name);
		lines.push(host.unread ? `    ${host.host}: not read: ${host.unread}` : `    ${host.host}: ${restarts.length > 0 ? restarts.join(', ') : 'nothing'}`);
	}

	return lines;
}
