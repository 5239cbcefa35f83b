import {existsSync} from 'node:fs';
import {InputError} from '../errors.js';
import {writeFileAtomic} from '../files.js';
import {readLocalTextSync} from '../safe-read.js';
import {kubernetesServiceIp, parseCidr} from './network.js';
import type {ClusterConfigInput} from './schema.js';

type EnvValue = {kind: 'scalar'; value: string} | {kind: 'array'; values: string[]} | {kind: 'computed'; text: string};

/**
 * Reads the tutorial's environment.sh without running it: assignments, arrays, quotes and ${VAR}
 * expansion. A command substitution such as $(head -c 32 /dev/urandom | base64) is never evaluated.
 */
export function parseEnvironmentSh(text: string): Map<string, EnvValue> {
	const values = new Map<string, EnvValue>();
	const expand = (raw: string) => raw.replaceAll(/\$\{(\w+)\}|\$(\w+)/g, (_, braced: string | undefined, bare: string | undefined) => {
		const found = values.get((braced ?? bare)!);
		return found?.kind === 'scalar' ? found.value : '';
	});
	for (const rawLine of text.split('\n')) {
		const line = rawLine.trim();
		const match = /^(?:export\s+)?([A-Za-z_]\w*)=(.*)$/.exec(line);
		if (!match) {
			continue;
		}

		const [, name, rest] = match as unknown as [string, string, string];
		const value = stripComment(rest.trim());
		if (value.startsWith('(')) {
			const inner = value.slice(1, value.lastIndexOf(')'));
			values.set(name, {kind: 'array', values: inner.split(/\s+/).filter(Boolean).map(word => expand(unquote(word)))});
		} else if (/^"?\$\(/.test(value) || value.includes('`')) {
			values.set(name, {kind: 'computed', text: value});
		} else if (value.startsWith('\'')) {
			values.set(name, {kind: 'scalar', value: value.slice(1, value.lastIndexOf('\''))});
		} else {
			values.set(name, {kind: 'scalar', value: expand(unquote(value))});
		}
	}

	return values;
}

function unquote(word: string): string {
	return word.length >= 2 && word.startsWith('"') && word.endsWith('"') ? word.slice(1, -1) : word;
}

function stripComment(value: string): string {
	let quote: string | undefined;
	for (let index = 0; index < value.length; index++) {
		const char = value[index]!;
		if (quote) {
			quote = char === quote ? undefined : quote;
		} else if (char === '"' || char === '\'') {
			quote = char;
		} else if (char === '#' && (index === 0 || /\s/.test(value[index - 1]!))) {
			return value.slice(0, index).trim();
		}
	}

	return value;
}

export type FromEnvResult = {config: ClusterConfigInput; encryptionKey?: string; notes: string[]};

/** The cluster config that the tutorial's environment.sh describes, plus its literal encryption key if it has one. */
export function configFromEnvironment(text: string, defaults: {version: string; tarball: string; file: string}): FromEnvResult {
	const env = parseEnvironmentSh(text);
	const notes: string[] = [];
	const scalar = (name: string) => {
		const value = env.get(name);
		return value?.kind === 'scalar' ? value.value : undefined;
	};

	const array = (name: string) => {
		const value = env.get(name);
		if (value?.kind !== 'array' || value.values.length === 0) {
			throw new InputError(`${defaults.file}: ${name}`, value?.kind === 'scalar' ? value.value : '(not set)', 'must be a bash array', `write ${name}=(first second third) in environment.sh`);
		}

		return value.values;
	};

	const ips = array('MASTER_IPS');
	const names = array('MASTER_NAMES');
	if (ips.length !== names.length) {
		throw new InputError(`${defaults.file}: MASTER_NAMES`, names.join(' '), `has ${names.length} names for ${ips.length} MASTER_IPS`, 'give one name per master IP, in the same order');
	}

	const endpoints = scalar('ETCD_ENDPOINTS');
	if (!endpoints) {
		throw new InputError(`${defaults.file}: ETCD_ENDPOINTS`, '(not set)', 'is required', 'write ETCD_ENDPOINTS="https://IP:2379,..." in environment.sh');
	}

	const serviceCidr = scalar('SERVICE_CIDR') ?? '10.254.0.0/16';
	const declaredServiceIp = scalar('CLUSTER_KUBERNETES_SVC_IP');
	if (declaredServiceIp && parseCidr(serviceCidr) && declaredServiceIp !== kubernetesServiceIp(serviceCidr)) {
		throw new InputError(`${defaults.file}: CLUSTER_KUBERNETES_SVC_IP`, declaredServiceIp, `is not the first address of SERVICE_CIDR ${serviceCidr} (${kubernetesServiceIp(serviceCidr)}), so the certificate would not match the kubernetes service`, `set CLUSTER_KUBERNETES_SVC_IP=${kubernetesServiceIp(serviceCidr)} or correct SERVICE_CIDR`);
	}

	const key = env.get('ENCRYPTION_KEY');
	let encryptionKey: string | undefined;
	if (key?.kind === 'scalar' && key.value) {
		encryptionKey = key.value;
		notes.push('ENCRYPTION_KEY was taken once as a value into encryption.key (mode 0600); it is never computed again.');
		notes.push('A fixed key means the cluster may already run: service-account tokens stay signed with the CA key, as in the tutorial (serviceAccount.signingKey: ca). For a new cluster, remove that setting to get a dedicated sa.key.');
	} else if (key?.kind === 'computed') {
		notes.push(`ENCRYPTION_KEY is computed (${key.text}) each time environment.sh is sourced, so it was not taken. A key is made once at the first render or apply. If your masters already run with an encryption config, put its key in a file and set encryption.keyFile.`);
	}

	notes.push('profile: cis (written out) hardens the tutorial\'s flags and files to the CIS Kubernetes Benchmark; on a running cluster the components then restart with them, one master at a time. profile: tutorial keeps the tutorial\'s exact settings.');
	const domain = scalar('CLUSTER_DNS_DOMAIN')?.replace(/\.$/, '');
	return {
		config: {
			version: defaults.version,
			binaries: {tarball: defaults.tarball},
			masters: ips.map((ip, index) => ({name: names[index]!, ip})),
			// The tutorial works on its masters as root; without it, the user of the operator's ssh config logs in.
			ssh: {user: 'root'},
			etcd: {endpoints: endpoints.split(',').map(endpoint => endpoint.trim()).filter(Boolean)},
			network: {serviceCidr, nodePortRange: scalar('NODE_PORT_RANGE') ?? '30000-32767', ...(domain ? {clusterDomain: domain} : {})},
			paths: {k8sDir: scalar('K8S_DIR') ?? '/data/k8s/k8s'},
			// Written out so that the choice is visible in the operator's file.
			profile: 'cis' as const,
			...(encryptionKey ? {encryption: {keyFile: './encryption.key'}, serviceAccount: {signingKey: 'ca' as const}} : {}),
		},
		encryptionKey,
		notes,
	};
}

/** Writes a key taken from environment.sh once (mode 0600); a file holding another key is never replaced. Returns whether it wrote. */
export function saveImportedEncryptionKey(keyFile: string, key: string): boolean {
	if (existsSync(keyFile)) {
		if (readLocalTextSync(keyFile, {field: 'encryption.keyFile', kind: 'encryption key', fix: 'move it away first; an encryption key is never overwritten'}).trim() !== key) {
			throw new InputError('encryption.keyFile', keyFile, 'already holds a different encryption key', 'move it away first; an encryption key is never overwritten');
		}

		return false;
	}

	writeFileAtomic(keyFile, `${key}\n`, 0o600);
	return true;
}
