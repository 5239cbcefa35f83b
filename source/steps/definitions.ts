import path from 'node:path';
import type {Master} from '../config/schema.js';
import {StepError} from '../errors.js';
import {flagContext} from '../render/artifacts.js';
import {waitForHealth} from '../remote/health.js';
import {shellQuote, shellWords} from '../remote/quote.js';
import {readinessPath} from '../versions.js';
import {sha256} from '../files.js';
import {diagnoseApiserver} from './diagnose.js';
import {filesStep, type Upload} from './files.js';
import {preflight} from './preflight.js';
import type {PlannedAction, StepContext, StepDefinition} from './types.js';
import type {StepId} from '../state/store.js';

function artifactUploads(context: StepContext, master: Master, step: StepId): Upload[] {
	return context.artifacts
		.filter(artifact => artifact.remote?.step === step && (artifact.remote.host === undefined || artifact.remote.host === master.name))
		.map(artifact => ({
			kind: 'upload',
			path: artifact.remote!.path,
			mode: artifact.mode,
			sha256: sha256(artifact.content),
			bytes: Buffer.byteLength(artifact.content),
			secret: artifact.secret,
			source: {content: artifact.content},
			label: artifact.name,
		}));
}

const binaries = filesStep({
	id: 'binaries',
	title: 'Copy the server binaries',
	needs: [],
	plan(context) {
		const binDir = context.config.paths.binDir;
		if (!context.binaries) {
			return [{kind: 'check', description: `unpack ${context.config.binaries.tarball ?? context.config.binaries.url} and copy its server binaries to ${binDir} (hashes known once unpacked)`}];
		}

		return context.binaries.map((binary): Upload => ({
			kind: 'upload', path: `${binDir}/${binary.name}`, mode: 0o755, sha256: binary.sha256, bytes: binary.bytes, secret: false, source: {file: binary.file}, label: binary.name,
		}));
	},
});

const certs = filesStep({id: 'certs', title: 'Place certificates and keys', needs: [], plan: (context, master) => artifactUploads(context, master, 'certs')});
const encryption = filesStep({id: 'encryption', title: 'Place the encryption-at-rest config', needs: [], plan: (context, master) => artifactUploads(context, master, 'encryption')});
const audit = filesStep({id: 'audit', title: 'Place the audit policy', needs: [], plan: (context, master) => artifactUploads(context, master, 'audit')});
const units = filesStep({
	id: 'units',
	title: 'Install the kube-apiserver unit',
	needs: [],
	plan: (context, master) => [
		// The unit's WorkingDirectory must exist before systemd starts it (else 200/CHDIR).
		{kind: 'remote', script: `mkdir -p ${shellQuote(`${context.config.paths.k8sDir}/kube-apiserver`)}`},
		...artifactUploads(context, master, 'units'),
	],
});

function tlsClient(context: StepContext) {
	return {ca: context.material.ca.certPem, cert: context.material.leaves.admin.certPem, key: context.material.leaves.admin.keyPem};
}

const startScript = 'systemctl daemon-reload && systemctl enable kube-apiserver && systemctl restart kube-apiserver';

async function serviceFacts(context: StepContext, master: Master): Promise<{active: string; needsReload: string}> {
	// Without --value (systemd 230+): CentOS 7's systemd 219 prints NeedDaemonReload=no too.
	const result = await context.remote.check(master, 'systemctl is-active kube-apiserver || true; systemctl show -p NeedDaemonReload kube-apiserver', {step: 'start', display: 'systemctl is-active kube-apiserver'});
	const [active = '', needsReload = ''] = result.stdout.trim().split('\n').map(line => line.trim().replace(/^NeedDaemonReload=/, ''));
	return {active, needsReload};
}

async function failure(context: StepContext, master: Master, message: string, command: string): Promise<StepError> {
	const journal = await context.remote.run(master, 'journalctl -u kube-apiserver -n 40 --no-pager -o cat; systemctl status kube-apiserver --no-pager -n 0 || true', {step: 'start', display: 'journalctl -u kube-apiserver -n 40'});
	const output = context.runner.redact(journal.stdout.trim());
	return new StepError({step: 'start', host: master.name, message, command, output: output.split('\n').slice(-15).join('\n'), fix: diagnoseApiserver(output)});
}

const start: StepDefinition = {
	id: 'start',
	title: 'Start kube-apiserver and wait until ready',
	needs: ['binaries', 'certs', 'encryption', 'audit', 'units'],
	scope: 'each-master',
	rollingWhenLive: true,
	plan: (context, master) => [
		{kind: 'remote', script: startScript},
		{kind: 'check', description: `wait for https://${master.ip}:6443${readinessPath(context.config.kubeVersion)} to answer ok (admin certificate, up to ${context.config.timeouts.readySeconds} s)`},
	],
	async verify(context, master, record, inputs) {
		if (record?.status !== 'done' || record.inputs !== inputs) {
			return {done: false, detail: record ? 'its inputs changed since it last started' : 'not started by this install'};
		}

		if (context.changedHosts.has(master.name)) {
			return {done: false, detail: 'files were written on this master in this run'};
		}

		const facts = await serviceFacts(context, master);
		if (facts.active !== 'active' || facts.needsReload !== 'no') {
			return {done: false, detail: `kube-apiserver is ${facts.active}${facts.needsReload === 'yes' ? ', unit changed on disk' : ''}`};
		}

		const answer = await context.probe(master.ip, 6443, readinessPath(context.config.kubeVersion), tlsClient(context));
		return answer.ok ? {done: true, detail: 'active and ready'} : {done: false, detail: `not ready (${answer.error ?? `HTTP ${answer.status}`})`};
	},
	async run(context, master) {
		// Type=notify: restart returns once the apiserver told systemd it is ready, or failed.
		const restart = await context.remote.run(master, startScript, {step: 'start', timeoutMs: (context.config.timeouts.readySeconds + 30) * 1000});
		if (restart.exitCode !== 0) {
			throw await failure(context, master, `kube-apiserver did not start (exit ${restart.exitCode})`, startScript);
		}

		const readiness = readinessPath(context.config.kubeVersion);
		context.progress('start', master.name, {message: `waiting for ${readiness}`});
		let stopped = false;
		const answer = await waitForHealth(context.probe, master.ip, 6443, readiness, tlsClient(context), context.config.timeouts.readySeconds * 1000, last => {
			context.progress('start', master.name, {message: `waiting for ${readiness}: ${last.error ?? `HTTP ${last.status}`}`});
		}, () => {
			try {
				context.throwIfStopping();
				return false;
			} catch {
				stopped = true;
				return true;
			}
		});
		context.runner.log({event: 'health', host: master.name, url: `https://${master.ip}:6443${readiness}`, ok: answer.ok, status: answer.status, error: answer.error});
		if (stopped) {
			context.throwIfStopping();
		}

		if (!answer.ok) {
			throw await failure(context, master, `${readiness} did not answer ok within ${context.config.timeouts.readySeconds} s (${answer.error ?? `HTTP ${answer.status}: ${answer.body.trim().split('\n').at(-1) ?? ''}`})`, `GET https://${master.ip}:6443${readiness}`);
		}

		return `ready (${readiness})`;
	},
};

const etcdKeyLimit = 1000;

function etcdctlScript(context: StepContext, master: Master): string {
	const files = flagContext(context.config, master.ip);
	const binDir = context.config.paths.binDir;
	const searchPath = [...new Set([binDir, '/opt/k8s/bin'])].join(':');
	return `ETCDCTL_API=3 PATH="$PATH":${shellQuote(searchPath)} etcdctl ${shellWords([
		`--endpoints=${context.config.etcd.endpoints.join(',')}`,
		`--cacert=${files.etcdCaFile}`,
		`--cert=${files.etcdCertFile}`,
		`--key=${files.etcdKeyFile}`,
		// A large cluster has many keys: a sample is enough to show what the apiservers wrote.
		'get', '/registry/', '--prefix', '--keys-only', `--limit=${etcdKeyLimit}`,
	])}`;
}

const etcdCheck: StepDefinition = {
	id: 'etcd-check',
	title: 'Check what the apiserver wrote to etcd',
	needs: ['start'],
	scope: 'cluster',
	plan: (context, master) => [{kind: 'remote', script: etcdctlScript(context, master)}],
	// A read-only check: it is simply done again.
	verify: async () => ({done: false}),
	async run(context, master) {
		const result = await context.remote.check(master, etcdctlScript(context, master), {step: 'etcd-check'});
		const keys = result.stdout.split('\n').map(line => line.trim()).filter(line => line.startsWith('/registry/'));
		if (keys.length === 0) {
			throw new StepError({step: 'etcd-check', host: master.name, message: 'etcd holds no key under /registry/: the apiservers wrote nothing', command: 'etcdctl get /registry/ --prefix --keys-only', fix: 'check that the apiservers use the etcd.endpoints of this cluster (journalctl -u kube-apiserver)'});
		}

		const groups = new Map<string, number>();
		for (const key of keys) {
			const group = key.split('/')[2] ?? '';
			groups.set(group, (groups.get(group) ?? 0) + 1);
		}

		return `${keys.length === etcdKeyLimit ? 'at least ' : ''}${keys.length} keys under /registry/ (${[...groups].map(([group, count]) => `${group} ${count}`).join(', ')})`;
	},
};

const bindingName = 'kube-apiserver:kubelet-apis';

function kubectlCommand(context: StepContext): string {
	if (context.config.kubectl) {
		return context.config.kubectl;
	}

	const bundled = context.binaries?.find(binary => binary.name === 'kubectl');
	return bundled && process.platform === 'linux' && process.arch === 'x64' ? bundled.file : 'kubectl';
}

function kubectlArgs(context: StepContext, master: Master, args: string[]): string[] {
	return ['--kubeconfig', path.join(context.workspace.renderedDir, 'admin.kubeconfig'), `--server=https://${master.ip}:6443`, '--request-timeout=20s', ...args];
}

async function bindingState(context: StepContext, master: Master): Promise<'absent' | 'correct' | string> {
	const result = await context.runner.run({command: kubectlCommand(context), args: kubectlArgs(context, master, ['get', 'clusterrolebinding', bindingName, '-o', 'json']), step: 'rbac', host: master.name});
	if (result.exitCode !== 0) {
		if (/NotFound/.test(result.stderr)) {
			return 'absent';
		}

		throw new StepError({step: 'rbac', host: master.name, message: `kubectl get clusterrolebinding failed: ${result.stderr.trim().split('\n').at(-1) ?? ''}`, command: `kubectl get clusterrolebinding ${bindingName}`, output: result.stderr});
	}

	const binding = JSON.parse(result.stdout) as {roleRef?: {name?: string}; subjects?: Array<{kind?: string; name?: string}>};
	const correct = binding.roleRef?.name === 'system:kubelet-api-admin' && (binding.subjects ?? []).some(subject => subject.kind === 'User' && subject.name === 'kubernetes');
	return correct ? 'correct' : `it exists with roleRef ${binding.roleRef?.name ?? '?'} and subjects ${JSON.stringify(binding.subjects ?? [])}`;
}

const rbac: StepDefinition = {
	id: 'rbac',
	title: 'Let the apiserver use the kubelet API (RBAC)',
	needs: ['start'],
	scope: 'cluster',
	plan: (context, master) => [{kind: 'local', command: kubectlCommand(context), args: kubectlArgs(context, master, ['create', 'clusterrolebinding', bindingName, '--clusterrole=system:kubelet-api-admin', '--user=kubernetes'])}],
	async verify(context, master) {
		return (await bindingState(context, master)) === 'correct' ? {done: true, detail: `${bindingName} in place`} : {done: false};
	},
	async run(context, master) {
		const before = await bindingState(context, master);
		if (before === 'correct') {
			return `${bindingName} already in place`;
		}

		if (before !== 'absent') {
			throw new StepError({step: 'rbac', host: master.name, message: `clusterrolebinding ${bindingName} is not what this install makes: ${before}`, fix: `inspect it (kubectl get clusterrolebinding ${bindingName} -o yaml); delete it to let apply make it again`});
		}

		const create = await context.runner.run({command: kubectlCommand(context), args: kubectlArgs(context, master, ['create', 'clusterrolebinding', bindingName, '--clusterrole=system:kubelet-api-admin', '--user=kubernetes']), step: 'rbac', host: master.name});
		// Another run may have made it a moment ago: AlreadyExists is fine once the content is checked.
		if (create.exitCode !== 0 && !/AlreadyExists|already exists/.test(create.stderr)) {
			throw new StepError({step: 'rbac', host: master.name, message: `kubectl create clusterrolebinding failed: ${create.stderr.trim().split('\n').at(-1) ?? ''}`, command: `kubectl create clusterrolebinding ${bindingName}`, output: create.stderr});
		}

		const after = await bindingState(context, master);
		if (after !== 'correct') {
			throw new StepError({step: 'rbac', host: master.name, message: `clusterrolebinding ${bindingName} is not right after creating it: ${after}`});
		}

		return `${bindingName} created`;
	},
};

/** The install, in order. */
export const steps: StepDefinition[] = [preflight, binaries, certs, encryption, audit, units, start, etcdCheck, rbac];

/** The actions whose results a step depends on (start restarts when any file it runs with changed). */
export function inputActions(step: StepDefinition, context: StepContext, master: Master): PlannedAction[] {
	const upstream = steps.filter(candidate => step.needs.includes(candidate.id) && candidate.scope === 'each-master');
	return [...upstream.flatMap(candidate => candidate.plan(context, master)), ...step.plan(context, master)];
}
