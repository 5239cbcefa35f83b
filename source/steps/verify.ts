import {randomBytes} from 'node:crypto';
import YAML from 'yaml';
import {apiserverPort, type Endpoint} from '../config/network.js';
import type {Master} from '../config/schema.js';
import {ChecksFailed} from '../errors.js';
import {sha256} from '../files.js';
import {readCertificate} from '../pki/certs.js';
import {caWarnDays, daysLeft} from '../pki/inventory.js';
import {leafNames} from '../pki/material.js';
import {shellQuote, shellWords} from '../remote/quote.js';
import {sectionsScript, splitSections} from '../remote/sections.js';
import {leaderLockKind, livenessPath, readinessPath} from '../versions.js';
import {cisFactsScript, cisSummary, evaluateCis, parseCisFacts} from './cis.js';
import {apiserver, etcdctlScript} from './clients.js';
import {firstMaster, type CheckResult} from './preflight.js';
import {countSecretValues, describeCount} from './secret-count.js';
import {adminTls, readinessAnd, services, type Readiness, type ServiceName} from './readiness.js';
import type {PlannedAction, StepContext, StepDefinition, StepId} from './types.js';

const dayMs = 24 * 60 * 60 * 1000;

async function endpointCheck(context: StepContext, master: Master, check: string, unit: string, port: number, pathName: string): Promise<CheckResult> {
	const answer = await context.probe(master.ip, port, pathName, adminTls(context));
	if (answer.ok) {
		const passed = answer.body.split('\n').filter(line => line.startsWith('[+]')).length;
		return {check, level: 'pass', detail: passed > 0 ? `ok (${passed} checks passed)` : 'ok'};
	}

	const failed = answer.body.split('\n').filter(line => line.startsWith('[-]')).join('; ');
	return {check, level: 'fail', detail: `${answer.error ?? `HTTP ${answer.status}`}${failed ? `: ${failed}` : ''}`, fix: `journalctl -u ${unit} on ${master.name}`};
}

/** The CIS benchmark's checks in one line; `k8s-master-install cis` shows each. A failure warns: extra flags may be a choice. */
function benchmarkCheck(context: StepContext, output: string): CheckResult {
	const {failed, text} = cisSummary(evaluateCis(parseCisFacts(output), context));
	return failed.length === 0
		? {check: 'CIS benchmark', level: 'pass', detail: text}
		: {check: 'CIS benchmark', level: 'warn', detail: text, fix: context.config.profile === 'cis' ? 'k8s-master-install cis names each check and what it read; an extra flag or a changed file is the likely cause' : 'profile: tutorial keeps the tutorial\'s settings; profile: cis (the default) meets the benchmark'};
}

type MasterRead = {ports: string; certificates: string; benchmark: string};

/**
 * What the checks read on the master beyond readiness, each part a section: listening ports, the
 * installed certificates and the CIS facts. A start step's check reads them too, so that a run that
 * restarts nothing needs no round trip of its own here.
 */
export const verifyReadParts = (context: StepContext) => ({ports: 'ss -Hltn', certificates: certificatesScript(context), benchmark: cisFactsScript(context)});

export const verifyReadDisplay = 'read listening ports, the installed certificates, the components\' command lines, file modes and owners';

/** The sections of verifyReadParts, if `output` has them all. */
function masterRead(output: string): MasterRead | undefined {
	const found = splitSections(output);
	const [ports, certificates, benchmark] = [found.get('ports'), found.get('certificates'), found.get('benchmark')];
	return ports === undefined || certificates === undefined || benchmark === undefined ? undefined : {ports, certificates, benchmark};
}

/**
 * What the checks read on the master, in one round trip: verifyReadParts, and the readiness of kube-nginx,
 * the controller-manager and the scheduler; none when a start step's check of this run read all of
 * that already and nothing restarted since.
 */
async function readMaster(context: StepContext, master: Master): Promise<{read: MasterRead; local: CheckResult[]}> {
	const names: ServiceName[] = ['kube-nginx', 'kube-controller-manager', 'kube-scheduler'];
	const pathName = `${readinessPath(context.config.kubeVersion)}?verbose`;
	const seen = context.servicesSeen.reuse(master.name, names, pathName);
	const seenRead = seen && masterRead(seen.also);
	if (seen && seenRead) {
		return {read: seenRead, local: localChecks(context, master, seen.readiness, pathName)};
	}

	const also = {script: sectionsScript(verifyReadParts(context)), display: verifyReadDisplay};
	let output: string;
	let readiness: Map<ServiceName, Readiness>;
	if (seen) {
		const options = {step: 'verify', display: also.display};
		const result = await context.remote.run(master, also.script, options);
		if (result.exitCode === 255) {
			throw context.remote.failure(master, also.script, options, result);
		}

		[output, readiness] = [result.stdout, seen.readiness];
	} else {
		({also: output, readiness} = await readinessAnd(context, master, names, 'verify', pathName, also));
	}

	return {read: masterRead(output) ?? {ports: '', certificates: '', benchmark: ''}, local: localChecks(context, master, readiness, pathName)};
}

/** kube-nginx (readiness through it), the controller-manager and the scheduler, as read on the master. */
function localChecks(context: StepContext, master: Master, answers: Map<ServiceName, Readiness>, pathName: string): CheckResult[] {
	const proxy = answers.get('kube-nginx')!;
	const component = (check: string, name: 'kube-controller-manager' | 'kube-scheduler'): CheckResult => {
		const answer = answers.get(name)!;
		return answer.ok ? {check, level: 'pass', detail: 'ok'} : {check, level: 'fail', detail: answer.detail, fix: `journalctl -u ${name} on ${master.name}`};
	};

	return [
		proxy.ok
			? {check: 'via kube-nginx', level: 'pass', detail: `127.0.0.1:8443${pathName}: ${proxy.detail}`}
			: {check: 'via kube-nginx', level: 'fail', detail: `127.0.0.1:8443${pathName}: ${proxy.detail}`, fix: `systemctl status kube-nginx on ${master.name}; its config is ${context.config.paths.nginxDir}/conf/kube-nginx.conf`},
		component('controller-manager healthy', 'kube-controller-manager'),
		component('scheduler healthy', 'kube-scheduler'),
	];
}

const installedCertificates = (context: StepContext) => context.artifacts.filter(artifact => artifact.remote?.step === 'certs' && !artifact.secret && artifact.content.includes('BEGIN CERTIFICATE'));

function certificatesScript(context: StepContext): string {
	return `for f in ${shellWords(installedCertificates(context).map(artifact => artifact.remote!.path))}; do echo "==> $f"; cat -- "$f" 2>/dev/null || echo missing; done`;
}

/** The installed certificates as read back from the master: present, ours, and how long they last. */
function certificateCheck(context: StepContext, output: string): CheckResult {
	const ours = installedCertificates(context);
	const installed = new Map<string, string>();
	for (const block of output.split('==> ').slice(1)) {
		const newline = block.indexOf('\n');
		installed.set(block.slice(0, newline), block.slice(newline + 1));
	}

	const now = Date.now();
	const problems: string[] = [];
	const notes: string[] = [];
	let soonest: {name: string; notAfter: Date} | undefined;
	for (const artifact of ours) {
		const text = installed.get(artifact.remote!.path) ?? '';
		let notAfter: Date;
		try {
			notAfter = readCertificate(text).notAfter;
		} catch {
			problems.push(`${artifact.name} is missing or unreadable`);
			continue;
		}

		if (sha256(text) !== sha256(artifact.content)) {
			notes.push(`${artifact.name} differs from the one this install made`);
		}

		if (notAfter.getTime() <= now) {
			problems.push(`${artifact.name} expired on ${notAfter.toISOString().slice(0, 10)}`);
		} else if (!soonest || notAfter < soonest.notAfter) {
			soonest = {name: artifact.name, notAfter};
		}
	}

	if (problems.length > 0) {
		return {check: 'certificates', level: 'fail', detail: problems.join('; '), fix: 'run apply again to put the certificates in place (k8s-master-install certs renew NAME re-issues one)'};
	}

	const days = soonest ? Math.floor((soonest.notAfter.getTime() - now) / dayMs) : 0;
	const detail = `${ours.length} certificates; first to expire: ${soonest?.name ?? '-'} on ${soonest?.notAfter.toISOString().slice(0, 10) ?? '-'} (${days} days)${notes.length > 0 ? `; ${notes.join('; ')}` : ''}`;
	const warnDays = context.config.certificates.warnDays;
	if (days < warnDays || notes.length > 0) {
		return {check: 'certificates', level: 'warn', detail, fix: days < warnDays ? renewal(soonest!.name) : 'run apply to put back the certificates this install made, or keep yours on purpose'};
	}

	return {check: 'certificates', level: 'pass', detail};
}

function renewal(file: string): string {
	const leaf = file.replace(/\.pem$/, '');
	if ((leafNames as readonly string[]).includes(leaf)) {
		return `renew it: k8s-master-install certs renew ${leaf}`;
	}

	return file === 'ca.pem' ? 'renew the CA (ca.certFile/ca.keyFile) and apply; every certificate is then issued again' : `renew ${file} where it comes from (etcd.certFile / etcd.caFile) and apply`;
}

/**
 * The CA's own end, as the master holds it: this tool does not renew the CA, so its end is announced
 * a year ahead (a warning: the replacement takes planning, README: Certificates). Unreadable, the
 * certificates check says so already.
 */
export function caExpiryCheck(output: string, now = new Date()): CheckResult | undefined {
	const block = output.split('==> ').slice(1).find(each => each.slice(0, each.indexOf('\n')).endsWith('/ca.pem'));
	let notAfter: Date;
	try {
		notAfter = readCertificate(block?.slice(block.indexOf('\n') + 1) ?? '').notAfter;
	} catch {
		return undefined;
	}

	const days = daysLeft(notAfter, now);
	const detail = `the CA ends on ${notAfter.toISOString().slice(0, 10)} (${days} days)`;
	return days < caWarnDays
		? {check: 'CA expiry', level: 'warn', detail, fix: 'replace the CA before then: every certificate is issued again from the new one (README: Certificates, replacing the CA)'}
		: {check: 'CA expiry', level: 'pass', detail};
}

/** The plain-HTTP ports of old releases (scheduler 10251, controller-manager 10252) serve /metrics and pprof unauthenticated. */
function insecurePortsCheck(output: string): CheckResult {
	const open = output.split('\n').map(line => line.trim().split(/\s+/)[3] ?? '').filter(address => /:(10251|10252)$/.test(address) && !/^(127\.0\.0\.1|\[::1\]):/.test(address));
	return open.length === 0
		? {check: 'no insecure ports', level: 'pass', detail: 'nothing listens on 10251/10252 beyond loopback'}
		: {check: 'no insecure ports', level: 'fail', detail: `plain HTTP on ${open.join(', ')}`, fix: 'bind the insecure port to 127.0.0.1 or turn it off (--port=0; before 1.22 the scheduler\'s healthzBindAddress/metricsBindAddress in its --config)'};
}

async function rbacCheck(context: StepContext, master: Master): Promise<CheckResult> {
	// What `kubectl auth can-i --as kubernetes get nodes --subresource=proxy` asks (`get nodes/proxy` would ask about a node named "proxy").
	const answer = await apiserver(context, master, 'verify', {
		method: 'POST',
		path: '/apis/authorization.k8s.io/v1/selfsubjectaccessreviews',
		headers: {'Impersonate-User': 'kubernetes'},
		body: {apiVersion: 'authorization.k8s.io/v1', kind: 'SelfSubjectAccessReview', spec: {resourceAttributes: {verb: 'get', resource: 'nodes', subresource: 'proxy'}}},
	});
	const status = answer.object?.status as {allowed?: boolean; reason?: string} | undefined;
	return answer.ok && status?.allowed === true
		? {check: 'kubernetes may use nodes/proxy', level: 'pass', detail: 'can-i --as kubernetes get nodes --subresource=proxy: yes'}
		: {check: 'kubernetes may use nodes/proxy', level: 'fail', detail: answer.ok ? `can-i --as kubernetes get nodes --subresource=proxy: no${status?.reason ? ` (${status.reason})` : ''}` : answer.problem, fix: 'run apply again: its rbac step makes the binding kube-apiserver:kubelet-apis'};
}

/** What a secret's raw value in etcd starts with under the rendered encryption config: its first provider and key. */
export function expectedSecretPrefix(context: StepContext): string | undefined {
	const config = context.artifacts.find(artifact => artifact.remote?.step === 'encryption');
	const parsed = YAML.parse(config?.content ?? '') as {resources?: Array<{resources?: string[]; providers?: Array<Record<string, {keys?: Array<{name?: string}>}>>}>} | null;
	const first = parsed?.resources?.find(entry => entry.resources?.includes('secrets'))?.providers?.[0];
	const [provider, settings] = Object.entries(first ?? {})[0] ?? [];
	return provider && provider !== 'identity' && settings?.keys?.[0]?.name ? `k8s:enc:${provider}:v1:${settings.keys[0].name}:` : undefined;
}

/** Which key each secret's raw value in etcd is under: all under the write key, or a rotation is left to finish. */
async function keyCountCheck(context: StepContext, master: Master): Promise<CheckResult> {
	const check = 'secrets per encryption key';
	const write = /^k8s:enc:aescbc:v1:([^:]+):$/.exec(expectedSecretPrefix(context) ?? '')?.[1];
	let count;
	try {
		count = await countSecretValues(context, master, 'verify-cluster');
	} catch (error) {
		return {check, level: 'fail', detail: `etcdctl could not read /registry/secrets/: ${(error instanceof Error ? error.message : String(error)).split('\n')[0]}`, fix: 'check etcd and the etcd client certificates on the master (etcdctl endpoint health)'};
	}

	const elsewhere = Object.entries(count.byKey).filter(([key]) => key !== write);
	const detail = Object.keys(count.byKey).length === 0 ? 'no secret in etcd' : describeCount(count.byKey, write ? [write] : []);
	return elsewhere.length === 0
		? {check, level: 'pass', detail}
		: {check, level: 'warn', detail, fix: `a value under another key than ${write ?? 'the write key'} is readable only while that key is listed: run rotate-encryption-key (it finishes a rotation under way, or writes every secret back under a new key)`};
}

/** Writes a throwaway secret, reads its raw value in etcd, and deletes it again. */
async function encryptionCheck(context: StepContext, master: Master): Promise<CheckResult> {
	const check = 'secrets encrypted in etcd';
	const expected = expectedSecretPrefix(context);
	if (!expected) {
		return {check, level: 'fail', detail: 'the encryption config does not encrypt secrets with a key first', fix: 'put an aescbc, aesgcm or secretbox provider with a key before identity (templates/encryption-config.yaml)'};
	}

	const name = `k8smi-verify-${randomBytes(4).toString('hex')}`;
	const marker = randomBytes(16).toString('hex');
	const secrets = '/api/v1/namespaces/default/secrets';
	const create = await apiserver(context, master, 'verify', {method: 'POST', path: secrets, body: {apiVersion: 'v1', kind: 'Secret', metadata: {name}, type: 'Opaque', data: {check: Buffer.from(marker).toString('base64')}}});
	if (!create.ok) {
		return {check, level: 'fail', detail: `could not create a test secret: ${create.problem}`, fix: 'check the apiserver logs (journalctl -u kube-apiserver)'};
	}

	try {
		const get = etcdctlScript(context, master, ['get', `/registry/secrets/default/${name}`, '--print-value-only']);
		// One read, kept in a private temporary file for the two looks at it.
		const script = `t=$(mktemp) || exit 1; trap 'rm -f "$t"' EXIT; ${get} > "$t"; echo "prefix=$(head -c ${expected.length} "$t" | tr -c '[:print:]' '.')"; echo "plain=$(grep -a -c ${shellQuote(marker)} "$t")"`;
		const result = await context.remote.check(master, script, {step: 'verify', display: `etcdctl get /registry/secrets/default/${name} (raw value)`});
		const prefix = /^prefix=(.*)$/m.exec(result.stdout)?.[1] ?? '';
		const plain = /^plain=(\d+)$/m.exec(result.stdout)?.[1] ?? '?';
		if (prefix === expected && plain === '0') {
			return {check, level: 'pass', detail: `raw value starts ${expected}`};
		}

		return {check, level: 'fail', detail: prefix ? `raw value starts "${prefix}"${plain === '0' ? '' : ', and the plain text is readable'}` : 'the secret is not in etcd under /registry/secrets/default/', fix: `every apiserver must run with --encryption-provider-config=${context.config.paths.configDir}/encryption-config.yaml; secrets written before that stay plain until rewritten (kubectl get secrets -A -o json | kubectl replace -f -)`};
	} finally {
		await apiserver(context, master, 'verify', {method: 'DELETE', path: `${secrets}/${name}`});
	}
}

type LeaderRecord = {holder: string; renewed: Date | undefined; leaseSeconds: number};

/** What client-go's leader election writes: a Lease's spec, or (before 1.17) an Endpoints annotation. */
type LeaderElectionRecord = {holderIdentity?: string; renewTime?: string; leaseDurationSeconds?: number};

async function leaderRecord(context: StepContext, master: Master, component: string): Promise<LeaderRecord | string> {
	const kind = leaderLockKind(context.config.kubeVersion);
	const answer = await apiserver(context, master, 'verify', {method: 'GET', path: kind === 'leases' ? `/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/${component}` : `/api/v1/namespaces/kube-system/endpoints/${component}`});
	if (!answer.ok) {
		return answer.reason === 'NotFound' ? 'no leader yet' : answer.problem;
	}

	const object = answer.object as {spec?: LeaderElectionRecord; metadata?: {annotations?: Record<string, string>}};
	// Before 1.17 the record is a JSON annotation on an Endpoints object.
	const record = kind === 'leases'
		? object.spec ?? {}
		: JSON.parse(object.metadata?.annotations?.['control-plane.alpha.kubernetes.io/leader'] ?? '{}') as LeaderElectionRecord;
	return {holder: record.holderIdentity ?? '', renewed: record.renewTime ? new Date(record.renewTime) : undefined, leaseSeconds: record.leaseDurationSeconds ?? 15};
}

/** A leader that renewed within its lease; waits for one (a restarted leader's lease must expire first). */
async function leaderCheck(context: StepContext, master: Master, component: 'kube-controller-manager' | 'kube-scheduler'): Promise<CheckResult> {
	const check = `leader ${component}`;
	const deadline = Date.now() + (context.config.timeouts.readySeconds * 1000);
	for (;;) {
		const record = await leaderRecord(context, master, component);
		const age = typeof record === 'string' || !record.renewed ? undefined : (Date.now() - record.renewed.getTime()) / 1000;
		// The workstation's clock may differ from the leader's by a few seconds (preflight warns beyond 2 s).
		if (typeof record !== 'string' && record.holder && age !== undefined && age < record.leaseSeconds + 10) {
			return {check, level: 'pass', detail: `held by ${record.holder.split('_')[0]} (renewed ${Math.max(0, Math.round(age))} s ago)`};
		}

		if (Date.now() >= deadline) {
			const detail = typeof record === 'string' ? record : record.holder ? `held by ${record.holder.split('_')[0]} but not renewed for ${Math.round(age ?? 0)} s` : 'no leader';
			return {check, level: 'fail', detail, fix: `journalctl -u ${component} on the masters; each must reach https://127.0.0.1:8443 through kube-nginx`};
		}

		context.throwIfStopping();
		await new Promise(resolve => setTimeout(resolve, 250));
	}
}

function report(context: StepContext, step: StepId, host: string, results: CheckResult[]): void {
	for (const result of results) {
		context.check(step, host, result);
	}
}

/** The step's note when every check passed; else the failure, each failed check already reported. */
function noteOrThrow(step: StepId, host: string, results: CheckResult[]): string {
	const failures = results.filter(result => result.level === 'fail');
	if (failures.length > 0) {
		throw new ChecksFailed({step, host, message: `${failures.map(result => `${result.check}: ${result.detail}`).join('; ')}`, fix: failures[0]!.fix});
	}

	return `${results.length} checks passed${results.some(result => result.level === 'warn') ? ' (with warnings)' : ''}`;
}

/** The apiservers through controlPlaneEndpoint, as kubectl with the admin kubeconfig reaches them. */
async function controlPlaneCheck(context: StepContext, endpoint: Endpoint): Promise<CheckResult> {
	const check = 'via controlPlaneEndpoint';
	const address = `${endpoint.host}:${endpoint.port}`;
	const pathName = readinessPath(context.config.kubeVersion);
	const answer = await context.probe(endpoint.host, endpoint.port, pathName, adminTls(context));
	if (answer.ok) {
		return {check, level: 'pass', detail: `${address}${pathName}: ok`};
	}

	const detail = `${address}${pathName}: ${answer.error ?? `HTTP ${answer.status}`}`;
	// Node names a certificate that does not hold the name asked for this way.
	return /altnames/i.test(answer.error ?? '')
		? {check, level: 'fail', detail, fix: `run apply: it issues the apiserver certificate again with ${endpoint.host} among its names and restarts the apiservers one at a time`}
		: {check, level: 'fail', detail, fix: `check that ${context.config.bastion ? 'the masters reach' : 'this machine reaches'} ${address} and that it forwards TCP (TLS passed through) to port ${apiserverPort} of every master (${context.config.masters.map(master => master.ip).join(', ')})`};
}

/** The first master whose apiserver answers: cluster-wide checks go through it. */
async function reachableMaster(context: StepContext): Promise<Master | undefined> {
	for (const master of context.config.masters.filter(each => !context.skipped.has(each.name))) {
		// A start step's check of this run found it ready, and nothing restarted since: not asked again.
		const seen = context.servicesSeen.reuse(master.name, ['kube-apiserver'])?.readiness.get('kube-apiserver')?.ok === true;
		if (seen || (await context.probe(master.ip, 6443, readinessPath(context.config.kubeVersion), adminTls(context))).ok) {
			return master;
		}
	}

	return undefined;
}

export const verify: StepDefinition = {
	id: 'verify',
	readsOnly: true,
	title: 'Verify the control plane',
	needs: ['start', 'start-controllers', 'rbac'],
	scope: 'each-master',
	plan: (context, master): PlannedAction[] => {
		const version = context.config.kubeVersion;
		return [
			{kind: 'check', description: `https://${master.ip}:6443${livenessPath(version)} and ${readinessPath(version)}?verbose answer ok`},
			{kind: 'check', description: `https://127.0.0.1:8443${readinessPath(version)}?verbose answers ok on the master (through kube-nginx)`},
			...services.slice(2).map((service): PlannedAction => ({kind: 'check', description: service.readyText(context, master)})),
			{kind: 'check', description: 'nothing serves plain HTTP on 10251/10252 beyond loopback'},
			{kind: 'check', description: 'the installed certificates are the ones made here, and not expired'},
			{kind: 'check', description: 'the CIS Kubernetes Benchmark\'s control-plane checks (1.1-1.4), read from the running command lines and the files\' modes and owners'},
		];
	},
	// Checks are always done again: their answer is about now.
	verify: async () => ({done: false}),
	async run(context, master) {
		const version = context.config.kubeVersion;
		// Independent reads: asked side by side, reported in this order.
		const [live, ready, {local, read}] = await Promise.all([
			endpointCheck(context, master, 'apiserver live', 'kube-apiserver', 6443, livenessPath(version)),
			endpointCheck(context, master, 'apiserver ready', 'kube-apiserver', 6443, `${readinessPath(version)}?verbose`),
			readMaster(context, master),
		]);
		const results = [live, ready, ...local, insecurePortsCheck(read.ports), certificateCheck(context, read.certificates), ...[caExpiryCheck(read.certificates)].filter(check => check !== undefined), benchmarkCheck(context, read.benchmark)];
		report(context, 'verify', master.name, results);
		return noteOrThrow('verify', master.name, results);
	},
};

/**
 * What only the cluster as a whole answers. It needs nothing from the masters' own checks: it needs
 * what verify needs, so the two run side by side (one wave).
 */
export const verifyCluster: StepDefinition = {
	id: 'verify-cluster',
	readsOnly: true,
	title: 'Verify the cluster as a whole',
	needs: ['start', 'start-controllers', 'rbac'],
	scope: 'cluster',
	// It finds its own way in (reachableMaster): through another master it would only ask the same again.
	hosts: firstMaster,
	plan: context => {
		const version = context.config.kubeVersion;
		const endpoint = context.config.controlPlane;
		return [
			{kind: 'check', description: 'through the first master whose apiserver answers: can-i --as kubernetes get nodes --subresource=proxy (a SelfSubjectAccessReview, as kubectl auth can-i); a test secret is stored encrypted (k8s:enc:aescbc:v1:) in etcd, then deleted; every secret in etcd counted per encryption key (etcdctl); controller-manager and scheduler have a leader'},
			...(endpoint ? [{kind: 'check', description: `https://${endpoint.host}:${endpoint.port}${readinessPath(version)} answers ok through controlPlaneEndpoint`} satisfies PlannedAction] : []),
		];
	},
	verify: async () => ({done: false}),
	async run(context) {
		const endpoint = context.config.controlPlane;
		// Independent of each other: asked side by side, the endpoint even when no master answers directly.
		const throughEndpoint = endpoint ? [controlPlaneCheck(context, endpoint)] : [];
		const master = await reachableMaster(context);
		// The encryption check asks first: the longest of them (a write, a read on the master, a delete), it takes the connection already open.
		const encryption = master && encryptionCheck(context, master);
		const throughMaster = master
			? [rbacCheck(context, master), encryption!, keyCountCheck(context, master), leaderCheck(context, master, 'kube-controller-manager'), leaderCheck(context, master, 'kube-scheduler')]
			: [{check: 'cluster checks', level: 'fail', detail: 'no apiserver answers: the cluster-wide checks cannot run', fix: 'run k8s-master-install status, then apply'} satisfies CheckResult];
		const results = await Promise.all([...throughEndpoint, ...throughMaster]);
		report(context, 'verify-cluster', 'cluster', results);
		return noteOrThrow('verify-cluster', 'cluster', results);
	},
};
