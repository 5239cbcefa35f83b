import path from 'node:path';
import {apply, type Flags, type Output} from './commands.js';
import {loadConfig, type ResolvedConfig} from './config/load.js';
import type {Engine} from './engine/engine.js';
import {InputError} from './errors.js';
import {readCertificate} from './pki/certs.js';
import {caWarnDays, certificatesExitCode, renewTargets, workstationRows, type CertificatesReport} from './pki/inventory.js';
import type {LeafName} from './pki/material.js';
import {formatCertificates, formatRenewPreview} from './reporters/certs-format.js';
import {readLocalText} from './safe-read.js';
import {defaultStateDir, StateStore} from './state/store.js';
import {Workspace} from './workspace.js';

/** How commands.ts makes its engine: the same for every command. */
export type MakeEngine = (config: ResolvedConfig, flags: Flags, output: Output, runnerOptions?: {logFile?: string}) => Engine;

/** `certs` (the table) and `certs renew [NAME…|all]`. */
export async function certsCommand(flags: Flags, output: Output, makeEngine: MakeEngine): Promise<number> {
	const [subcommand, ...names] = flags.args ?? [];
	if (subcommand === undefined) {
		return certificatesTable(flags, output, makeEngine);
	}

	if (subcommand === 'renew') {
		return renew(flags, output, makeEngine, names);
	}

	throw new InputError('certs', subcommand, 'is not a certs command', 'run `certs` for the table, or `certs renew NAME|all`');
}

/** The install this state folder records, or bad input naming the folder. */
async function installed(flags: Flags): Promise<{config: ResolvedConfig; workspace: Workspace}> {
	const config = await loadConfig(flags.config);
	const workspace = new Workspace(flags.stateDir ?? defaultStateDir(), config.name);
	if (!new StateStore(workspace.root, config.name).snapshot.material) {
		throw new InputError('--state-dir', workspace.root, 'holds no install of this cluster (no key material is recorded as shipped)', 'run apply first, or pass the --state-dir and --config of the install');
	}

	return {config, workspace};
}

/** The report of every certificate: the workstation's copies, and each master's as read there. */
export async function certificatesReport(engine: Engine, config: ResolvedConfig, workspace: Workspace, now = new Date()): Promise<CertificatesReport> {
	const [local, read] = await Promise.all([workstationRows(config, workspace, now), engine.certificates()]);
	const report: CertificatesReport = {warnDays: config.certificates.warnDays, caWarnDays, rows: local, unread: []};
	for (const [host, value] of read) {
		if (Array.isArray(value)) {
			report.rows.push(...value);
		} else {
			report.unread.push({host, message: value.message, fix: value.fix});
		}
	}

	return report;
}

async function certificatesTable(flags: Flags, output: Output, makeEngine: MakeEngine): Promise<number> {
	const {config, workspace} = await installed(flags);
	const report = await certificatesReport(makeEngine(config, flags, output), config, workspace);
	output.out(flags.json ? JSON.stringify(report, null, 2) : formatCertificates(report).join('\n'));
	return certificatesExitCode(report);
}

/**
 * The install run with "re-issue these leaves" as its material change: certs places them, start
 * restarts what reads a changed file (one master at a time on a running cluster), the admin
 * kubeconfig is written again. The preview says what is issued and what restarts, before the question.
 */
async function renew(flags: Flags, output: Output, makeEngine: MakeEngine, names: string[]): Promise<number> {
	if (flags.rotate && flags.rotate.length > 0) {
		throw new InputError('--rotate', flags.rotate.join(','), 'is for apply; certs renew takes the names itself', 'run `certs renew NAME…` without --rotate');
	}

	const leaves = renewTargets(names);
	const {config, workspace} = await installed(flags);
	const lifetimes = new Map<LeafName, number>();
	for (const leaf of leaves) {
		const facts = readCertificate(await readLocalText(workspace.pki(`${leaf}.pem`), {field: '--state-dir', kind: 'pem', fix: 'restore the certificate from your backup of the state folder'}));
		lifetimes.set(leaf, Math.round((facts.notAfter.getTime() - facts.notBefore.getTime()) / 86_400_000));
	}

	const logFile = path.join(workspace.logsDir, `certs-renew-${new Date().toISOString().replaceAll(/[:.]/g, '-')}.jsonl`);
	const engine = makeEngine(config, {...flags, rotate: leaves}, output, {logFile});
	const plan = await engine.plan();
	const preview = formatRenewPreview(plan, {leaves, newKeys: flags.newKeys === true, validityDays: config.certificates.validityDays, lifetimes, adminKubeconfig: path.join(workspace.renderedDir, 'admin.kubeconfig')});
	if (flags.json) {
		output.out(JSON.stringify({type: 'renew-plan', leaves, newKeys: flags.newKeys === true, materialChanges: plan.materialChanges, changes: plan.changes}));
	} else {
		output.out(preview.join('\n'));
	}

	return apply(flags, output, {engine, logFile});
}
