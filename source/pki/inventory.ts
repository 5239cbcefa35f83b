import {existsSync, statSync} from 'node:fs';
import type {ResolvedConfig} from '../config/load.js';
import {InputError} from '../errors.js';
import {readLocalText} from '../safe-read.js';
import type {Workspace} from '../workspace.js';
import {readCertificate} from './certs.js';
import {leafNames, type LeafName} from './material.js';

/**
 * Every certificate this install manages, where it is (the workstation, each master), and how long
 * it lasts: what `certs` prints, and what renew may re-issue. Pure: the reads happen elsewhere.
 */
export type CertificateName = 'ca' | LeafName | 'service-account key';

/** The CA is not renewed by this tool: its end is announced this long ahead, time to plan a replacement. */
export const caWarnDays = 365;

const dayMs = 24 * 60 * 60 * 1000;

/**
 * ok; plan: the CA ends within a year (a warning, exit 0); renew: ends within certificates.warnDays
 * (exit 1, for cron); expired.
 */
export type ExpiryLevel = 'ok' | 'plan' | 'renew' | 'expired';

/**
 * What a master holds against what this install wrote there: current (the file apply would write now),
 * older (an earlier one of this install's: apply places the current one), differs (not written by
 * this install), missing, unreadable (not a certificate).
 */
export type WrittenStatus = 'current' | 'older' | 'differs' | 'missing' | 'unreadable';

export type CertificateRow = {
	name: CertificateName;
	/** 'workstation' or a master's name. */
	where: string;
	file: string;
	subject?: string;
	issuer?: string;
	sans?: string[];
	notBefore?: string;
	notAfter?: string;
	daysLeft?: number;
	/** The service-account key: days since its file was written. */
	ageDays?: number;
	expiry?: ExpiryLevel;
	/** Masters only; the workstation's copies are the source. */
	written?: WrittenStatus;
};

/** A master that could not be read, and why. */
export type UnreadMaster = {host: string; message: string; fix?: string};

export type CertificatesReport = {warnDays: number; caWarnDays: number; rows: CertificateRow[]; unread: UnreadMaster[]};

export function daysLeft(notAfter: Date, now: Date): number {
	return Math.floor((notAfter.getTime() - now.getTime()) / dayMs);
}

export function expiryLevel(name: CertificateName, days: number, warnDays: number): ExpiryLevel {
	if (days < 0) {
		return 'expired';
	}

	if (days < warnDays) {
		return 'renew';
	}

	return name === 'ca' && days < caWarnDays ? 'plan' : 'ok';
}

/** The row of one certificate's PEM text; an unreadable one says so. */
export function certificateRow(base: Pick<CertificateRow, 'name' | 'where' | 'file' | 'written'>, pem: string, now: Date, warnDays: number): CertificateRow {
	let facts;
	try {
		facts = readCertificate(pem);
	} catch {
		return {...base, written: base.written === undefined ? undefined : 'unreadable'};
	}

	const days = daysLeft(facts.notAfter, now);
	return {
		...base,
		subject: facts.subject,
		issuer: facts.issuer,
		sans: [...facts.dnsSans, ...facts.ipSans],
		notBefore: facts.notBefore.toISOString(),
		notAfter: facts.notAfter.toISOString(),
		daysLeft: days,
		expiry: expiryLevel(base.name, days, warnDays),
	};
}

/** What a master's file is to this install: the one it writes now, an earlier one of its own, or foreign. */
export function writtenStatus(readSha256: string, currentSha256: string | undefined, writtenHashes: ReadonlySet<string>): WrittenStatus {
	if (readSha256 === currentSha256) {
		return 'current';
	}

	return writtenHashes.has(readSha256) ? 'older' : 'differs';
}

/** Exit 1 for cron: a certificate to renew (or expired), one missing or unreadable on a master, or a master not read. */
export function certificatesExitCode(report: Pick<CertificatesReport, 'rows' | 'unread'>): number {
	const failing = report.rows.some(row => row.expiry === 'renew' || row.expiry === 'expired' || row.written === 'missing' || row.written === 'unreadable');
	return failing || report.unread.length > 0 ? 1 : 0;
}

/** The workstation's copies: the CA (made here or imported), every leaf, the service-account key's age. */
export async function workstationRows(config: ResolvedConfig, workspace: Workspace, now: Date): Promise<CertificateRow[]> {
	const files: Array<[CertificateName, string, string]> = [
		['ca', config.ca?.certFile ?? workspace.pki('ca.pem'), config.ca ? 'ca.certFile' : '--state-dir'],
		...leafNames.map((name): [CertificateName, string, string] => [name, workspace.pki(`${name}.pem`), '--state-dir']),
	];
	const rows = await Promise.all(files.filter(([, file]) => existsSync(file)).map(async ([name, file, field]) => certificateRow(
		{name, where: 'workstation', file},
		await readLocalText(file, {field, kind: 'pem', fix: 'restore the certificate from your backup'}),
		now,
		config.certificates.warnDays,
	)));
	const serviceAccountKey = workspace.pki('sa.key');
	if (config.serviceAccount.signingKey === 'dedicated' && existsSync(serviceAccountKey)) {
		rows.push({name: 'service-account key', where: 'workstation', file: serviceAccountKey, ageDays: Math.floor((now.getTime() - statSync(serviceAccountKey).mtimeMs) / dayMs)});
	}

	return rows;
}

/** Names an operator may give renew, besides the files' own: the component that reads each. */
const renewAliases: Record<string, LeafName> = {
	apiserver: 'kubernetes',
	'kube-apiserver': 'kubernetes',
	'controller-manager': 'kube-controller-manager',
	scheduler: 'kube-scheduler',
};

export const renewNames: readonly string[] = [...leafNames, ...Object.keys(renewAliases), 'all'];

/** The leaves `certs renew NAME…` re-issues; every leaf when none or `all` is named. A name of no leaf is refused with the valid ones. */
export function renewTargets(names: readonly string[]): LeafName[] {
	const words = names.flatMap(name => name.split(',')).filter(Boolean);
	const unknown = words.filter(word => !renewNames.includes(word));
	if (unknown.length > 0) {
		const ca = unknown.includes('ca') ? ' (the CA is not renewed by this tool: see the README, Certificates)' : '';
		throw new InputError('certs renew NAME', unknown.join(','), `names no certificate this install renews${ca}`, `use ${leafNames.join(', ')} (or apiserver, controller-manager, scheduler), or all`);
	}

	if (words.length === 0 || words.includes('all')) {
		return [...leafNames];
	}

	const chosen = new Set(words.map(word => renewAliases[word] ?? word as LeafName));
	return leafNames.filter(name => chosen.has(name));
}
