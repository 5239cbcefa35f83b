import type {Master} from '../config/schema.js';
import {flagContext} from '../render/artifacts.js';
import {shellQuote, shellWords} from '../remote/quote.js';
import type {ApiRequest} from '../remote/health.js';
import {adminTls} from './readiness.js';
import type {StepContext, StepId} from './types.js';

export type ApiResult = {ok: boolean; status: number; object: Record<string, unknown> | undefined; reason: string | undefined; problem: string};

/**
 * One call to a master's apiserver as admin, to IP:6443 (the workstation has no kube-nginx; through a
 * bastion, context.api goes over a socket forwarded through that master), logged like a command. No kubectl runs here: the workstation needs none, of any version or platform.
 */
export async function apiserver(context: StepContext, master: Master, step: StepId, request: ApiRequest): Promise<ApiResult> {
	const answer = await context.runner.call({host: master.name, step, display: `${request.method} https://${master.ip}:6443${request.path}`}, async () => context.api(master.ip, 6443, request, adminTls(context)));
	let object: Record<string, unknown> | undefined;
	try {
		object = JSON.parse(answer.body) as Record<string, unknown>;
	} catch {}

	// A failed call answers with a Status object: its reason (NotFound, AlreadyExists, Forbidden) and message.
	const reason = answer.ok ? undefined : typeof object?.reason === 'string' ? object.reason : undefined;
	const message = typeof object?.message === 'string' ? object.message : answer.body.trim().split('\n').at(-1);
	const problem = answer.ok ? '' : answer.error ? `${request.method} ${request.path}: ${answer.error}` : `${request.method} ${request.path}: HTTP ${answer.status}${reason ? ` ${reason}` : ''}${message ? `: ${message}` : ''}`;
	return {ok: answer.ok, status: answer.status, object, reason, problem};
}

/** etcdctl on a master, with the certificates the apiserver uses for etcd; every endpoint unless told (a snapshot asks one member). */
export function etcdctlScript(context: StepContext, master: Master, args: string[], endpoints = context.config.etcd.endpoints): string {
	const files = flagContext(context.config, master.ip);
	const binDir = context.config.paths.binDir;
	const searchPath = [...new Set([binDir, '/opt/k8s/bin'])].join(':');
	return `ETCDCTL_API=3 PATH="$PATH":${shellQuote(searchPath)} etcdctl ${shellWords([
		`--endpoints=${endpoints.join(',')}`,
		`--cacert=${files.etcdCaFile}`,
		`--cert=${files.etcdCertFile}`,
		`--key=${files.etcdKeyFile}`,
		...args,
	])}`;
}
