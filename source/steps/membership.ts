import type {ResolvedConfig} from '../config/load.js';
import type {Master} from '../config/schema.js';
import {InputError, StepError} from '../errors.js';
import {clusterHost} from '../engine/plan.js';
import type {InstallState} from '../state/store.js';
import {apiserver} from './clients.js';
import {uploadsStartReads} from './definitions.js';
import {rewriteNginx} from './drain.js';
import {services} from './readiness.js';
import {resetHost} from './reset.js';
import {serviceFingerprint, serviceInputs} from './restart-policy.js';
import type {PlannedAction, StepContext, StepDefinition} from './types.js';

/**
 * Masters are the config's `masters:` list: what the state recorded and the config no longer lists
 * leaves the cluster, what the config lists and the state never saw joins it. A name the config gives
 * another address than the recorded one is a new machine: the old one leaves, the new one joins.
 */

/** A master this install ran on that the config no longer lists (or lists at another address). */
export type Departure = {
	name: string;
	/** Where it was reached; undefined for an install recorded before addresses were. */
	ip: string | undefined;
	sshHost?: string;
	why: 'removed' | 'readdressed';
	/** --force-remove: it no longer answers; nothing is asked of it. */
	force: boolean;
	/** This install wrote something there. A master that never got that far (it failed preflight) is only forgotten. */
	installed: boolean;
};

/** Whether this install wrote anything on the master, or started a release there. */
function installedOn(state: InstallState, name: string): boolean {
	return (state.startedReleases?.[name]?.length ?? 0) > 0 || Object.entries(state.steps).some(([key, step]) => key.startsWith(`${installOperation}/`) && Object.keys(step?.hosts[name]?.files ?? {}).length > 0);
}

export type MembershipChange = {
	/** In the config, never installed by this install (a readdressed name too). */
	added: Master[];
	departing: Departure[];
	/** In the config at the recorded address: they serve while the others join or leave. */
	staying: Master[];
	/** Filled by the leave step: what stayed on a master removed with --force-remove, for the run's last line. */
	leftBehind: string[];
};

/** The step's record name of this install ("install/…"): the hosts it holds are the masters it ran on. */
const installOperation = 'install';

/** Every master name the state knows: with a recorded address, or with progress recorded under the install. */
export function recordedMasterNames(state: InstallState): string[] {
	const names = new Set(Object.keys(state.masters ?? {}));
	for (const [key, step] of Object.entries(state.steps)) {
		if (key.startsWith(`${installOperation}/`)) {
			for (const host of Object.keys(step?.hosts ?? {})) {
				if (host !== clusterHost) {
					names.add(host);
				}
			}
		}
	}

	return [...names];
}

/** What the config changes in the masters the state knows. A first install changes nothing: every master is simply installed. */
export function membershipChange(config: ResolvedConfig, state: InstallState, forceRemove: readonly string[] = []): MembershipChange {
	const recorded = recordedMasterNames(state);
	if (recorded.length === 0) {
		return {added: [], departing: [], staying: config.masters, leftBehind: []};
	}

	const departure = (name: string, why: Departure['why']): Departure => {
		const address = state.masters?.[name];
		return {name, ip: address?.ip, ...(address?.sshHost === undefined ? {} : {sshHost: address.sshHost}), why, force: forceRemove.includes(name), installed: installedOn(state, name)};
	};

	const change: MembershipChange = {added: [], departing: [], staying: [], leftBehind: []};
	for (const master of config.masters) {
		const address = state.masters?.[master.name];
		if (!recorded.includes(master.name)) {
			change.added.push(master);
		} else if (address && address.ip !== master.ip) {
			change.departing.push(departure(master.name, 'readdressed'));
			change.added.push(master);
		} else {
			change.staying.push(master);
		}
	}

	for (const name of recorded.filter(name => !config.masters.some(master => master.name === name))) {
		change.departing.push(departure(name, 'removed'));
	}

	return change;
}

/**
 * Bad input before anything is touched: removing every master this install runs on, --force-remove
 * of a master that does not leave, a leaving master whose address the state never recorded.
 */
export function refuseMembership(config: ResolvedConfig, change: MembershipChange, forceRemove: readonly string[] = []): void {
	const leaving = change.departing.map(departure => departure.name);
	for (const name of forceRemove) {
		if (!leaving.includes(name)) {
			throw new InputError('--force-remove', name, config.masters.some(master => master.name === name) ? 'is still in masters: at the address this install knows; --force-remove only removes a master the config no longer lists' : 'names no master this install runs on', `take ${name} out of masters: in ${config.source} first, or name one of the masters that leave${leaving.length > 0 ? ` (${leaving.join(', ')})` : ' (none does)'}`);
		}
	}

	// Only what an install put somewhere must be taken down through a master that keeps serving.
	const installedLeaving = change.departing.filter(departure => departure.installed);
	if (installedLeaving.length > 0 && change.staying.length === 0) {
		throw new InputError('masters', config.masters.map(master => master.name).join(', '), `removes every master this install runs on (${installedLeaving.map(departure => departure.name).join(', ')}): none would serve while the new ones are installed`, 'keep at least one of them in masters: (add the new masters in one apply, remove the old ones in the next)');
	}

	const unknown = installedLeaving.find(departure => departure.ip === undefined && !departure.force);
	if (unknown) {
		throw new InputError('masters', unknown.name, 'leaves, but this install was recorded before master addresses were, so its address is not known', `put ${unknown.name} back in masters: with its address and run apply once, then remove it; or, if the machine is gone, pass --force-remove ${unknown.name}`);
	}
}

/** The change in words, for plan and for the warnings before apply asks. Empty when the masters stay as they are. */
export function describeMembership(config: ResolvedConfig, change: MembershipChange): string[] {
	if (change.added.length === 0 && change.departing.length === 0) {
		return [];
	}

	const lines: string[] = [];
	for (const master of change.added) {
		lines.push(`${master.name} (${master.ip}) joins: checked by preflight first, then given everything; its address is added to the apiserver certificate's SANs (issued again with the same key) and to kube-nginx's upstreams on every master`);
	}

	for (const departure of change.departing) {
		const where = departure.ip ?? 'address not recorded';
		const why = departure.why === 'readdressed' ? `the config gives ${departure.name} a new address: the machine at ${where} leaves` : `${departure.name} (${where}) leaves`;
		if (!departure.installed) {
			lines.push(`${why}: this install wrote nothing there, so it is only forgotten in the state; its address leaves the certificates' SANs`);
			continue;
		}

		const how = departure.force
			? '--force-remove: nothing is asked of it; what this install left there is named at the end'
			: 'units stopped and disabled, the files this install wrote removed as reset does';
		lines.push(`${why}: first out of kube-nginx on every master that stays (a reload: open connections kept), then decommissioned (${how}), its apiserver lease and its address in the kubernetes Endpoints (and EndpointSlice) removed; its address leaves the certificates' SANs`);
	}

	if (change.staying.length > 0) {
		lines.push(`${change.staying.map(master => master.name).join(', ')} stay${change.staying.length === 1 ? 's' : ''}: certificates issued again with the new list of addresses (same keys), kube-nginx's upstreams rewritten (a reload), kube-apiserver restarted one master at a time, each out of kube-nginx meanwhile`);
	}

	const etcdOnLeaving = config.etcd.endpoints.filter(endpoint => change.departing.some(departure => departure.ip !== undefined && endpoint.includes(`//${departure.ip}:`)));
	lines.push(`etcd is external to this tool and is not changed: no etcd member is added or removed, and the apiservers keep etcd.endpoints as configured; etcd's quorum is yours to keep (etcdctl member add / member remove)${etcdOnLeaving.length > 0 ? `; etcd.endpoints still lists ${etcdOnLeaving.join(', ')} of a leaving master: if etcd runs there, remove that member yourself, keeping quorum, then take it out of etcd.endpoints` : ''}`);
	return lines;
}

/** The masters a leaving one is decommissioned through: one that stays and is not skipped, else (plan of a first install) the first. */
function through(context: StepContext): Master[] {
	const staying = (context.membership?.staying ?? context.config.masters).filter(master => !context.skipped.has(master.name));
	return staying.length > 0 ? staying : context.config.masters.slice(0, 1);
}

// Only a departure with a recorded address is contacted (refuseMembership asks --force-remove for the others).
const asMaster = (departure: Departure): Master => ({name: departure.name, ip: departure.ip!, ...(departure.sshHost === undefined ? {} : {sshHost: departure.sshHost})});

function leavePlan(context: StepContext): PlannedAction[] {
	const departing = context.membership?.departing ?? [];
	if (departing.length === 0) {
		return [{kind: 'check', description: 'no master leaves: the config lists every master this install runs on, at the address it knows'}];
	}

	const staying = through(context).map(master => master.name).join(', ');
	return [
		{kind: 'check', description: `on ${staying}: write kube-nginx's config without ${departing.map(departure => departure.name).join(', ')}, reload kube-nginx (open connections kept) and wait until no old worker accepts`},
		...departing.flatMap((departure): PlannedAction[] => (!departure.installed ? [{kind: 'check', description: `${departure.name}: this install wrote nothing there; forget it in the state`}] : [
			departure.force
				? {kind: 'check', description: `${departure.name}: --force-remove, nothing is asked of it (its units and files stay there)`}
				: {kind: 'check', description: `on ${departure.name} (${departure.ip ?? '?'}): systemctl stop and disable ${services.map(service => service.name).reverse().join(' ')}; remove the files this install wrote, as reset does`},
			{kind: 'local', display: `through ${staying}: DELETE its apiserver identity lease (kube-system), PUT default/kubernetes Endpoints and EndpointSlice without ${departure.ip ?? 'its address'}`},
			{kind: 'check', description: `forget ${departure.name}'s records in the state once it is decommissioned`},
		])),
	];
}

/** The address without which an object is written back: the Endpoints' subsets, the EndpointSlice's endpoints. */
type Trim = {path: string; kind: string; without: (object: Record<string, any>, ip: string) => boolean};

const endpointsTrim: Trim = {
	path: '/api/v1/namespaces/default/endpoints/kubernetes',
	kind: 'Endpoints',
	without(object, ip) {
		let changed = false;
		for (const subset of object.subsets ?? []) {
			const kept = (subset.addresses ?? []).filter((address: {ip?: string}) => address.ip !== ip);
			changed ||= kept.length !== (subset.addresses ?? []).length;
			subset.addresses = kept;
		}

		return changed;
	},
};

const sliceTrim: Trim = {
	path: '/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/kubernetes',
	kind: 'EndpointSlice',
	without(object, ip) {
		const kept = (object.endpoints ?? []).filter((endpoint: {addresses?: string[]}) => !(endpoint.addresses ?? []).includes(ip));
		const changed = kept.length !== (object.endpoints ?? []).length;
		object.endpoints = kept;
		return changed;
	},
};

/** Reads the object and writes it back without the address (a conflict: read again, once); what was done, in words. */
async function trimAddress(context: StepContext, master: Master, trim: Trim, ip: string): Promise<string> {
	for (let attempt = 0; ; attempt++) {
		const read = await apiserver(context, master, 'leave', {method: 'GET', path: trim.path});
		if (!read.ok) {
			// A release without the object (no EndpointSlice before discovery.k8s.io/v1) has nothing to trim.
			if (read.status === 404) {
				return `no ${trim.kind} kubernetes`;
			}

			throw new StepError({step: 'leave', host: master.name, message: `reading the ${trim.kind} kubernetes failed: ${read.problem}`, command: `GET ${trim.path}`});
		}

		const object = read.object as Record<string, any>;
		if (!trim.without(object, ip)) {
			return `${ip} not in the ${trim.kind} kubernetes`;
		}

		const written = await apiserver(context, master, 'leave', {method: 'PUT', path: trim.path, body: object});
		if (written.ok) {
			return `${ip} removed from the ${trim.kind} kubernetes`;
		}

		if (written.reason !== 'Conflict' || attempt > 0) {
			throw new StepError({step: 'leave', host: master.name, message: `writing the ${trim.kind} kubernetes without ${ip} failed: ${written.problem}`, command: `PUT ${trim.path}`});
		}
	}
}

const leasesPath = '/apis/coordination.k8s.io/v1/namespaces/kube-system/leases';

/**
 * The apiserver's identity lease (kube-system, labelled with its host name; named apiserver-… or
 * kube-apiserver-… by release). Releases without identity leases have none to remove; an unknown
 * host name leaves the lease to the apiservers' garbage collector once it expires.
 */
async function removeLeases(context: StepContext, master: Master, hostname: string): Promise<string> {
	const listed = await apiserver(context, master, 'leave', {method: 'GET', path: leasesPath});
	if (!listed.ok) {
		if (listed.status === 404) {
			return 'no leases served';
		}

		throw new StepError({step: 'leave', host: master.name, message: `listing the leases in kube-system failed: ${listed.problem}`, command: `GET ${leasesPath}`});
	}

	type Lease = {metadata?: {name?: string; labels?: Record<string, string>}};
	const items = ((listed.object as {items?: Lease[]}).items ?? []).filter(lease => {
		const name = lease.metadata?.name ?? '';
		const labels = lease.metadata?.labels ?? {};
		return (labels['apiserver.kubernetes.io/identity'] === 'kube-apiserver' || /^(kube-)?apiserver-/.test(name)) && labels['kubernetes.io/hostname'] === hostname;
	});
	for (const lease of items) {
		const path = `${leasesPath}/${lease.metadata!.name!}`;
		const deleted = await apiserver(context, master, 'leave', {method: 'DELETE', path});
		if (!deleted.ok && deleted.status !== 404) {
			throw new StepError({step: 'leave', host: master.name, message: `deleting the lease ${lease.metadata!.name!} failed: ${deleted.problem}`, command: `DELETE ${path}`});
		}
	}

	return items.length > 0 ? `lease ${items.map(lease => lease.metadata!.name!).join(', ')} deleted` : `no apiserver lease of host ${hostname} (an expired one is removed by the apiservers)`;
}

/** The cluster's records of a leaving apiserver, through the first staying master whose apiserver answers. */
async function removeFromCluster(context: StepContext, departure: Departure, hostname: string): Promise<string> {
	let lastError: unknown;
	for (const master of through(context)) {
		try {
			const done = [await removeLeases(context, master, hostname)];
			if (departure.ip !== undefined) {
				done.push(await trimAddress(context, master, endpointsTrim, departure.ip), await trimAddress(context, master, sliceTrim, departure.ip));
			}

			return done.join('; ');
		} catch (error) {
			lastError = error;
		}
	}

	throw lastError;
}

/** Stops and cleans a leaving master that answers; its host name, for its lease. */
async function decommission(context: StepContext, departure: Departure): Promise<{hostname: string; detail: string}> {
	const master = asMaster(departure);
	let hostname: string;
	let addresses: string[];
	try {
		const [first = '', ...rest] = (await context.remote.check(master, 'hostname; if command -v ip >/dev/null; then ip -o addr show | awk \'{print $4}\' | cut -d/ -f1; fi', {step: 'leave', display: 'hostname and addresses'})).stdout.trim().split('\n');
		hostname = first.trim();
		addresses = rest.map(line => line.trim()).filter(Boolean);
	} catch (error) {
		const reason = error instanceof Error ? error.message.split('\n')[0] : String(error);
		throw new StepError({step: 'leave', host: departure.name, message: `${departure.name} (${departure.ip}) leaves the cluster but does not answer: ${reason}`, fix: `if the machine is gone, run apply again with --force-remove ${departure.name}: nothing is asked of it and the run names what stays there; else make it reachable and run apply again`});
	}

	// Reached by a name (sshHost) that now points at another machine (a replacement under the same name): never reset that one.
	if (departure.ip && addresses.length > 0 && !addresses.includes(departure.ip)) {
		throw new StepError({step: 'leave', host: departure.name, message: `${departure.name} was reached as ${master.sshHost ?? master.ip}, but that machine (${hostname}) does not have ${departure.ip}: it is not the master that leaves`, fix: `if the old machine is gone, run apply again with --force-remove ${departure.name}; else make the old machine reachable at its recorded address`});
	}

	return {hostname, detail: await resetHost(context, master)};
}

/** What an unreachable master keeps: this install's units and the files it recorded writing there. */
function leftOn(context: StepContext, departure: Departure): string {
	const files = [...context.state.writtenFiles(departure.name).keys()].sort();
	return `${departure.name} (${departure.ip ?? 'address not recorded'}) was not contacted: its units ${services.map(service => service.name).join(', ')} may still run there (they no longer get requests through kube-nginx) and ${files.length} file(s) this install wrote stay${files.length > 0 ? ` (${files.join(', ')})` : ''}; wipe or reinstall the machine before it is used again`;
}

/**
 * Masters that leave: out of kube-nginx on every master that stays first (its config as the units step
 * will write it, a reload: open connections kept, no new one to the leaving apiserver), then stopped and
 * cleaned as reset does, then their lease and endpoint removed through a staying apiserver, then
 * forgotten in the state. Runs before the files steps, so a new machine under a leaving name starts
 * afresh; the others' certificates lose the address and restart later in the run, one at a time.
 */
export const leave: StepDefinition = {
	id: 'leave',
	title: 'Take the masters that leave out of kube-nginx, then decommission them',
	needs: [],
	scope: 'cluster',
	hosts: context => through(context).slice(0, 1),
	plan: context => leavePlan(context),
	async verify(context) {
		return (context.membership?.departing.length ?? 0) === 0 ? {done: true, detail: 'no master leaves'} : {done: false};
	},
	async run(context) {
		const change = context.membership!;
		const names = change.departing.map(departure => departure.name).join(', ');
		// A skipped master's kube-nginx would keep sending to the leaving apiserver once it stops.
		const skippedStaying = change.staying.filter(master => context.skipped.has(master.name));
		if (skippedStaying.length > 0) {
			throw new StepError({step: 'leave', host: clusterHost, message: `${names} cannot leave while ${skippedStaying.map(master => master.name).join(', ')} is skipped: its kube-nginx would keep sending requests to the leaving apiserver`, fix: 'run apply without skipping a master that stays'});
		}

		// A master that has kube-nginx's config of this install; one that has none yet gets it from the units step.
		const confPath = `${context.config.paths.nginxDir}/conf/kube-nginx.conf`;
		const staying = through(context).filter(master => change.staying.includes(master) && context.state.writtenFiles(master.name).has(confPath));
		context.progress('leave', clusterHost, {message: `taking ${names} out of kube-nginx on ${staying.map(master => master.name).join(', ')}`});
		await rewriteNginx(context, staying, 'leave', `take ${names} out of kube-nginx`);
		// kube-nginx runs this config now: the start step has no reason to reload or restart it for it.
		for (const master of staying) {
			if (context.state.startedWith(master.name)?.['kube-nginx'] !== undefined) {
				context.state.recordService(master.name, 'kube-nginx', serviceFingerprint(serviceInputs('kube-nginx', uploadsStartReads(context, master))));
			}
		}

		const notes: string[] = [];
		for (const departure of change.departing) {
			context.throwIfStopping();
			if (!departure.installed) {
				context.state.forgetHost(departure.name);
				notes.push(`${departure.name}: nothing of this install there; forgotten`);
				continue;
			}

			context.progress('leave', clusterHost, {message: `decommissioning ${departure.name}`});
			const {hostname, detail} = departure.force ? {hostname: departure.name, detail: undefined} : await decommission(context, departure);
			const cluster = await removeFromCluster(context, departure, hostname);
			if (departure.force) {
				change.leftBehind.push(leftOn(context, departure));
			}

			context.state.forgetHost(departure.name);
			notes.push(`${departure.name}: ${detail ?? 'not contacted (--force-remove)'}; ${cluster}`);
		}

		// A name given a new address is recorded at it now that the old machine is forgotten.
		context.state.recordMasters(context.config.masters);
		return notes.join(' | ');
	},
};
