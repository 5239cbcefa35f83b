import type {Master} from '../config/schema.js';
import {shellQuote} from '../remote/quote.js';
import {etcdctlScript} from './clients.js';
import type {StepContext, StepId} from './types.js';

/** Per key name (`plain`: stored unencrypted), how many secrets' raw values in etcd start with it, and a few of the secrets. */
export type SecretValueCount = {byKey: Record<string, number>; samples: Record<string, string[]>};

/**
 * etcdctl prints each value Go-quoted on one line (-w fields): only the value's prefix and its key
 * leave the master, never a secret's content. The raw read stays in a private temporary file.
 */
export function secretCountScript(context: StepContext, master: Master): string {
	const get = etcdctlScript(context, master, ['get', '/registry/secrets/', '--prefix', '-w', 'fields']);
	const awk = String.raw`/^"Key" : "/ {k = substr($0, 10, length($0) - 10)} /^"Value" : "/ {v = substr($0, 12); if (match(v, /^k8s:enc:[a-z0-9]+:v1:[^:]+:/)) print substr(v, 1, RLENGTH), k; else print "plain", k}`;
	return `t=$(mktemp) || exit 1; trap 'rm -f "$t"' EXIT; ${get} > "$t" || exit $?; awk ${shellQuote(awk)} "$t"`;
}

export function parseSecretCount(output: string): SecretValueCount {
	const byKey: Record<string, number> = {};
	const samples: Record<string, string[]> = {};
	for (const line of output.split('\n')) {
		const match = /^(plain|k8s:enc:([a-z\d]+):v1:([^:]+):) (\S+)$/.exec(line.trim());
		if (!match) {
			continue;
		}

		const key = match[1] === 'plain' ? 'plain' : match[2] === 'aescbc' ? match[3]! : `${match[2]}:${match[3]}`;
		byKey[key] = (byKey[key] ?? 0) + 1;
		const list = samples[key] ?? [];
		if (list.length < 5) {
			list.push(match[4]!.replace(/^\/registry\/secrets\//, ''));
		}

		samples[key] = list;
	}

	return {byKey, samples};
}

export async function countSecretValues(context: StepContext, master: Master, step: StepId): Promise<SecretValueCount> {
	const result = await context.remote.check(master, secretCountScript(context, master), {step, display: 'etcdctl get /registry/secrets/ --prefix: each raw value\'s key prefix, counted per key'});
	return parseSecretCount(result.stdout);
}

/** "230 under key2, 0 under key1" in the order given, then any other key found. */
export function describeCount(byKey: Record<string, number>, order: string[]): string {
	const names = [...new Set([...order, ...Object.keys(byKey)])];
	return names.map(name => `${byKey[name] ?? 0} under ${name}`).join(', ');
}
