import type {Master} from '../config/schema.js';
import {StepError} from '../errors.js';
import {workingDirectories} from '../render/artifacts.js';
import {shellWords} from '../remote/quote.js';
import {sha256} from '../files.js';
import {apiserver, etcdctlScript} from './clients.js';
import {filesStep, uploadsOf, type Upload} from './files.js';
import {binaries, controllerBinaries} from './releases.js';
import {startPhases, startStep} from './services.js';
import type {StepContext, StepDefinition, StepId} from './types.js';

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

export {binaries, controllerBinaries};

// Every files step needs leave: a master the config gives a new address is decommissioned, and its
// record forgotten, before the new machine under its name gets anything.
export const certs = filesStep({id: 'certs', title: 'Place certificates and keys', needs: ['leave'], plan: (context, master) => artifactUploads(context, master, 'certs')});
export const encryption = filesStep({id: 'encryption', title: 'Place the encryption-at-rest config', needs: ['leave'], plan: (context, master) => artifactUploads(context, master, 'encryption')});
export const audit = filesStep({id: 'audit', title: 'Place the audit policy', needs: ['leave'], plan: (context, master) => artifactUploads(context, master, 'audit')});
export const units = filesStep({
	id: 'units',
	title: 'Install the apiserver and kube-nginx units',
	// A unit names its release's folder: written before the binaries land there, a daemon-reload or a
	// reboot in between (a killed upgrade) would start a folder that is empty or not there. On a new
	// cluster no unit is enabled before start: written beside the binaries, off the critical path.
	needs: ['binaries', 'leave'],
	afterWhenLive: ['binaries'],
	plan: (context, master) => [
		// umask 077, as the uploads make their folders: a folder both make (/opt/k8s) gets one mode whichever runs first.
		{kind: 'remote', script: `umask 077; mkdir -p ${shellWords(workingDirectories(context.config))}`},
		...artifactUploads(context, master, 'units'),
	],
});

/** The controller-manager's and scheduler's units and the scheduler's config: placed once every apiserver runs this release (see unitStep). */
export const controllerUnits = filesStep({
	id: 'controller-units',
	title: 'Install the controller-manager and scheduler units',
	// Naming the release's folder, after the binaries it names (see units); on a new cluster beside
	// start and them, as nothing starts the controller-managers before start-controllers.
	needs: ['start', 'controller-binaries'],
	afterWhenLive: ['start', 'controller-binaries'],
	plan: (context, master) => artifactUploads(context, master, 'controller-units'),
});

/** The files the start steps' services read, as the files steps place them. */
export const uploadsStartReads = (context: StepContext, master: Master): Upload[] => uploadsOf([binaries, controllerBinaries, certs, encryption, audit, units, controllerUnits].flatMap(step => step.plan(context, master)));

/** Every master's apiserver and kube-nginx, then (the next step) every master's controller-manager and scheduler: see startPhases. */
export const start = startStep(uploadsStartReads, {id: 'start', order: startPhases[0], title: 'Start the control plane: the apiservers and kube-nginx, and wait until ready'});

export const startControllers = startStep(uploadsStartReads, {id: 'start-controllers', order: startPhases[1], title: 'Start the controller-managers and schedulers, once every apiserver runs, and wait until ready', needs: ['start', 'controller-binaries', 'controller-units'], completesRelease: true});

const etcdKeyLimit = 1000;

// A large cluster has many keys: a sample is enough to show what the apiservers wrote.
const registryKeysArgs = ['get', '/registry/', '--prefix', '--keys-only', `--limit=${etcdKeyLimit}`];

export const etcdCheck: StepDefinition = {
	id: 'etcd-check',
	readsOnly: true,
	title: 'Check what the apiserver wrote to etcd',
	// Beside verify, not beside the RBAC step: nothing waits for it, and there it held verify back (an etcdctl on a master against one GET).
	needs: ['start', 'start-controllers'],
	scope: 'cluster',
	plan: (context, master) => [{kind: 'remote', script: etcdctlScript(context, master, registryKeysArgs)}],
	// A read-only check: it is simply done again.
	verify: async () => ({done: false}),
	async run(context, master) {
		const result = await context.remote.check(master, etcdctlScript(context, master, registryKeysArgs), {step: 'etcd-check'});
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
const bindingsPath = '/apis/rbac.authorization.k8s.io/v1/clusterrolebindings';
const binding = {
	apiVersion: 'rbac.authorization.k8s.io/v1',
	kind: 'ClusterRoleBinding',
	metadata: {name: bindingName},
	roleRef: {apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'system:kubelet-api-admin'},
	subjects: [{apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name: 'kubernetes'}],
};

async function bindingState(context: StepContext, master: Master): Promise<'absent' | 'correct' | string> {
	const answer = await apiserver(context, master, 'rbac', {method: 'GET', path: `${bindingsPath}/${bindingName}`});
	if (!answer.ok) {
		if (answer.reason === 'NotFound') {
			return 'absent';
		}

		throw new StepError({step: 'rbac', host: master.name, message: `reading clusterrolebinding ${bindingName} failed: ${answer.problem}`, command: `GET ${bindingsPath}/${bindingName}`});
	}

	const found = answer.object as {roleRef?: {name?: string}; subjects?: Array<{kind?: string; name?: string}>};
	const correct = found.roleRef?.name === 'system:kubelet-api-admin' && (found.subjects ?? []).some(subject => subject.kind === 'User' && subject.name === 'kubernetes');
	return correct ? 'correct' : `it exists with roleRef ${found.roleRef?.name ?? '?'} and subjects ${JSON.stringify(found.subjects ?? [])}`;
}

export const rbac: StepDefinition = {
	id: 'rbac',
	title: 'Let the apiserver use the kubelet API (RBAC)',
	needs: ['start'],
	scope: 'cluster',
	plan: (_context, master) => [{kind: 'local', display: `POST https://${master.ip}:6443${bindingsPath}: ${bindingName}, ClusterRole system:kubelet-api-admin for User kubernetes (as kubectl create clusterrolebinding ${bindingName} --clusterrole=system:kubelet-api-admin --user=kubernetes)`}],
	async verify(context, master) {
		return (await bindingState(context, master)) === 'correct' ? {done: true, detail: `${bindingName} in place`} : {done: false};
	},
	// verify() just found it absent or different: create it, and look at it only when it is there already.
	async run(context, master) {
		const create = await apiserver(context, master, 'rbac', {method: 'POST', path: bindingsPath, body: binding});
		if (create.ok) {
			return `${bindingName} created`;
		}

		if (create.reason !== 'AlreadyExists') {
			throw new StepError({step: 'rbac', host: master.name, message: `creating clusterrolebinding ${bindingName} failed: ${create.problem}`, command: `POST ${bindingsPath}`});
		}

		const existing = await bindingState(context, master);
		if (existing === 'correct') {
			return `${bindingName} already in place`;
		}

		throw new StepError({step: 'rbac', host: master.name, message: `clusterrolebinding ${bindingName} is not what this install makes: ${existing}`, fix: `inspect it (kubectl get clusterrolebinding ${bindingName} -o yaml); delete it to let apply make it again`});
	},
};
