import type {Master} from '../config/schema.js';
import {StepError} from '../errors.js';
import type {HostRecord} from '../state/store.js';
import {apiserverStop, readinessPath} from '../versions.js';
import {diagnoseService} from './diagnose.js';
import {drainApiserver, restoreApiserver} from './drain.js';
import type {Upload} from './files.js';
import {readinessAnd, renderedUnit, services, servicesReady, type AlsoRead, type Readiness, type ServiceName} from './readiness.js';
import {filesReason, onlyConfigWritten, restartPolicy, serviceFingerprint, serviceInputs, type ServiceFacts, type UnitStatus} from './restart-policy.js';
import type {PlannedAction, StepContext, StepDefinition} from './types.js';

/** The uploads of the steps that start depends on, on this master. */
type UploadsOf = (context: StepContext, master: Master) => Upload[];

// One systemctl for the four units (eight took about 0.1 s on a master, more when it is busy), printed
// as "UNIT ACTIVE NEEDSRELOAD" lines. ActiveState is what is-active prints; -p repeated and no
// --value: CentOS 7's systemd 219 reads both.
export const unitStatusRead: AlsoRead = {
	script: `systemctl show -p Id -p ActiveState -p NeedDaemonReload ${services.map(service => service.name).join(' ')} | awk -F= '$1 == "Id" {sub(/\\.service$/, "", $2); u = $2} $1 == "ActiveState" {a = $2} $1 == "NeedDaemonReload" {n = $2} /^$/ {if (u != "") print u, a, n; u = ""} END {if (u != "") print u, a, n}'`,
	display: 'systemctl is-active, NeedDaemonReload of the control-plane units',
};

async function unitStatus(context: StepContext, master: Master): Promise<Map<ServiceName, UnitStatus>> {
	const result = await context.remote.check(master, unitStatusRead.script, {step: 'start', display: unitStatusRead.display});
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

async function failure(context: StepContext, master: Master, name: ServiceName, message: string, command: string): Promise<StepError> {
	const journal = await context.remote.run(master, `journalctl -u ${name} -n 40 --no-pager -o cat; systemctl status ${name} --no-pager -n 0 || true`, {step: 'start', display: `journalctl -u ${name} -n 40`});
	const output = context.runner.redact(journal.stdout.trim());
	return new StepError({step: 'start', host: master.name, message, command, output: output.split('\n').slice(-15).join('\n'), fix: diagnoseService(name, output) ?? `read the journal on ${master.name}: journalctl -u ${name}`});
}

// enable --no-reload only links the units for boot: the one daemon-reload after it loads everything.
const restartScript = (enable: readonly ServiceName[], restart: readonly ServiceName[]) => `systemctl enable --no-reload ${enable.join(' ')} && systemctl daemon-reload && systemctl restart ${restart.join(' ')}`;

/** The controller-manager and the scheduler, when the apiserver restarts too: started once it answers. */
const apiserverClients: readonly ServiceName[] = ['kube-controller-manager', 'kube-scheduler'];

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

/** How long a unit that systemd is restarting on its own (Restart=) gets to come up: one RestartSec of ours and some. */
const retryGraceMs = 15_000;

/**
 * Runs a restart script. A unit whose start failed once while systemd restarts it (a transient
 * failure: cgroup set-up, etcd briefly away) gets one retry period; a failure names the first unit
 * that is not active, with its journal.
 */
async function restartUnits(context: StepContext, master: Master, names: ServiceName[], script: string): Promise<void> {
	const bounds = restartBounds(context, master, names);
	context.progress('start', master.name, {message: `restarting ${names.join(', ')}: ${bounds.says}`});
	const result = await context.remote.run(master, script, {step: 'start', timeoutMs: bounds.timeoutMs});
	if (result.exitCode === 0) {
		return;
	}

	const deadline = Date.now() + retryGraceMs;
	for (;;) {
		const after = await unitStatus(context, master);
		const failed = names.find(name => after.get(name)?.active !== 'active');
		if (!failed) {
			context.runner.log({event: 'restart-retried', host: master.name, units: names, exitCode: result.exitCode});
			return;
		}

		// "activating": systemd is starting it again (auto-restart); anything else is a failure now.
		if (after.get(failed)?.active !== 'activating' || Date.now() >= deadline) {
			throw await failure(context, master, failed, `${failed} did not start (exit ${result.exitCode})`, script);
		}

		context.progress('start', master.name, {message: `${failed} failed to start; systemd is starting it again`});
		await new Promise(resolve => setTimeout(resolve, 500));
	}
}

/** Waits until every named service is ready (or the deadline passes), stopping early when the operator asks to stop. */
async function waitReady(context: StepContext, master: Master, names: ServiceName[]): Promise<Map<ServiceName, Readiness>> {
	const deadline = Date.now() + (context.config.timeouts.readySeconds * 1000);
	for (;;) {
		// What is asked on the master waits there, up to 5 s per round trip: progress and a stop are seen between.
		const readiness = await servicesReady(context, master, names, 'start', readinessPath(context.config.kubeVersion), Math.min(5000, deadline - Date.now()));
		const waiting = [...readiness].filter(([, each]) => !each.ok);
		if (waiting.length === 0 || Date.now() >= deadline) {
			return readiness;
		}

		context.progress('start', master.name, {message: `waiting for ${waiting.map(([name, each]) => `${name}: ${each.detail}`).join('; ')}`});
		context.throwIfStopping();
		// The apiserver alone is one TLS request from here: asked more often than a round trip to the master.
		await new Promise(resolve => setTimeout(resolve, names.every(name => name === 'kube-apiserver') ? 100 : 200));
	}
}

/**
 * Starts the four services on one master. A service is restarted only when a file it reads changed
 * (since it last started healthy, or in this run), its unit is not active, or systemd holds an old
 * copy of its unit. The apiserver and kube-nginx start together; with the apiserver restarting, the
 * controller-manager and the scheduler follow once it answers. Each is waited for until ready, in start order.
 */
export function startStep(uploadsOf: UploadsOf): StepDefinition {
	const inputsOf = (context: StepContext, master: Master) => {
		const uploads = uploadsOf(context, master);
		return new Map(services.map(service => [service.name, serviceInputs(service.name, uploads)] as const));
	};

	/** What the restart policy needs of each service; the units' state when read. */
	const factsOf = (context: StepContext, master: Master, record: HostRecord | undefined, status?: Map<ServiceName, UnitStatus>): ServiceFacts[] => {
		const inputs = inputsOf(context, master);
		const changed = context.changedFiles.get(master.name);
		return services.map(({name}) => ({
			name,
			inputs: serviceFingerprint(inputs.get(name)!),
			recorded: record?.services?.[name],
			written: inputs.get(name)!.filter(upload => changed?.has(upload.path)).map(upload => upload.path),
			unit: status?.get(name),
		}));
	};

	return {
		id: 'start',
		title: 'Start the control plane and wait until ready',
		needs: ['binaries', 'certs', 'encryption', 'audit', 'units'],
		scope: 'each-master',
		order: 'rolling-when-live',
		plan: (context, master) => [
			{kind: 'remote', script: restartScript(services.map(service => service.name), services.map(service => service.name)), display: `${restartScript(services.map(service => service.name), ['kube-apiserver', 'kube-nginx'])}, then once the apiserver answers: systemctl restart ${apiserverClients.join(' ')} (only the units a changed file or a stopped unit concerns; kube-nginx is reloaded when its config alone changed; on a running cluster a restarting apiserver is taken out of kube-nginx on every master first and put back once ready)`},
			...services.map((service): PlannedAction => ({kind: 'check', description: `wait until ${service.readyText(context, master)} (up to ${context.config.timeouts.readySeconds} s)`})),
		],
		async verify(context, master, record) {
			// Every service restarts whatever its unit's state (a fresh master, new certificates everywhere): nothing to read.
			const fromFiles = factsOf(context, master, record);
			const reasons = fromFiles.map(facts => filesReason(facts));
			if (reasons.every(Boolean) && !fromFiles.some(facts => onlyConfigWritten(facts))) {
				return {done: false, detail: `${fromFiles[0]!.name}: ${reasons[0]}`, observed: new Map<ServiceName, UnitStatus>()};
			}

			// The units' state and the services' readiness in one round trip.
			const {readiness, also} = await readinessAnd(context, master, services.map(service => service.name), 'start', readinessPath(context.config.kubeVersion), unitStatusRead);
			const [change] = restartPolicy(factsOf(context, master, record, parseUnitStatus(also)));
			if (change) {
				return {done: false, detail: `${change.name}: ${change.reason}`, observed: parseUnitStatus(also)};
			}

			const notReady = [...readiness].find(([, each]) => !each.ok);
			return notReady ? {done: false, detail: `${notReady[0]} not ready (${notReady[1].detail})`, observed: parseUnitStatus(also)} : {done: true, detail: 'all four services active and ready'};
		},
		async run(context, master, _inputs, verification) {
			const inputs = inputsOf(context, master);
			// The units' state as verify just read it (none when it did not matter).
			const status = (verification?.observed as Map<ServiceName, UnitStatus> | undefined) ?? await unitStatus(context, master);
			const changes = restartPolicy(factsOf(context, master, context.state.host('start', master.name), status));
			const toRestart = changes.filter(change => change.action === 'restart').map(change => change.name);
			const toReload = changes.filter(change => change.action === 'reload').map(change => change.name);

			context.throwIfStopping();
			const restartStarted = Date.now();
			// With the apiserver restarting, its clients start once it answers. Started beside it (tried), their
			// requests through kube-nginx fail while no apiserver answers, and after max_fails=3 nginx takes every
			// apiserver out for its fail_timeout (30 s): "no live upstreams", and the start waited 25 s longer.
			const later = toRestart.includes('kube-apiserver') ? toRestart.filter(name => apiserverClients.includes(name)) : [];
			const first = toRestart.filter(name => !later.includes(name));
			const drain = toRestart.includes('kube-apiserver') ? await drainApiserver(context, master) : undefined;
			if (toRestart.length > 0) {
				// One systemctl call; it returns once the apiserver (Type=notify) and nginx (forking) are up, or one failed.
				await restartUnits(context, master, first, restartScript(toRestart, first));
			}

			for (const name of toReload) {
				await context.remote.check(master, `systemctl reload ${name}`, {step: 'start'});
			}

			// The apiserver first (the others answer only through it), then the other three together;
			// the first not ready, in start order, is reported with its journal.
			for (const names of [['kube-apiserver'], ['kube-nginx', 'kube-controller-manager', 'kube-scheduler']] as ServiceName[][]) {
				context.throwIfStopping();
				let readiness: Map<ServiceName, Readiness>;
				try {
					readiness = await waitReady(context, master, names);
				} finally {
					// The clients follow the apiserver whatever came of the wait (a stop, a timeout): left on
					// their old files they would outlive the run, as they never did when all restarted together.
					if (names.includes('kube-apiserver') && later.length > 0) {
						await restartUnits(context, master, later, `systemctl restart ${later.join(' ')}`);
					}
				}

				for (const [name, each] of readiness) {
					context.runner.log({event: 'health', host: master.name, service: name, ok: each.ok, detail: each.detail});
				}

				const notReady = [...readiness].find(([, each]) => !each.ok);
				if (notReady) {
					const service = services.find(each => each.name === notReady[0])!;
					// Out of kube-nginx it serves no one; the next apply puts it back once it is ready.
					const left = drain && service.name === 'kube-apiserver' ? `; it stays out of kube-nginx on every master until an apply finds it ready` : '';
					throw await failure(context, master, service.name, `${service.name} was not ready within ${context.config.timeouts.readySeconds} s (${notReady[1].detail})${left}`, service.readyText(context, master));
				}

				if (drain && names.includes('kube-apiserver')) {
					await restoreApiserver(context, drain);
				}

				for (const name of names) {
					context.state.recordService('start', master.name, name, serviceFingerprint(inputs.get(name)!));
				}
			}

			if (toRestart.length > 0) {
				context.state.recordRestartTime(master.name, {ms: Date.now() - restartStarted, at: new Date().toISOString(), services: toRestart});
			}

			const restarted = [...toRestart, ...toReload.map(name => `${name} (reloaded)`)];
			const drained = drain ? `; its apiserver was out of kube-nginx on ${drain.masters.length} masters meanwhile` : '';
			return restarted.length > 0 ? `restarted ${restarted.join(', ')}; all ready${drained}` : 'all ready, nothing restarted';
		},
	};
}
