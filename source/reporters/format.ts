import type {PlanView} from '../engine/engine.js';
import type {EngineEvent, FailureInfo} from '../engine/events.js';
import type {CisResult} from '../steps/cis.js';
import {daysLeft, expiryLevel} from '../pki/inventory.js';
import {stepKey, type InstallState} from '../state/store.js';
import {operations} from '../operations/index.js';
import {formatChanges} from './diff-format.js';

export function formatBytes(bytes: number): string {
	if (bytes < 1024) {
		return `${bytes} B`;
	}

	const units = ['KiB', 'MiB', 'GiB'];
	let value = bytes / 1024;
	let unit = 0;
	while (value >= 1024 && unit < units.length - 1) {
		value /= 1024;
		unit++;
	}

	return `${value.toFixed(1)} ${units[unit]}`;
}

export function formatDuration(ms: number): string {
	return ms < 1000 ? `${ms} ms` : ms < 60_000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.floor(ms / 60_000)} min ${Math.round((ms % 60_000) / 1000)} s`;
}

/** The dry run as text: per step, per host, the commands and the files with their hashes. */
export function formatPlan(plan: PlanView): string {
	const lines = [
		`${plan.run.title}: plan for cluster ${plan.cluster}, Kubernetes ${plan.version} (state: ${plan.stateFile})`,
		'Each "write" runs: ssh HOST sh -c \'set -e; umask 077; mkdir -p DIR; cat > FILE.k8smi-new; chown root:root FILE.k8smi-new; chmod MODE FILE.k8smi-new; mv -f FILE.k8smi-new FILE\' with the content on standard input, and only when the file on the host differs.',
	];
	const made = plan.materialChanges.filter(change => change.action !== 'kept' && change.action !== 'imported');
	if (made.length > 0) {
		lines.push(`Key material made at apply (not yet written; hashes below will differ for these): ${made.map(change => `${change.item} ${change.action}${change.reason ? ` (${change.reason})` : ''}`).join(', ')}`);
	}

	if (plan.masters) {
		lines.push('', 'Masters that join or leave:', ...plan.masters.map(line => `  ${line}`));
	}

	if (plan.changes) {
		lines.push('', ...formatChanges(plan.changes), '', 'Every step, as apply runs it:');
	}

	for (const [index, step] of plan.steps.entries()) {
		lines.push('', `${index + 1}. ${step.title} [${step.id}]`);
		for (const host of step.hosts) {
			const recorded = host.recorded ? ` (recorded ${host.recorded}${host.inputsChanged ? '; inputs changed: runs again' : '; verified on the host before skipping'})` : '';
			lines.push(`   ${host.host}${recorded}`);
			for (const action of host.actions) {
				switch (action.kind) {
					case 'upload': {
						lines.push(`     write ${action.path}  mode ${action.mode}  ${formatBytes(action.bytes)}  sha256 ${action.sha256.slice(0, 16)}${action.secret ? '  (secret: content not shown)' : ''}`);
						break;
					}

					case 'remote': {
						lines.push(`     ssh: ${action.command}`);
						break;
					}

					case 'local': {
						lines.push(`     local: ${action.command}`);
						break;
					}

					case 'check': {
						lines.push(`     ${action.description}`);
						break;
					}
				}
			}
		}
	}

	return lines.join('\n');
}

export type CertificateExpiry = {name: string; notAfter: Date};

/** The saved progress as text, with the expiry of the certificates this install made. */
export function formatStatus(state: InstallState, stateFile: string, certificates: CertificateExpiry[] = [], now = new Date(), warnDays = 30): string {
	const lines = [`Cluster ${state.cluster}${state.version ? `, Kubernetes ${state.version}` : ''} (state: ${stateFile})`];
	if (state.run) {
		const where = state.run.step ? ` at ${state.run.step}${state.run.host ? ` on ${state.run.host}` : ''}` : '';
		lines.push(`Last ${operations.get(state.run.operation)?.command ?? state.run.operation}: ${state.run.status}${where}, started ${state.run.startedAt}, updated ${state.run.updatedAt}${state.run.error ? `\n  ${state.run.error}` : ''}`);
	} else {
		lines.push('No apply has run yet.');
	}

	if (state.material) {
		const [write, ...read] = state.material.encryptionKeys;
		// While a rotation holds more than one key, which one encrypts matters: the first.
		const keys = read.length > 0 ? ` (${write?.name} writes; ${read.length + 1} keys: ${state.material.encryptionKeys.map(key => key.name).join(', ')})` : '';
		lines.push(`CA sha256 ${state.material.caCertSha256.slice(0, 16)}…, encryption key sha256 ${write?.sha256.slice(0, 16)}…${keys}`);
	}

	const rotation = state.encryptionRotation;
	if (rotation) {
		const count = rotation.count ? `; secrets in etcd at ${rotation.count.at}: ${Object.entries(rotation.count.byKey).map(([key, each]) => `${each} under ${key}`).join(', ') || 'none'}` : '';
		const old = rotation.from.map(key => key.name).join(', ');
		const kept = rotation.phase === 'done' ? (rotation.oldKeysRemovedAt ? `; ${old} removed ${rotation.oldKeysRemovedAt}` : `; ${old} kept in the state folder (rotate-encryption-key --remove-old-key deletes it)`) : '';
		const rewrite = rotation.phase === 'rewrite' && rotation.rewrite ? `, ${rotation.rewrite.rewritten} secret(s) written back` : '';
		lines.push(`Encryption-key rotation ${old} → ${rotation.to.name}: ${rotation.phase === 'done' ? `done ${rotation.finishedAt ?? ''}`.trim() : `at the ${rotation.phase} phase${rewrite}`}, started ${rotation.startedAt}${count}${kept}`);
	}

	// An operation's steps are listed once it recorded progress (the install's always).
	const recorded = [...operations.values()].filter(operation => operation.mode === 'recorded' && (operation.id === 'install' || Object.keys(state.steps).some(key => key.startsWith(`${operation.id}/`))));
	// Named as its operation names it while only one operation keeps progress.
	const steps = recorded.flatMap(operation => operation.steps.map(each => ({key: stepKey(operation.id, each.id), name: recorded.length > 1 ? stepKey(operation.id, each.id) : each.id})));
	const width = Math.max(...steps.map(step => step.name.length));
	for (const {key, name} of steps) {
		const entries = Object.entries(state.steps[key]?.hosts ?? {});
		lines.push(`  ${name.padEnd(width)} ${entries.length === 0 ? 'pending' : entries.map(([host, record]) => `${host}: ${record.status}${record.error ? ` (${record.error})` : ''}`).join(', ')}`);
	}

	for (const {name, notAfter} of certificates) {
		const days = daysLeft(notAfter, now);
		const level = expiryLevel(name === 'ca' ? 'ca' : 'kubernetes', days, warnDays);
		const warning = level === 'ok' ? ''
			: name === 'ca' ? `  ${level === 'expired' ? 'EXPIRED' : 'ends within a year'}: plan the CA's replacement (README: Certificates)`
			: `  ${level === 'expired' ? 'EXPIRED' : 'expires soon'}: run certs renew ${name}`;
		lines.push(`  certificate ${name.padEnd(13)} valid until ${notAfter.toISOString().slice(0, 10)} (${days} days)${warning}`);
	}

	return lines.join('\n');
}

export type CheckRow = {host: string; check: string; level: 'pass' | 'warn' | 'fail'; detail: string; fix?: string};

/** Checks × masters, then every warning and failure with its fix. */
/** details: also the passing checks' findings (verify: leaders, expiry), not only failures. */
export function formatCheckGrid(rows: CheckRow[], options: {details?: boolean} = {}): string[] {
	// Columns in name order (k8smaster01, 02, ...), not in the order the masters happened to answer.
	const hosts = [...new Set(rows.map(row => row.host))].sort((a, b) => a.localeCompare(b, 'en', {numeric: true}));
	const checks = [...new Set(rows.map(row => row.check))];
	const width = Math.max(5, ...checks.map(check => check.length)) + 2;
	const column = Math.max(6, ...hosts.map(host => host.length)) + 2;
	const mark = {pass: 'ok', warn: 'WARN', fail: 'FAIL'} as const;
	const lines = [`${'check'.padEnd(width)}${hosts.map(host => host.padEnd(column)).join('')}`.trimEnd()];
	for (const check of checks) {
		const cells = hosts.map(host => {
			const row = rows.find(each => each.host === host && each.check === check);
			return (row ? mark[row.level] : '-').padEnd(column);
		});
		lines.push(`${check.padEnd(width)}${cells.join('')}`.trimEnd());
	}

	for (const row of rows.filter(each => each.level !== 'pass' || options.details)) {
		lines.push(`${mark[row.level]} ${row.host} ${row.check}: ${row.detail}${row.fix ? `\n     fix: ${row.fix}` : ''}`);
	}

	return lines;
}

/**
 * The CIS benchmark per master: one row per check id, PASS / FAIL / SKIP per master; then, once per
 * check, what was read (identical on every master, or per master), and every skip's reason.
 */
export function formatCisGrid(results: Map<string, CisResult[] | FailureInfo>): string[] {
	const hosts = [...results.keys()].sort((a, b) => a.localeCompare(b, 'en', {numeric: true}));
	const reference = [...results.values()].find((value): value is CisResult[] => Array.isArray(value)) ?? [];
	const width = Math.max(...reference.map(result => `${result.id}  ${result.text}`.length), 5) + 2;
	const column = Math.max(6, ...hosts.map(host => host.length)) + 2;
	const mark = {pass: 'PASS', fail: 'FAIL', skip: 'SKIP'} as const;
	const lines = [`${'check'.padEnd(width)}${hosts.map(host => host.padEnd(column)).join('')}`.trimEnd()];
	const cell = (host: string, id: string) => {
		const value = results.get(host);
		return Array.isArray(value) ? value.find(result => result.id === id) : undefined;
	};

	for (const check of reference) {
		lines.push(`${`${check.id}  ${check.text}`.padEnd(width)}${hosts.map(host => (cell(host, check.id) ? mark[cell(host, check.id)!.level] : '-').padEnd(column)).join('')}`.trimEnd());
	}

	for (const check of reference.filter(each => hosts.some(host => cell(host, each.id)?.level !== 'pass'))) {
		const found = hosts.map(host => cell(host, check.id));
		// The same finding on every master is said once.
		const same = new Set(found.map(result => `${result?.level} ${result?.detail}`)).size === 1;
		for (const [index, result] of (same ? found.slice(0, 1) : found).entries()) {
			lines.push(`${mark[result?.level ?? 'fail']} ${check.id} ${same ? 'every master' : hosts[index]}: ${result?.detail ?? '-'}`);
		}
	}

	for (const host of hosts) {
		const value = results.get(host);
		if (value && !Array.isArray(value)) {
			lines.push(`FAIL ${host}: could not be read: ${value.message}${value.fix ? `\n     fix: ${value.fix}` : ''}`);
		}
	}

	return lines;
}

/** Where the admin kubeconfig was written, and how kubectl reaches the cluster through it when a master is down. */
export function formatAdminKubeconfig(event: Extract<EngineEvent, {type: 'admin-kubeconfig'}>): string {
	if (event.endpoint) {
		return `kubectl: ${event.file} reaches the apiservers through controlPlaneEndpoint ${event.endpoint}`;
	}

	const [first, second] = event.contexts;
	const failover = second ? `; while ${first!.context} is down: kubectl --kubeconfig ${event.file} --context ${second.context}` : '';
	return `kubectl: ${event.file} has one context per master (${event.contexts.map(each => each.context).join(', ')}), ${first!.context} current${failover}. controlPlaneEndpoint (a virtual IP or a load balancer) gives one address that survives any master`;
}
