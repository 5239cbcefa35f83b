import type {Master} from '../config/schema.js';
import {StepError} from '../errors.js';
import {sha256} from '../files.js';
import {renderNginxConfig, type Artifact} from '../render/artifacts.js';
import {shellQuote} from '../remote/quote.js';
import {readinessPath} from '../versions.js';
import {adminTls} from './readiness.js';
import type {StepContext, StepId} from './types.js';

/**
 * kube-nginx on every master sends to every apiserver and learns that one stopped only when a
 * connection to it fails. Two requests fail that way whatever the apiserver's shutdown flags: one
 * whose connection was queued when the stopping apiserver closed its listener (reset), and one sent
 * to a new apiserver that listens but is not ready yet (the real one serves before its RBAC caches
 * are synced). So on a running cluster a master's apiserver leaves kube-nginx on every master before
 * it restarts (its upstream `down`, a reload, and no old worker still accepting), and comes back
 * once it is ready.
 */
export type Drain = {target: Master; masters: Master[]; step: StepId};

/** Takes `target`'s apiserver out of kube-nginx everywhere, when another master's apiserver is ready to serve instead; else undefined. `step`: the start step restarting it, whose progress and record this is. */
export async function drainApiserver(context: StepContext, target: Master, step: StepId): Promise<Drain | undefined> {
	const {config} = context;
	const masters = config.masters.filter(master => !context.skipped.has(master.name));
	const others = masters.filter(master => master.name !== target.name);
	const answers = await Promise.all(others.map(async master => context.probe(master.ip, 6443, readinessPath(config.kubeVersion), adminTls(context))));
	const drained = renderNginxConfig(config, target.name);
	// An operator's own template without {{UPSTREAMS}} leaves nothing to take out.
	if (!answers.some(answer => answer.ok) || drained === nginxConfig(context).content) {
		return undefined;
	}

	context.progress(step, target.name, {message: `taking ${target.name}'s apiserver out of kube-nginx on ${masters.length} masters`});
	const drain = {target, masters, step};
	await writeEverywhere(context, drain, drained, `take ${target.name}'s apiserver out of kube-nginx`, true);
	return drain;
}

/** Puts the apiserver back into kube-nginx on the masters it was taken out of. */
export async function restoreApiserver(context: StepContext, drain: Drain): Promise<void> {
	context.progress(drain.step, drain.target.name, {message: `putting ${drain.target.name}'s apiserver back into kube-nginx`});
	// Nothing to wait for: an old worker that still leaves it out only sends to the others a moment longer.
	await writeEverywhere(context, drain, nginxConfig(context).content, `put ${drain.target.name}'s apiserver back into kube-nginx`, false);
}

/** kube-nginx's config as the units step writes it: its path, mode and content are the drain's too. */
function nginxConfig(context: StepContext): Artifact & {remote: {path: string}} {
	return context.artifacts.find((artifact): artifact is Artifact & {remote: {path: string}} => artifact.name === 'kube-nginx.conf' && artifact.remote !== undefined)!;
}

async function writeEverywhere(context: StepContext, drain: Drain, content: string, display: string, waitForOldWorker: boolean): Promise<void> {
	const confPath = nginxConfig(context).remote.path;
	const results = await Promise.allSettled(drain.masters.map(async master => {
		// Recorded before it is written: a run killed in between finds the file as its own, not as a hand edit.
		context.state.recordFile(drain.step, master.name, confPath, sha256(content));
		await context.remote.check(master, reloadScript(context, confPath, content, waitForOldWorker), {step: drain.step, display: `${display} (${confPath}, reload kube-nginx)`});
	}));
	const failed = results.findIndex(result => result.status === 'rejected');
	if (failed >= 0) {
		const master = drain.masters[failed]!;
		const reason = (results[failed] as PromiseRejectedResult).reason as Error;
		throw new StepError({step: drain.step, host: drain.target.name, message: `could not ${display} on ${master.name}: ${reason.message.split('\n')[0]}`, command: display, fix: `systemctl status kube-nginx on ${master.name}; then run apply again (nothing was restarted on ${drain.target.name} that apply will not finish)`});
	}
}

/**
 * Writes kube-nginx's config as the units step renders it on these masters and reloads it where it
 * runs, waiting until no old worker accepts: a master that leaves the cluster gets no new connection
 * once this returns.
 */
export async function rewriteNginx(context: StepContext, masters: Master[], step: string, display: string): Promise<void> {
	const {content, remote} = nginxConfig(context);
	const results = await Promise.allSettled(masters.map(async master => {
		// Recorded as the drain records it (the start step's), so the units step's record still knows the content before.
		context.state.recordFile('start', master.name, remote.path, sha256(content));
		await context.remote.check(master, reloadScript(context, remote.path, content, true), {step, display: `${display} (${remote.path}, reload kube-nginx)`});
		context.readAhead.forget(master.name, [remote.path]);
	}));
	const failed = results.findIndex(result => result.status === 'rejected');
	if (failed >= 0) {
		const master = masters[failed]!;
		const reason = (results[failed] as PromiseRejectedResult).reason as Error;
		throw new StepError({step, host: master.name, message: `could not ${display} on ${master.name}: ${reason.message.split('\n')[0]}`, command: display, fix: `systemctl status kube-nginx on ${master.name}; then run apply again`});
	}
}

/**
 * Writes the config in place and reloads kube-nginx if it runs, then waits until its old worker
 * stopped accepting (its title turns "is shutting down"): only then does no new connection reach
 * the old upstreams. A worker that never comes means nginx refused the config: its error log says why.
 */
function reloadScript(context: StepContext, confPath: string, content: string, waitForOldWorker: boolean): string {
	const {nginxDir} = context.config.paths;
	const mode = nginxConfig(context).mode.toString(8);
	const write = [
		`set -e; conf=${shellQuote(confPath)}; tmp="$conf.k8smi-drain-$$"; trap 'rm -f -- "$tmp"' EXIT`,
		`printf '%s' ${shellQuote(content)} > "$tmp"; chmod ${mode} "$tmp"; mv -f -- "$tmp" "$conf"; trap - EXIT`,
		'systemctl is-active -q kube-nginx || exit 0',
	];
	if (!waitForOldWorker) {
		return [...write, 'systemctl reload kube-nginx'].join('\n');
	}

	return [
		...write,
		`main=$(cat ${shellQuote(`${nginxDir}/logs/kube-nginx.pid`)})`,
		'workers() { ps -o pid=,args= --ppid "$main" | awk \'NF == 4 && $2 $3 $4 == "nginx:workerprocess" {print $1}\'; }',
		'old=" $(workers | tr \'\\n\' \' \')"',
		'systemctl reload kube-nginx',
		'i=0; while :; do fresh=0; stale=0; for p in $(workers); do case "$old" in *" $p "*) stale=1;; *) fresh=1;; esac; done',
		'[ $fresh = 1 ] && [ $stale = 0 ] && exit 0',
		`i=$((i+1)); if [ $i -ge 250 ]; then echo "kube-nginx did not take its new config within 5 s: $(tail -n 2 ${shellQuote(`${nginxDir}/logs/error.log`)})" >&2; exit 1; fi`,
		'sleep 0.02; done',
	].join('\n');
}
