import type {Master} from '../config/schema.js';
import {unitPath} from '../render/artifacts.js';
import type {HealthAnswer} from '../remote/health.js';
import {shellQuote, shellWords} from '../remote/quote.js';
import {sectionsScript} from '../remote/sections.js';
import {readinessPath} from '../versions.js';
import type {StepContext, StepId} from './types.js';

export type ServiceName = 'kube-apiserver' | 'kube-nginx' | 'kube-controller-manager' | 'kube-scheduler';

export type Readiness = {ok: boolean; detail: string};

export type Service = {
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

export function renderedUnit(context: StepContext, master: Master, component: ServiceName): string {
	return context.artifacts.find(artifact => artifact.remote?.path === unitPath(component) && (artifact.remote.host === undefined || artifact.remote.host === master.name))?.content ?? '';
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
export type AlsoRead = {script: string; display: string};

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
	const folder = `t=$(mktemp -d) || exit 1; trap 'rm -rf "$t"' EXIT;`;
	const printed = `for i in ${indexes}; do echo "==> $i"; cat "$t/$i"; echo; done`;
	// Asked once, the probes run in the background while the read runs (their answers go to files): one wait for both.
	const [first, probes] = endpoints.length === 0
		? ['', '']
		: seconds < 1
			? [`${folder} ${runs}`, `wait; ${printed}`]
			: ['', `${folder} end=$(($(date +%s) + ${seconds})); while :; do ${runs} wait; ${allOk}; if [ "$ok" = 1 ] || [ "$(date +%s)" -ge "$end" ]; then break; fi; sleep 0.1 2>/dev/null || sleep 1; done; ${printed}`];
	const script = [first, also ? sectionsScript({read: also.script, probes}) : probes].filter(Boolean).join('\n');
	const display = [also?.display, endpoints.length > 0 ? `GET ${endpoints.map(endpoint => `127.0.0.1:${endpoint.port}${endpoint.path}`).join(', ')} on the master` : undefined].filter(Boolean).join('; ');
	const result = await context.remote.check(master, script, {step, display, timeoutMs: waitMs + (context.config.timeouts.commandSeconds * 1000)});
	// Split at the last section only: the read may print sections of its own (sectionsScript), handed back whole.
	const sections = also ? lastSection(result.stdout, 'probes') : undefined;
	const probeOutput = sections ? sections.last : result.stdout;
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

	return {answers, also: sections ? afterMarker(sections.before, 'read') : ''};
}

const markerOf = (name: string) => `##k8smi## ${name}\n`;

/** The text of a script's last section, `name`, and what came before it. */
function lastSection(output: string, name: string): {before: string; last: string} {
	const at = output.lastIndexOf(markerOf(name));
	return at === -1 ? {before: output, last: ''} : {before: output.slice(0, at), last: output.slice(at + markerOf(name).length)};
}

/** What follows a section's marker: the whole rest, sections printed inside it included. */
function afterMarker(output: string, name: string): string {
	const at = output.indexOf(markerOf(name));
	return at === -1 ? '' : output.slice(at + markerOf(name).length);
}

/**
 * Readiness of some of the four services on one master: the apiserver over TLS from here; kube-nginx
 * (and, serving on loopback, the controller-manager and the scheduler) on the master, in one round trip.
 */
export async function servicesReady(context: StepContext, master: Master, names: ServiceName[], step: StepId, nginxPath = readinessPath(context.config.kubeVersion), waitMs = 0): Promise<Map<ServiceName, Readiness>> {
	return (await readinessAnd(context, master, names, step, nginxPath, undefined, waitMs)).readiness;
}

/** servicesReady, with another read on the master done in the same round trip. */
export async function readinessAnd(context: StepContext, master: Master, names: ServiceName[], step: StepId, nginxPath: string, also?: AlsoRead, waitMs = 0): Promise<ServicesRead> {
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
	return {readiness: new Map(names.map(name => [name, answers.get(name)!])), also: onMaster.also, nginxPath};
}

/** nginxPath: what kube-nginx was asked (the plain readiness path, or with ?verbose). */
export type ServicesRead = {readiness: Map<ServiceName, Readiness>; also: string; nginxPath: string};

/**
 * What a start step's check read on each master (every service's readiness, the units' state), for
 * the checks after it in the same run (the controller-managers' start step, verify): on a run that
 * restarts nothing they need not ask the master again. Kept only while no start step of this run
 * restarted anything: a restart anywhere (an apiserver gone for seconds) may change what the other
 * services answer.
 *
 * The same read may be made ahead, beside the files' read-ahead at the start of apply (readAhead):
 * the start step's check takes it instead of a round trip of its own, when it is recent and nothing
 * restarted or was written on that master since it was sent.
 */
export class ServicesSeen {
	private static readonly recentMs = 10_000;
	private readonly byMaster = new Map<string, ServicesRead>();
	private readonly ahead = new Map<string, {at: number; reading: Promise<ServicesRead | undefined>}>();
	private restarted = false;

	remember(master: string, read: ServicesRead): void {
		if (!this.restarted) {
			this.byMaster.set(master, read);
		}
	}

	/** The read of this master, if it answers for every one of `names` (kube-nginx asked at `nginxPath`). */
	reuse(master: string, names: ServiceName[], nginxPath?: string): ServicesRead | undefined {
		const read = this.byMaster.get(master);
		return read && covers(read, names, nginxPath) ? read : undefined;
	}

	/** Starts a read ahead of this master (once); it never fails: a read that did not come back is made again when needed. */
	async readAhead(master: string, read: () => Promise<ServicesRead>): Promise<void> {
		if (this.ahead.has(master) || this.restarted) {
			return;
		}

		// The age counts from before the read: a change made while it ran is not older than the reading.
		const reading = read().catch(() => undefined);
		this.ahead.set(master, {at: Date.now(), reading});
		await reading;
	}

	/** The read made ahead of this master, taken once: only if recent, and nothing restarted or was `written` on the master since. */
	async takeAhead(master: string, names: ServiceName[], written: ReadonlySet<string> | undefined): Promise<ServicesRead | undefined> {
		const ahead = this.ahead.get(master);
		this.ahead.delete(master);
		const read = await ahead?.reading;
		const unchanged = ahead !== undefined && !this.restarted && (written?.size ?? 0) === 0 && Date.now() - ahead.at <= ServicesSeen.recentMs;
		return read && unchanged && covers(read, names) ? read : undefined;
	}

	restarting(): void {
		this.restarted = true;
		this.byMaster.clear();
		this.ahead.clear();
	}
}

const covers = (read: ServicesRead, names: ServiceName[], nginxPath?: string) => names.every(name => read.readiness.has(name)) && (nginxPath === undefined || !names.includes('kube-nginx') || read.nginxPath === nginxPath);

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
