import type {Master} from '../config/schema.js';
import {StepError} from '../errors.js';
import {sha256} from '../files.js';
import {unitPath} from '../render/artifacts.js';
import type {HealthAnswer} from '../remote/health.js';
import {shellQuote, shellWords} from '../remote/quote.js';
import {sectionsScript, splitSections} from '../remote/sections.js';
import {apiserverStop, readinessPath} from '../versions.js';
import {diagnoseService} from './diagnose.js';
import {drainApiserver, restoreApiserver} from './drain.js';
import type {Upload} from './files.js';
import type {PlannedAction, StepContext, StepDefinition, StepId} from './types.js';

export type ServiceName = 'kube-apiserver' | 'kube-nginx' | 'kube-controller-manager' | 'kube-scheduler';

type Readiness = {ok: boolean; detail: string};

type Service = {
	name: ServiceName;
	/** For plan: what "ready" means. */
	readyText: (context: StepContext, master: Master) => string;
};

export function adminTls(context: StepContext) {
	return {ca: context.material.ca.certPem, cert: context.material.leaves.admin.certPem, key: context.material.leaves.admin.keyPem};
}

function answerText(answer: HealthAnswer): string {
	return answer.ok ? 'ok' : answer.error ?? `HTTP ${answer.status}${answer.body.trim() ? `: ${answer.body.trim().split('\n').at(-1)}` : ''}`;
}

/**
 * Whether the controller-manager or the scheduler serves on 127.0.0.1 only (profile: cis), read from
 * its rendered unit, so that an operator's --bind-address in extraFlags is followed: then it is asked
 * on the master with its own credentials, else from here on the master's address.
 */
function servesOnLoopback(context: StepContext, master: Master, component: 'kube-controller-manager' | 'kube-scheduler'): boolean {
	return /--bind-address=127\.0\.0\.1(?!\S)/.test(renderedUnit(context, master, component));
}

function renderedUnit(context: StepContext, master: Master, component: ServiceName): string {
	return context.artifacts.find(artifact => artifact.remote?.path === unitPath(component) && (artifact.remote.host === undefined || artifact.remote.host === master.name))?.content ?? '';
}

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

const componentPorts = {'kube-controller-manager': 10_257, 'kube-scheduler': 10_259} as const;

/** An HTTPS endpoint on a master's loopback, asked on the master with a component's own credentials. */
type LocalEndpoint = {service: ServiceName; port: number; path: string; identity: 'kube-controller-manager' | 'kube-scheduler'};

/**
 * One GET on the master: curl when the master has it (a fraction of kubectl's start-up), else the
 * release's own kubectl; the last line printed is the HTTP status (200 from kubectl means it succeeded).
 */
function localGetScript(context: StepContext, endpoint: LocalEndpoint): string {
	const {binDir, certDir, configDir} = context.config.paths;
	const url = `https://127.0.0.1:${endpoint.port}${endpoint.path}`;
	// -q: no ~/.curlrc; --noproxy: a master's https_proxy (pam_env, /etc/environment) must not take loopback.
	const curl = `curl -q --noproxy '*' -sS --max-time 5 ${shellWords(['--cacert', `${certDir}/ca.pem`, '--cert', `${certDir}/${endpoint.identity}.pem`, '--key', `${certDir}/${endpoint.identity}-key.pem`])} -w '\\n%{http_code}' ${shellQuote(url)}`;
	const kubectl = `${shellQuote(`${binDir}/kubectl`)} ${shellWords(['--kubeconfig', `${configDir}/${endpoint.identity}.kubeconfig`, `--server=https://127.0.0.1:${endpoint.port}`, '--request-timeout=5s', 'get', `--raw=${endpoint.path}`])} && printf '\\n200'`;
	return `if command -v curl >/dev/null 2>&1; then ${curl}; else ${kubectl}; fi`;
}

/** A read done on the master in the same round trip as the probes: its output comes back apart. */
type AlsoRead = {script: string; display: string};

/**
 * Asks every endpoint side by side on the master, in one round trip (with `also`, when given, first,
 * in a section of its own).
 * With `waitMs`, the master asks again every 100 ms until all answer 200 or the time is up: a wait
 * then ends as soon as the services are ready, not at the next round trip.
 */
async function probeOnMaster(context: StepContext, master: Master, endpoints: LocalEndpoint[], step: StepId, also?: AlsoRead, waitMs = 0): Promise<{answers: Map<ServiceName, Readiness>; also: string}> {
	const indexes = endpoints.map((_, index) => index).join(' ');
	const runs = endpoints.map((endpoint, index) => `(${localGetScript(context, endpoint)}) > "$t/${index}" 2>&1 &`).join(' ');
	// The last line of each answer is its status; read with builtins only (no process per look).
	const allOk = `ok=1; for i in ${indexes}; do s=; while IFS= read -r l || [ -n "$l" ]; do s=$l; l=; done < "$t/$i"; [ "$s" = 200 ] || ok=0; done`;
	const seconds = Math.floor(waitMs / 1000);
	const ask = seconds < 1 ? `${runs} wait;` : `end=$(($(date +%s) + ${seconds})); while :; do ${runs} wait; ${allOk}; if [ "$ok" = 1 ] || [ "$(date +%s)" -ge "$end" ]; then break; fi; sleep 0.1 2>/dev/null || sleep 1; done;`;
	const probes = endpoints.length === 0 ? '' : `t=$(mktemp -d) || exit 1; trap 'rm -rf "$t"' EXIT; ${ask} for i in ${indexes}; do echo "==> $i"; cat "$t/$i"; echo; done`;
	const script = also ? sectionsScript({read: also.script, probes}) : probes;
	const display = [also?.display, endpoints.length > 0 ? `GET ${endpoints.map(endpoint => `127.0.0.1:${endpoint.port}${endpoint.path}`).join(', ')} on the master` : undefined].filter(Boolean).join('; ');
	const result = await context.remote.check(master, script, {step, display, timeoutMs: waitMs + (context.config.timeouts.commandSeconds * 1000)});
	const sections = also ? splitSections(result.stdout) : undefined;
	const probeOutput = sections ? sections.get('probes') ?? '' : result.stdout;
	const answers = new Map<ServiceName, Readiness>();
	for (const [index, endpoint] of endpoints.entries()) {
		const block = probeOutput.split(`==> ${index}\n`)[1]?.split(/\n==> \d+\n/)[0] ?? '';
		const lines = block.trimEnd().split('\n');
		const status = lines.at(-1)?.trim() ?? '';
		const body = lines.slice(0, -1).join('\n').trim();
		answers.set(endpoint.service, status === '200'
			? {ok: true, detail: body.split('\n').at(-1) ?? 'ok'}
			: {ok: false, detail: /^\d{3}$/.test(status) && status !== '000' ? `HTTP ${status}${body ? `: ${body.split('\n').at(-1)}` : ''}` : (body || status || 'no answer').split('\n').at(-1)!});
	}

	return {answers, also: sections?.get('read') ?? ''};
}

/**
 * Readiness of some of the four services on one master: the apiserver over TLS from here; kube-nginx
 * (and, serving on loopback, the controller-manager and the scheduler) on the master, in one round trip.
 */
export async function servicesReady(context: StepContext, master: Master, names: ServiceName[], step: StepId, nginxPath = readinessPath(context.config.kubeVersion), waitMs = 0): Promise<Map<ServiceName, Readiness>> {
	return (await readinessAnd(context, master, names, step, nginxPath, undefined, waitMs)).readiness;
}

/** servicesReady, with another read on the master done in the same round trip. */
async function readinessAnd(context: StepContext, master: Master, names: ServiceName[], step: StepId, nginxPath: string, also?: AlsoRead, waitMs = 0): Promise<{readiness: Map<ServiceName, Readiness>; also: string}> {
	const local: LocalEndpoint[] = [];
	const direct: Array<Promise<[ServiceName, Readiness]>> = [];
	const fromHere = async (name: ServiceName, port: number, pathName: string): Promise<[ServiceName, Readiness]> => {
		const answer = await context.probe(master.ip, port, pathName, adminTls(context));
		return [name, {ok: answer.ok, detail: answerText(answer)}];
	};

	for (const name of names) {
		if (name === 'kube-apiserver') {
			direct.push(fromHere(name, 6443, readinessPath(context.config.kubeVersion)));
		} else if (name === 'kube-nginx') {
			local.push({service: name, port: 8443, path: nginxPath, identity: 'kube-controller-manager'});
		} else if (servesOnLoopback(context, master, name)) {
			local.push({service: name, port: componentPorts[name], path: '/healthz', identity: name});
		} else {
			direct.push(fromHere(name, componentPorts[name], '/healthz'));
		}
	}

	const [onMaster, answeredHere] = await Promise.all([local.length > 0 || also ? probeOnMaster(context, master, local, step, also, waitMs) : {answers: new Map<ServiceName, Readiness>(), also: ''}, Promise.all(direct)]);
	const answers = new Map<ServiceName, Readiness>([...onMaster.answers, ...answeredHere]);
	return {readiness: new Map(names.map(name => [name, answers.get(name)!])), also: onMaster.also};
}

/** In start order: the apiserver first, then the proxy in front of the apiservers, then its clients. */
export const services: Service[] = [
	{
		name: 'kube-apiserver',
		readyText: (context, master) => `https://${master.ip}:6443${readinessPath(context.config.kubeVersion)} answers ok (admin certificate)`,
	},
	{
		name: 'kube-nginx',
		readyText: context => `https://127.0.0.1:8443${readinessPath(context.config.kubeVersion)} answers ok on the master (curl, else kubectl, with the controller-manager's certificate)`,
	},
	...(['kube-controller-manager', 'kube-scheduler'] as const).map((name): Service => ({
		name,
		readyText: (context, master) => (servesOnLoopback(context, master, name)
			? `https://127.0.0.1:${componentPorts[name]}/healthz answers ok on the master (its own certificate)`
			: `https://${master.ip}:${componentPorts[name]}/healthz answers ok`),
	})),
];

function mentions(text: string, remotePath: string): boolean {
	return new RegExp(`${remotePath.replaceAll(/[.*+?^${}()|[\]\\/]/g, '\\$&')}(?![\\w.-])`).test(text);
}

const textOf = (upload: Upload) => ('content' in upload.source ? upload.source.content : '');

/**
 * The files a service reads: its unit, what the unit names (binary, certificates, configs), and
 * what those name in turn (the scheduler's config names its kubeconfig). Derived from the
 * rendered files, so an operator's own template is followed too.
 */
export function serviceInputs(name: ServiceName, uploads: Upload[]): Upload[] {
	const unit = uploads.find(upload => upload.path === unitPath(name));
	if (!unit) {
		return [];
	}

	const direct = uploads.filter(upload => upload !== unit && mentions(textOf(unit), upload.path));
	const indirect = uploads.filter(upload => upload !== unit && !direct.includes(upload) && direct.some(each => mentions(textOf(each), upload.path)));
	return [unit, ...direct, ...indirect];
}

function serviceFingerprint(inputs: Upload[]): string {
	return sha256(JSON.stringify(inputs.map(upload => [upload.path, upload.sha256, upload.mode]).sort()));
}

/** The uploads of the steps that start depends on, on this master. */
type UploadsOf = (context: StepContext, master: Master) => Upload[];

type UnitStatus = {active: string; needsReload: string};

// Without --value (systemd 230+): CentOS 7's systemd 219 prints NeedDaemonReload=no too.
const unitStatusRead: AlsoRead = {
	script: `for u in ${services.map(service => service.name).join(' ')}; do r=$(systemctl show -p NeedDaemonReload "$u"); echo "$u $(systemctl is-active "$u") \${r#*=}"; done`,
	display: 'systemctl is-active, NeedDaemonReload of the control-plane units',
};

async function unitStatus(context: StepContext, master: Master): Promise<Map<ServiceName, UnitStatus>> {
	const result = await context.remote.check(master, unitStatusRead.script, {step: 'start', display: unitStatusRead.display});
	return parseUnitStatus(result.stdout);
}

function parseUnitStatus(output: string): Map<ServiceName, UnitStatus> {
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

/** kube-nginx of which only the config was written in this run: a reload may do, if it runs from an unchanged unit. */
function onlyConfigWritten(context: StepContext, master: Master, name: ServiceName, inputs: Upload[]): boolean {
	const changed = context.changedFiles.get(master.name);
	const written = inputs.filter(upload => changed?.has(upload.path));
	return name === 'kube-nginx' && written.length > 0 && written.every(upload => upload.path.endsWith('/conf/kube-nginx.conf'));
}

function onlyConfigChanged(context: StepContext, master: Master, name: ServiceName, inputs: Upload[], status: UnitStatus | undefined): boolean {
	return onlyConfigWritten(context, master, name, inputs) && status?.active === 'active' && status.needsReload === 'no';
}

// enable --no-reload only links the units for boot: the one daemon-reload after it loads everything.
const restartScript = (enable: readonly ServiceName[], restart: readonly ServiceName[]) => `systemctl enable --no-reload ${enable.join(' ')} && systemctl daemon-reload && systemctl restart ${restart.join(' ')}`;

/** The controller-manager and the scheduler, when the apiserver restarts too: started once it answers. */
const apiserverClients: readonly ServiceName[] = ['kube-controller-manager', 'kube-scheduler'];

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

	/** A reason found in the files alone, whatever state the unit is in. */
	const filesReason = (context: StepContext, master: Master, inputs: Upload[], recorded: string | undefined): string | undefined => {
		const changed = context.changedFiles.get(master.name);
		if (recorded !== serviceFingerprint(inputs)) {
			return recorded ? 'a file it reads changed' : 'not started by this install';
		}

		return inputs.some(upload => changed?.has(upload.path)) ? 'a file it reads was written in this run' : undefined;
	};

	const reasonToRestart = (context: StepContext, master: Master, name: ServiceName, inputs: Upload[], recorded: string | undefined, status: UnitStatus | undefined): string | undefined => {
		const fromFiles = filesReason(context, master, inputs, recorded);
		if (fromFiles) {
			return fromFiles;
		}

		if (status?.active !== 'active') {
			return `it is ${status?.active ?? 'unknown'}`;
		}

		return status.needsReload === 'no' ? undefined : 'its unit changed on disk';
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
			const inputs = inputsOf(context, master);
			// Every service restarts whatever its unit's state (a fresh master, new certificates everywhere): nothing to read.
			const reasons = services.map(service => filesReason(context, master, inputs.get(service.name)!, record?.services?.[service.name]));
			if (reasons.every(Boolean) && !services.some(service => onlyConfigWritten(context, master, service.name, inputs.get(service.name)!))) {
				return {done: false, detail: `${services[0]!.name}: ${reasons[0]}`, observed: new Map<ServiceName, UnitStatus>()};
			}

			// The units' state and the services' readiness in one round trip.
			const {readiness, also} = await readinessAnd(context, master, services.map(service => service.name), 'start', readinessPath(context.config.kubeVersion), unitStatusRead);
			const status = parseUnitStatus(also);
			for (const service of services) {
				const reason = reasonToRestart(context, master, service.name, inputs.get(service.name)!, record?.services?.[service.name], status.get(service.name));
				if (reason) {
					return {done: false, detail: `${service.name}: ${reason}`, observed: status};
				}
			}

			const notReady = [...readiness].find(([, each]) => !each.ok);
			return notReady ? {done: false, detail: `${notReady[0]} not ready (${notReady[1].detail})`, observed: status} : {done: true, detail: 'all four services active and ready'};
		},
		async run(context, master, _inputs, verification) {
			const inputs = inputsOf(context, master);
			// The units' state as verify just read it (none when it did not matter).
			const status = (verification?.observed as Map<ServiceName, UnitStatus> | undefined) ?? await unitStatus(context, master);
			const toRestart: ServiceName[] = [];
			const toReload: ServiceName[] = [];
			for (const service of services) {
				const recorded = context.state.host('start', master.name)?.services?.[service.name];
				if (reasonToRestart(context, master, service.name, inputs.get(service.name)!, recorded, status.get(service.name))) {
					// A reload keeps nginx's open connections (the components' watches and leader elections).
					(onlyConfigChanged(context, master, service.name, inputs.get(service.name)!, status.get(service.name)) ? toReload : toRestart).push(service.name);
				}
			}

			context.throwIfStopping();
			// With the apiserver restarting, its clients start once it answers: started beside it, their first
			// leader election fails and the next comes only after the retry period (2 s), so verify waits longer.
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

			const restarted = [...toRestart, ...toReload.map(name => `${name} (reloaded)`)];
			const drained = drain ? `; its apiserver was out of kube-nginx on ${drain.masters.length} masters meanwhile` : '';
			return restarted.length > 0 ? `restarted ${restarted.join(', ')}; all ready${drained}` : 'all ready, nothing restarted';
		},
	};
}
