import type {Master} from '../config/schema.js';
import {StepError} from '../errors.js';
import {sha256} from '../files.js';
import {unitPath} from '../render/artifacts.js';
import type {HealthAnswer} from '../remote/health.js';
import {shellQuote, shellWords} from '../remote/quote.js';
import type {StepId} from '../state/store.js';
import {readinessPath} from '../versions.js';
import {diagnoseService} from './diagnose.js';
import type {Upload} from './files.js';
import type {PlannedAction, StepContext, StepDefinition} from './types.js';

export type ServiceName = 'kube-apiserver' | 'kube-nginx' | 'kube-controller-manager' | 'kube-scheduler';

type Readiness = {ok: boolean; detail: string};

type Service = {
	name: ServiceName;
	/** For plan: what "ready" means. */
	readyText: (context: StepContext, master: Master) => string;
	ready: (context: StepContext, master: Master) => Promise<Readiness>;
};

export function adminTls(context: StepContext) {
	return {ca: context.material.ca.certPem, cert: context.material.leaves.admin.certPem, key: context.material.leaves.admin.keyPem};
}

function answerText(answer: HealthAnswer): string {
	return answer.ok ? 'ok' : answer.error ?? `HTTP ${answer.status}${answer.body.trim() ? `: ${answer.body.trim().split('\n').at(-1)}` : ''}`;
}

async function probeReady(context: StepContext, master: Master, port: number, pathName: string): Promise<Readiness> {
	const answer = await context.probe(master.ip, port, pathName, adminTls(context));
	return {ok: answer.ok, detail: answerText(answer)};
}

/** kubectl on the master through kube-nginx, with the controller-manager's own credentials. */
export function throughProxyScript(context: StepContext, pathName: string): string {
	const {binDir, configDir} = context.config.paths;
	return `${shellQuote(`${binDir}/kubectl`)} ${shellWords(['--kubeconfig', `${configDir}/kube-controller-manager.kubeconfig`, '--request-timeout=5s', 'get', `--raw=${pathName}`])}`;
}

export async function readyThroughProxy(context: StepContext, master: Master, pathName: string, step: StepId): Promise<Readiness & {output: string}> {
	const result = await context.remote.run(master, throughProxyScript(context, pathName), {step, display: `kubectl get --raw=${pathName} via 127.0.0.1:8443`});
	if (result.exitCode === 255) {
		// ssh itself failed: that is a host problem, not an answer.
		await context.remote.check(master, 'true', {step});
	}

	const output = result.stdout.trim();
	return {ok: result.exitCode === 0 && /ok|passed/.test(output), detail: result.exitCode === 0 ? output.split('\n').at(-1) ?? '' : result.stderr.trim().split('\n').at(-1) ?? `exit ${result.exitCode}`, output};
}

/** Under the CIS profile the controller-manager and the scheduler serve on 127.0.0.1 only: asked on the master, with their own credentials. */
export const servesOnLoopback = (context: StepContext) => context.config.profile === 'cis';

export function componentHealthText(context: StepContext, master: Master, port: number): string {
	return servesOnLoopback(context) ? `https://127.0.0.1:${port}/healthz answers ok on the master (kubectl with the component's kubeconfig)` : `https://${master.ip}:${port}/healthz answers ok`;
}

/** /healthz of the controller-manager (10257) or the scheduler (10259), wherever it serves. */
export async function componentHealth(context: StepContext, master: Master, component: 'kube-controller-manager' | 'kube-scheduler', step: StepId): Promise<Readiness> {
	const port = component === 'kube-controller-manager' ? 10_257 : 10_259;
	if (!servesOnLoopback(context)) {
		return probeReady(context, master, port, '/healthz');
	}

	const {binDir, configDir} = context.config.paths;
	const script = `${shellQuote(`${binDir}/kubectl`)} ${shellWords(['--kubeconfig', `${configDir}/${component}.kubeconfig`, `--server=https://127.0.0.1:${port}`, '--request-timeout=5s', 'get', '--raw=/healthz'])}`;
	const result = await context.remote.run(master, script, {step, display: `kubectl get --raw=/healthz via 127.0.0.1:${port}`});
	if (result.exitCode === 255) {
		await context.remote.check(master, 'true', {step});
	}

	const output = result.stdout.trim();
	return {ok: result.exitCode === 0 && output === 'ok', detail: result.exitCode === 0 ? output : result.stderr.trim().split('\n').at(-1) ?? `exit ${result.exitCode}`};
}

/** In start order: the apiserver first, then the proxy in front of the apiservers, then its clients. */
export const services: Service[] = [
	{
		name: 'kube-apiserver',
		readyText: (context, master) => `https://${master.ip}:6443${readinessPath(context.config.kubeVersion)} answers ok (admin certificate)`,
		ready: async (context, master) => probeReady(context, master, 6443, readinessPath(context.config.kubeVersion)),
	},
	{
		name: 'kube-nginx',
		readyText: context => `https://127.0.0.1:8443${readinessPath(context.config.kubeVersion)} answers ok on the master (kubectl with the controller-manager's kubeconfig)`,
		ready: async (context, master) => readyThroughProxy(context, master, readinessPath(context.config.kubeVersion), 'start'),
	},
	{
		name: 'kube-controller-manager',
		readyText: (context, master) => componentHealthText(context, master, 10_257),
		ready: async (context, master) => componentHealth(context, master, 'kube-controller-manager', 'start'),
	},
	{
		name: 'kube-scheduler',
		readyText: (context, master) => componentHealthText(context, master, 10_259),
		ready: async (context, master) => componentHealth(context, master, 'kube-scheduler', 'start'),
	},
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

/** The units' state as verify just read it, handed to the run that follows on the same master (one read, not two). */
const statusForRun = new WeakMap<StepContext, Map<string, Map<ServiceName, UnitStatus>>>();

async function unitStatus(context: StepContext, master: Master): Promise<Map<ServiceName, UnitStatus>> {
	// Without --value (systemd 230+): CentOS 7's systemd 219 prints NeedDaemonReload=no too.
	const script = `for u in ${services.map(service => service.name).join(' ')}; do r=$(systemctl show -p NeedDaemonReload "$u"); echo "$u $(systemctl is-active "$u") \${r#*=}"; done`;
	const result = await context.remote.check(master, script, {step: 'start', display: 'systemctl is-active, NeedDaemonReload of the control-plane units'});
	const status = new Map<ServiceName, UnitStatus>();
	for (const line of result.stdout.split('\n')) {
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

/** kube-nginx whose config alone was written in this run, while it runs from an unchanged unit. */
function onlyConfigChanged(context: StepContext, master: Master, name: ServiceName, inputs: Upload[], status: UnitStatus | undefined): boolean {
	const changed = context.changedFiles.get(master.name);
	const written = inputs.filter(upload => changed?.has(upload.path));
	return name === 'kube-nginx' && status?.active === 'active' && status.needsReload === 'no'
		&& written.length > 0 && written.every(upload => upload.path.endsWith('/conf/kube-nginx.conf'));
}

// enable --no-reload only links the units for boot: the one daemon-reload after it loads everything.
const restartScript = (names: readonly ServiceName[]) => `systemctl enable --no-reload ${names.join(' ')} && systemctl daemon-reload && systemctl restart ${names.join(' ')}`;

/** Waits until the service is ready, stopping early when the operator asks to stop. */
async function waitReady(context: StepContext, master: Master, service: Service): Promise<Readiness> {
	const deadline = Date.now() + (context.config.timeouts.readySeconds * 1000);
	for (;;) {
		const readiness = await service.ready(context, master);
		if (readiness.ok || Date.now() >= deadline) {
			return readiness;
		}

		context.progress('start', master.name, {message: `waiting for ${service.name}: ${readiness.detail}`});
		context.throwIfStopping();
		await new Promise(resolve => setTimeout(resolve, 200));
	}
}

/**
 * Starts the four services on one master. A service is restarted only when a file it reads changed
 * (since it last started healthy, or in this run), its unit is not active, or systemd holds an old
 * copy of its unit; those start together, then each is waited for until ready, in start order.
 */
export function startStep(uploadsOf: UploadsOf): StepDefinition {
	const inputsOf = (context: StepContext, master: Master) => {
		const uploads = uploadsOf(context, master);
		return new Map(services.map(service => [service.name, serviceInputs(service.name, uploads)] as const));
	};

	const reasonToRestart = (context: StepContext, master: Master, name: ServiceName, inputs: Upload[], recorded: string | undefined, status: UnitStatus | undefined): string | undefined => {
		const changed = context.changedFiles.get(master.name);
		if (recorded !== serviceFingerprint(inputs)) {
			return recorded ? 'a file it reads changed' : 'not started by this install';
		}

		if (inputs.some(upload => changed?.has(upload.path))) {
			return 'a file it reads was written in this run';
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
		rollingWhenLive: true,
		plan: (context, master) => [
			{kind: 'remote', script: restartScript(services.map(service => service.name)), display: `${restartScript(services.map(service => service.name))} (only the units a changed file or a stopped unit concerns; kube-nginx is reloaded when its config alone changed)`},
			...services.map((service): PlannedAction => ({kind: 'check', description: `wait until ${service.readyText(context, master)} (up to ${context.config.timeouts.readySeconds} s)`})),
		],
		async verify(context, master, record) {
			const inputs = inputsOf(context, master);
			const status = await unitStatus(context, master);
			for (const service of services) {
				const reason = reasonToRestart(context, master, service.name, inputs.get(service.name)!, record?.services?.[service.name], status.get(service.name));
				if (reason) {
					statusForRun.set(context, (statusForRun.get(context) ?? new Map<string, Map<ServiceName, UnitStatus>>()).set(master.name, status));
					return {done: false, detail: `${service.name}: ${reason}`};
				}

				const readiness = await service.ready(context, master);
				if (!readiness.ok) {
					return {done: false, detail: `${service.name} not ready (${readiness.detail})`};
				}
			}

			return {done: true, detail: 'all four services active and ready'};
		},
		async run(context, master) {
			const inputs = inputsOf(context, master);
			const read = statusForRun.get(context)?.get(master.name);
			statusForRun.get(context)?.delete(master.name);
			const status = read ?? await unitStatus(context, master);
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
			if (toRestart.length > 0) {
				// One systemctl call starts them side by side (the others retry until the apiserver answers);
				// it returns once the apiserver (Type=notify) and nginx (forking) are up, or one failed.
				const script = restartScript(toRestart);
				context.progress('start', master.name, {message: `restarting ${toRestart.join(', ')}`});
				const result = await context.remote.run(master, script, {step: 'start', timeoutMs: (context.config.timeouts.readySeconds + 30) * 1000});
				if (result.exitCode !== 0) {
					const after = await unitStatus(context, master);
					const failed = toRestart.find(name => after.get(name)?.active !== 'active') ?? toRestart[0]!;
					throw await failure(context, master, failed, `${failed} did not start (exit ${result.exitCode})`, script);
				}
			}

			for (const name of toReload) {
				await context.remote.check(master, `systemctl reload ${name}`, {step: 'start'});
			}

			const ready = async (service: Service) => {
				context.throwIfStopping();
				const readiness = await waitReady(context, master, service);
				context.runner.log({event: 'health', host: master.name, service: service.name, ok: readiness.ok, detail: readiness.detail});
				if (!readiness.ok) {
					throw await failure(context, master, service.name, `${service.name} was not ready within ${context.config.timeouts.readySeconds} s (${readiness.detail})`, service.readyText(context, master));
				}

				context.state.recordService('start', master.name, service.name, serviceFingerprint(inputs.get(service.name)!));
			};

			// The apiserver first (the others answer only through it); then the rest side by side,
			// every wait run to its end, and the first failure in start order reported.
			const [apiserver, ...others] = services;
			await ready(apiserver!);
			const settled = await Promise.allSettled(others.map(ready));
			const rejected = settled.find(outcome => outcome.status === 'rejected');
			if (rejected) {
				throw rejected.reason;
			}

			const restarted = [...toRestart, ...toReload.map(name => `${name} (reloaded)`)];
			return restarted.length > 0 ? `restarted ${restarted.join(', ')}; all ready` : 'all ready, nothing restarted';
		},
	};
}
