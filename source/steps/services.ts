import type {Master} from '../config/schema.js';
import {sectionsScript, splitSections} from '../remote/sections.js';
import type {RestartTime} from '../state/store.js';
import {StepError} from '../errors.js';
import {apiserverStop, readinessPath} from '../versions.js';
import {diagnoseService} from './diagnose.js';
import {drainApiserver, restoreApiserver, type Drain} from './drain.js';
import type {Upload} from './files.js';
import {readinessAnd, renderedUnit, services, servicesReady, type AlsoRead, type Readiness, type ServiceName, type ServicesRead} from './readiness.js';
import {filesReason, onlyConfigWritten, restartPolicy, serviceFingerprint, serviceInputs, type ServiceFacts, type UnitStatus} from './restart-policy.js';
import {linksHeld, pruneReleases, switchHeldLinks} from './releases.js';
import type {PlannedAction, StepContext, StepDefinition, StepId} from './types.js';
import {verifyReadDisplay, verifyReadParts} from './verify.js';

/** The uploads of the steps that start depends on, on this master. */
type UploadsOf = (context: StepContext, master: Master) => Upload[];

/**
 * The order a start step restarts services on each master: group after group, each group's services
 * restarted together (those that must), the next group once the group is ready; the next group
 * follows whatever came of that wait (a stop, a timeout): left on their old files, its services
 * would outlive the run.
 */
export type RestartOrder = ReadonlyArray<readonly ServiceName[]>;

/**
 * Every master's apiserver and kube-nginx first, then every master's controller-manager and scheduler:
 * two start steps, each rolling on a running cluster. The version-skew policy wants no
 * controller-manager or scheduler newer than any apiserver it talks to, and through kube-nginx each
 * talks to all of them: in a minor upgrade they restart only once every apiserver runs the new
 * release. The same two steps serve every run (no second path for upgrades): a patch upgrade or a
 * config change restarts the same services, only in this order, and a fresh install waits for the
 * apiservers before their clients anyway (started beside them, the clients' requests through
 * kube-nginx fail while no apiserver answers, and after max_fails=3 nginx takes every apiserver out
 * for its fail_timeout, 30 s: tried, the start waited 25 s longer).
 */
export const startPhases: readonly RestartOrder[] = [[['kube-apiserver', 'kube-nginx']], [['kube-controller-manager', 'kube-scheduler']]];

/** Every group of every phase, in order. */
export const installRestartOrder: RestartOrder = startPhases.flat();

// One systemctl for the four units (eight took about 0.1 s on a master, more when it is busy), printed
// as "UNIT ACTIVE NEEDSRELOAD" lines. ActiveState is what is-active prints; -p repeated and no
// --value: CentOS 7's systemd 219 reads both.
export const unitStatusRead: AlsoRead = {
	script: `systemctl show -p Id -p ActiveState -p NeedDaemonReload ${services.map(service => service.name).join(' ')} | awk -F= '$1 == "Id" {sub(/\\.service$/, "", $2); u = $2} $1 == "ActiveState" {a = $2} $1 == "NeedDaemonReload" {n = $2} /^$/ {if (u != "") print u, a, n; u = ""} END {if (u != "") print u, a, n}'`,
	display: 'systemctl is-active, NeedDaemonReload of the control-plane units',
};

/**
 * What a start step's check reads: every service's readiness, the units' state and, beside them,
 * what verify reads on the master (verify takes it when nothing restarts). kube-nginx is asked as
 * verify asks it (?verbose).
 */
function readServices(context: StepContext, master: Master, step: StepId): Promise<ServicesRead> {
	const also: AlsoRead = {script: sectionsScript({units: unitStatusRead.script, ...verifyReadParts(context)}), display: `${unitStatusRead.display}; ${verifyReadDisplay}`};
	return readinessAnd(context, master, services.map(service => service.name), step, `${readinessPath(context.config.kubeVersion)}?verbose`, also);
}

async function unitStatus(context: StepContext, master: Master, step: StepId): Promise<Map<ServiceName, UnitStatus>> {
	const result = await context.remote.check(master, unitStatusRead.script, {step, display: unitStatusRead.display});
	return parseUnitStatus(result.stdout);
}

export function parseUnitStatus(output: string): Map<ServiceName, UnitStatus> {
	const status = new Map<ServiceName, UnitStatus>();
	for (const line of output.split('\n')) {
		const [name, active = '', needsReload = ''] = line.trim().split(/\s+/);
		if (services.some(service => service.name === name)) {
			status.set(name as ServiceName, {active, needsReload});
		}
	}

	return status;
}

async function failure(context: StepContext, master: Master, step: StepId, name: ServiceName, message: string, command: string): Promise<StepError> {
	const journal = await context.remote.run(master, `journalctl -u ${name} -n 40 --no-pager -o cat; systemctl status ${name} --no-pager -n 0 || true`, {step, display: `journalctl -u ${name} -n 40`});
	const output = context.runner.redact(journal.stdout.trim());
	return new StepError({step, host: master.name, message, command, output: output.split('\n').slice(-15).join('\n'), fix: diagnoseService(name, output) ?? `read the journal on ${master.name}: journalctl -u ${name}`});
}

/**
 * enable --no-reload only links the units for boot. A daemon-reload (a third of a second of systemd's
 * CPU on an idle master, seconds on a busy one: twice per master in an install) only when systemd
 * holds an older copy of a unit (NeedDaemonReload, drop-ins included) or gave up on one before its
 * file was there (not-found, which an older systemd may keep until a reload; 252 looks again). A unit
 * it has not loaded yet, as on a new master, is read from disk by the restart itself.
 */
export const restartScript = (enable: readonly ServiceName[], restart: readonly ServiceName[]) => `systemctl enable --no-reload ${enable.join(' ')} && if systemctl show -p NeedDaemonReload -p LoadState ${enable.join(' ')} | grep -qx -e NeedDaemonReload=yes -e LoadState=not-found; then systemctl daemon-reload; fi && systemctl restart ${restart.join(' ')}`;

/** How long a restart may take and what it waits for: a stopping apiserver waits for its requests and watches first. */
function restartBounds(context: StepContext, master: Master, names: readonly ServiceName[]): {timeoutMs: number; says: string} {
	const ready = context.config.timeouts.readySeconds;
	if (!names.includes('kube-apiserver')) {
		return {timeoutMs: (ready + 30) * 1000, says: `up to ${ready} s`};
	}

	const flags = renderedUnit(context, master, 'kube-apiserver').match(/(?<=\s)--\S+/g) ?? [];
	const stop = apiserverStop(context.config.kubeVersion, flags);
	return {timeoutMs: (stop.seconds + ready + 30) * 1000, says: `the stopping kube-apiserver waits for ${stop.waitsFor}, up to ${stop.seconds} s; then up to ${ready} s to start`};
}

/**
 * A master's restarts in this run (both start steps add to one): the plan's estimate is its whole
 * restart, apiserver to scheduler, as it was before the start was split in two.
 */
const restartsThisRun = new WeakMap<StepContext, Map<string, RestartTime>>();

function recordRestart(context: StepContext, master: Master, ms: number, restarted: ServiceName[]): void {
	const run = restartsThisRun.get(context) ?? new Map<string, RestartTime>();
	restartsThisRun.set(context, run);
	const earlier = run.get(master.name);
	const time = {ms: (earlier?.ms ?? 0) + ms, at: new Date().toISOString(), services: [...earlier?.services ?? [], ...restarted]};
	run.set(master.name, time);
	context.state.recordRestartTime(master.name, time);
}

/** How long a unit that systemd is restarting on its own (Restart=) gets to come up: one RestartSec of ours and some. */
const retryGraceMs = 15_000;

/**
 * Runs a restart script. A unit whose start failed once while systemd restarts it (a transient
 * failure: cgroup set-up, etcd briefly away) gets one retry period; a failure names the first unit
 * that is not active, with its journal.
 */
async function restartUnits(context: StepContext, master: Master, step: StepId, names: ServiceName[], script: string): Promise<void> {
	const bounds = restartBounds(context, master, names);
	context.progress(step, master.name, {message: `restarting ${names.join(', ')}: ${bounds.says}`});
	const result = await context.remote.run(master, script, {step, timeoutMs: bounds.timeoutMs});
	if (result.exitCode === 0) {
		return;
	}

	const deadline = Date.now() + retryGraceMs;
	for (;;) {
		const after = await unitStatus(context, master, step);
		const failed = names.find(name => after.get(name)?.active !== 'active');
		if (!failed) {
			context.runner.log({event: 'restart-retried', host: master.name, units: names, exitCode: result.exitCode});
			return;
		}

		// "activating": systemd is starting it again (auto-restart); anything else is a failure now.
		if (after.get(failed)?.active !== 'activating' || Date.now() >= deadline) {
			throw await failure(context, master, step, failed, `${failed} did not start (exit ${result.exitCode})`, script);
		}

		context.progress(step, master.name, {message: `${failed} failed to start; systemd is starting it again`});
		await new Promise(resolve => setTimeout(resolve, 500));
	}
}

/** Waits until every named service is ready (or the deadline passes), stopping early when the operator asks to stop. */
async function waitReady(context: StepContext, master: Master, step: StepId, names: ServiceName[]): Promise<Map<ServiceName, Readiness>> {
	const deadline = Date.now() + (context.config.timeouts.readySeconds * 1000);
	for (;;) {
		// What is asked on the master waits there, up to 5 s per round trip: progress and a stop are seen between.
		const readiness = await servicesReady(context, master, names, step, readinessPath(context.config.kubeVersion), Math.min(5000, deadline - Date.now()));
		const waiting = [...readiness].filter(([, each]) => !each.ok);
		if (waiting.length === 0 || Date.now() >= deadline) {
			return readiness;
		}

		context.progress(step, master.name, {message: `waiting for ${waiting.map(([name, each]) => `${name}: ${each.detail}`).join('; ')}`});
		context.throwIfStopping();
		// The apiserver alone is one TLS request from here: asked more often than a round trip to the master.
		await new Promise(resolve => setTimeout(resolve, names.every(name => name === 'kube-apiserver') ? 100 : 200));
	}
}

/**
 * Starts services on one master, in the groups of `order` (the install's: every service). A service
 * is restarted only when a file it reads changed (since it last started healthy, or in this run),
 * its unit is not active, or systemd holds an old copy of its unit. Each is waited for until ready,
 * in start order. Once every service runs this release, older release folders are removed (see pruneReleases).
 */
export function startStep(uploadsOf: UploadsOf, {id = 'start', order = installRestartOrder, title = 'Start the control plane and wait until ready', needs = [], completesRelease}: {id?: StepId; order?: RestartOrder; title?: string; needs?: StepId[]; completesRelease?: boolean} = {}): StepDefinition {
	const handled = services.filter(service => order.some(group => group.includes(service.name)));
	// The step after which every service of the master runs this release: it records it and prunes older ones.
	const lastOfRelease = completesRelease ?? handled.length === services.length;
	/** The files each service this step starts reads. */
	const inputsOf = (context: StepContext, master: Master) => {
		const uploads = uploadsOf(context, master);
		return new Map(handled.map(service => [service.name, serviceInputs(service.name, uploads)] as const));
	};

	/** What the restart policy needs of each service this step starts; the units' state when read. */
	const factsOf = (context: StepContext, master: Master, status?: Map<ServiceName, UnitStatus>): ServiceFacts[] => {
		const inputs = inputsOf(context, master);
		const changed = context.changedFiles.get(master.name);
		const recorded = context.state.startedWith(master.name);
		return handled.map(({name}) => ({
			name,
			inputs: serviceFingerprint(inputs.get(name)!),
			recorded: recorded?.[name],
			written: inputs.get(name)!.filter(upload => changed?.has(upload.path)).map(upload => upload.path),
			unit: status?.get(name),
		}));
	};

	/** Waits for a group (the apiserver alone first: the others answer only through it); the first not ready, in start order, is reported with its journal. */
	const waitForGroup = async (context: StepContext, master: Master, group: readonly ServiceName[], drain: Drain | undefined) => {
		const inputs = inputsOf(context, master);
		const names = handled.map(service => service.name).filter(name => group.includes(name));
		for (const wave of names.includes('kube-apiserver') && names.length > 1 ? [['kube-apiserver'], names.filter(name => name !== 'kube-apiserver')] as ServiceName[][] : [names]) {
			context.throwIfStopping();
			const readiness = await waitReady(context, master, id, wave);
			for (const [name, each] of readiness) {
				context.runner.log({event: 'health', host: master.name, service: name, ok: each.ok, detail: each.detail});
			}

			const notReady = [...readiness].find(([, each]) => !each.ok);
			if (notReady) {
				const service = services.find(each => each.name === notReady[0])!;
				// Out of kube-nginx it serves no one; the next apply puts it back once it is ready.
				const left = drain && service.name === 'kube-apiserver' ? `; it stays out of kube-nginx on every master until an apply finds it ready` : '';
				throw await failure(context, master, id, service.name, `${service.name} was not ready within ${context.config.timeouts.readySeconds} s (${notReady[1].detail})${left}`, service.readyText(context, master));
			}

			if (drain && wave.includes('kube-apiserver')) {
				await restoreApiserver(context, drain);
			}

			for (const name of wave) {
				context.state.recordService(master.name, name, serviceFingerprint(inputs.get(name)!));
			}
		}
	};

	const names = handled.map(service => service.name);
	const [firstGroup = [], ...laterGroups] = order;
	const plan = (context: StepContext, master: Master): PlannedAction[] => [
		{kind: 'remote', script: restartScript(names, names), display: [restartScript(names, firstGroup), ...laterGroups.map(group => `then once they are ready: systemctl restart ${group.join(' ')}`)].join(', ') + ` (only the units a changed file or a stopped unit concerns; kube-nginx is reloaded when its config alone changed; on a running cluster a restarting apiserver is taken out of kube-nginx on every master first and put back once ready${lastOfRelease ? `; then release folders before the previous one are removed from ${context.config.paths.binDir}` : ''})`},
		...handled.map((service): PlannedAction => ({kind: 'check', description: `wait until ${service.readyText(context, master)} (up to ${context.config.timeouts.readySeconds} s)`})),
	];
	return {
		id,
		title,
		needs: ['binaries', 'certs', 'encryption', 'audit', 'units', ...needs],
		scope: 'each-master',
		order: 'rolling-when-live',
		plan,
		// The files its own services read, and what it does: the apiserver's unit is no input of the
		// controller-managers' start, which an apiserver-only change leaves alone.
		inputs: (context, master) => [...new Set([...inputsOf(context, master).values()].flat()), ...plan(context, master)],
		// Only where this step ran before (a running cluster): on a new master nothing runs yet to read.
		readAhead: async (context, master) => {
			if (context.state.host(id, master.name)?.status === 'done') {
				await context.servicesSeen.readAhead(master.name, async () => readServices(context, master, 'preflight'));
			}
		},
		async verify(context, master) {
			if (lastOfRelease && linksHeld(context, master)) {
				return {done: false, detail: `${context.config.paths.binDir}'s links held back by binaries, to switch once every service runs ${context.config.version}`};
			}

			// Every service restarts whatever its unit's state (a fresh master, new certificates everywhere): nothing to read.
			const fromFiles = factsOf(context, master);
			const reasons = fromFiles.map(facts => filesReason(facts));
			if (reasons.every(Boolean) && !fromFiles.some(facts => onlyConfigWritten(facts))) {
				return {done: false, detail: `${fromFiles[0]!.name}: ${reasons[0]}`, observed: new Map<ServiceName, UnitStatus>()};
			}

			// The units' state and every service's readiness in one round trip (or made ahead), or what the start step before this one read of them.
			const read = context.servicesSeen.reuse(master.name, names) ?? await context.servicesSeen.takeAhead(master.name, names, context.changedFiles.get(master.name)) ?? await readServices(context, master, id);
			context.servicesSeen.remember(master.name, read);
			const status = parseUnitStatus(splitSections(read.also).get('units') ?? '');
			const readiness = names.map(name => [name, read.readiness.get(name)!] as const);
			const [change] = restartPolicy(factsOf(context, master, status));
			if (change) {
				return {done: false, detail: `${change.name}: ${change.reason}`, observed: status};
			}

			const notReady = readiness.find(([, each]) => !each.ok);
			return notReady ? {done: false, detail: `${notReady[0]} not ready (${notReady[1].detail})`, observed: status} : {done: true, detail: `${names.length === services.length ? 'all four services' : names.join(', ')} active and ready`};
		},
		async run(context, master, _inputs, verification) {
			context.servicesSeen.restarting();
			// The units' state as verify just read it (none when it did not matter).
			const status = (verification?.observed as Map<ServiceName, UnitStatus> | undefined) ?? await unitStatus(context, master, id);
			const changes = restartPolicy(factsOf(context, master, status));
			const toRestart = changes.filter(change => change.action === 'restart').map(change => change.name);
			const toReload = changes.filter(change => change.action === 'reload').map(change => change.name);

			context.throwIfStopping();
			const restartStarted = Date.now();
			const drain = toRestart.includes('kube-apiserver') ? await drainApiserver(context, master, id) : undefined;
			let daemonReloaded = false;
			let waitFailed: unknown;
			for (const group of order) {
				const restart = toRestart.filter(name => group.includes(name));
				if (restart.length > 0) {
					// One systemctl call per group; it returns once the apiserver (Type=notify) and nginx (forking) are up, or one failed.
					await restartUnits(context, master, id, restart, daemonReloaded ? `systemctl restart ${restart.join(' ')}` : restartScript(toRestart, restart));
					daemonReloaded = true;
				}

				for (const name of toReload.filter(name => group.includes(name))) {
					await context.remote.check(master, `systemctl reload ${name}`, {step: id});
				}

				// After a failed wait the later groups still restart (see RestartOrder), unwaited; the failure is reported then.
				if (waitFailed === undefined) {
					await waitForGroup(context, master, group, drain).catch((error: unknown) => {
						waitFailed = error;
					});
				}
			}

			if (waitFailed !== undefined) {
				throw waitFailed;
			}

			if (toRestart.length > 0) {
				recordRestart(context, master, Date.now() - restartStarted, toRestart);
			}

			// Every service ready on this release: it is the way back from the next one, and no unit here still runs an older one.
			let pruned: string | undefined;
			if (lastOfRelease) {
				context.state.recordStartedRelease(master.name, context.config.version);
				const linked = await switchHeldLinks(context, master, id);
				const removed = await pruneReleases(context, master, id);
				pruned = [linked, removed].filter(Boolean).join('; ') || undefined;
			}

			const restarted = [...toRestart, ...toReload.map(name => `${name} (reloaded)`)];
			const drained = drain ? `; its apiserver was out of kube-nginx on ${drain.masters.length} masters meanwhile` : '';
			return `${restarted.length > 0 ? `restarted ${restarted.join(', ')}; all ready${drained}` : 'all ready, nothing restarted'}${pruned ? `; ${pruned}` : ''}`;
		},
	};
}
