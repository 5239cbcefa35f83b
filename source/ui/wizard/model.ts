import {existsSync, statSync} from 'node:fs';
import {homedir} from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import {configFromEnvironment, saveImportedEncryptionKey} from '../../config/from-env.js';
import {localFileFields, parseConfigText, resolveConfig} from '../../config/load.js';
import {cidrContains, ipv4ToNumber, isIpv4, kubernetesServiceIp, numberToIpv4, parseCidr} from '../../config/network.js';
import {configSchema, fixSeparator} from '../../config/schema.js';
import {InputError, InputErrors} from '../../errors.js';
import {formatBytes} from '../../reporters/format.js';
import {writeFileAtomic} from '../../files.js';
import {readLocalTextSync} from '../../safe-read.js';

export type MasterAnswer = {name: string; ip: string};

/** What the wizard asks, as typed (text), before it becomes a config. */
export type Answers = {
	version: string;
	tarball: string;
	masters: MasterAnswer[];
	sshUser: string;
	sshPort: string;
	identityFile: string;
	etcdEndpoints: string;
	serviceCidr: string;
	nodePortRange: string;
	k8sDir: string;
};

export type TextFieldId = Exclude<keyof Answers, 'masters'>;
export type FieldId = TextFieldId | 'masters';

export type FieldSpec = {id: FieldId; field: string; question: string; help: string};

/** The questions, in the order they are asked; `field` is the config key the answer lands in. */
export const fieldSpecs: FieldSpec[] = [
	{id: 'version', field: 'version', question: 'Kubernetes release to install', help: 'vMAJOR.MINOR.PATCH, e.g. v1.28.7 (the tutorial used v1.14.2)'},
	{id: 'tarball', field: 'binaries.tarball', question: 'Server tarball of that release', help: 'the kubernetes-server-linux-amd64.tar.gz you downloaded; relative paths are read from this folder'},
	{id: 'masters', field: 'masters', question: 'Masters', help: 'each master\'s host name and IP address; an HA control plane usually has 3'},
	{id: 'sshUser', field: 'ssh.user', question: 'ssh user on the masters', help: 'root, or a user with sudo'},
	{id: 'sshPort', field: 'ssh.port', question: 'ssh port', help: 'the port sshd listens on'},
	{id: 'identityFile', field: 'ssh.identityFile', question: 'ssh identity file (optional)', help: 'a private key for the masters; leave empty to use ssh\'s defaults and ~/.ssh/config'},
	{id: 'etcdEndpoints', field: 'etcd.endpoints', question: 'etcd client URLs', help: 'comma separated; Enter keeps https://<each master IP>:2379'},
	{id: 'serviceCidr', field: 'network.serviceCidr', question: 'Service CIDR', help: 'the ClusterIP range; its first address becomes the kubernetes service IP'},
	{id: 'nodePortRange', field: 'network.nodePortRange', question: 'NodePort range', help: 'LOW-HIGH'},
	{id: 'k8sDir', field: 'paths.k8sDir', question: 'Working folder on the masters (k8sDir)', help: 'kube-apiserver runs and writes its audit log here'},
];

export const fieldOrder: FieldId[] = fieldSpecs.map(spec => spec.id);

export function fieldSpec(id: FieldId): FieldSpec {
	return fieldSpecs.find(spec => spec.id === id)!;
}

export const defaultAnswers: Answers = {
	version: 'v1.14.2',
	tarball: './kubernetes-server-linux-amd64.tar.gz',
	masters: [],
	sshUser: 'root',
	sshPort: '22',
	identityFile: '',
	etcdEndpoints: '',
	serviceCidr: '10.254.0.0/16',
	nodePortRange: '30000-32767',
	k8sDir: '/data/k8s/k8s',
};

/** A problem with an answer, naming the config field (e.g. masters[1].ip). */
export type Problem = {field: string; text: string; fix?: string};

/** The result of checking an answer as it is typed. */
export type Check = {error?: Problem; warning?: string; info?: string};

type Raw = Record<string, unknown>;

const asObject = (value: unknown): Raw => (value !== null && typeof value === 'object' && !Array.isArray(value) ? value as Raw : {});

export function splitList(text: string): string[] {
	return text.split(/[\s,]+/).map(part => part.trim()).filter(Boolean);
}

function portValue(text: string): number | string {
	return /^\d+$/.test(text.trim()) ? Number(text.trim()) : text;
}

/** The config the answers describe, on top of the settings an import brought that the wizard does not ask. */
export function configInput(answers: Answers, extras: Raw): Raw {
	const {name, version: _version, binaries, masters: _masters, ssh, etcd, network, paths, ...rest} = extras;
	const binariesOut: Raw = {...asObject(binaries)};
	if (answers.tarball.trim()) {
		binariesOut.tarball = answers.tarball.trim();
	}

	const sshOut: Raw = {...asObject(ssh), user: answers.sshUser.trim(), port: portValue(answers.sshPort)};
	if (answers.identityFile.trim()) {
		sshOut.identityFile = answers.identityFile.trim();
	}

	return {
		...(name === undefined ? {} : {name}),
		version: answers.version.trim(),
		binaries: binariesOut,
		masters: answers.masters.map(master => ({name: master.name, ip: master.ip})),
		ssh: sshOut,
		etcd: {...asObject(etcd), endpoints: splitList(answers.etcdEndpoints)},
		network: {...asObject(network), serviceCidr: answers.serviceCidr.trim(), nodePortRange: answers.nodePortRange.trim()},
		paths: {...asObject(paths), k8sDir: answers.k8sDir.trim()},
		...rest,
	};
}

/** The answers an existing config (or an import) holds, and the settings the wizard keeps as they are. */
export function answersFromConfig(raw: Raw): {answers: Answers; extras: Raw} {
	const extras = structuredClone(raw);
	const text = (value: unknown, fallback: string) => (typeof value === 'string' || typeof value === 'number' ? String(value) : fallback);
	const binaries = asObject(raw.binaries);
	const ssh = asObject(raw.ssh);
	const etcd = asObject(raw.etcd);
	const network = asObject(raw.network);
	const paths = asObject(raw.paths);
	const answers: Answers = {
		version: text(raw.version, defaultAnswers.version),
		tarball: text(binaries.tarball, binaries.url === undefined ? defaultAnswers.tarball : ''),
		masters: Array.isArray(raw.masters) ? raw.masters.map(entry => ({name: text(asObject(entry).name, ''), ip: text(asObject(entry).ip, '')})) : [],
		sshUser: text(ssh.user, defaultAnswers.sshUser),
		sshPort: text(ssh.port, defaultAnswers.sshPort),
		identityFile: text(ssh.identityFile, ''),
		etcdEndpoints: Array.isArray(etcd.endpoints) ? etcd.endpoints.map(String).join(', ') : '',
		serviceCidr: text(network.serviceCidr, defaultAnswers.serviceCidr),
		nodePortRange: text(network.nodePortRange, defaultAnswers.nodePortRange),
		k8sDir: text(paths.k8sDir, defaultAnswers.k8sDir),
	};
	delete extras.version;
	delete extras.masters;
	for (const [section, keys] of [['binaries', ['tarball']], ['ssh', ['user', 'port', 'identityFile']], ['etcd', ['endpoints']], ['network', ['serviceCidr', 'nodePortRange']], ['paths', ['k8sDir']]] as const) {
		const object = asObject(extras[section]);
		for (const key of keys) {
			delete object[key];
		}
	}

	return {answers, extras};
}

/** Settings that name local files, as [section, key]; relative ones are read from the config file's folder. */
const localFilePaths = localFileFields.map(field => field.split('.') as [string, string?]);

/** A relative path read from one folder, written so that it is read from another to the same file. */
export function rebasePath(value: string, fromDir: string, toDir: string): string {
	if (!value || path.isAbsolute(value) || value === '~' || value.startsWith('~/')) {
		return value;
	}

	const absolute = path.resolve(fromDir, value);
	const relative = path.relative(toDir, absolute);
	if (relative.startsWith('..') || path.isAbsolute(relative)) {
		return absolute;
	}

	return relative.startsWith('.') ? relative : `./${relative}`;
}

export function rebaseLocalFiles(raw: Raw, fromDir: string, toDir: string): Raw {
	const copy = structuredClone(raw);
	for (const [section, key] of localFilePaths) {
		if (key === undefined) {
			if (typeof copy[section] === 'string') {
				copy[section] = rebasePath(copy[section], fromDir, toDir);
			}

			continue;
		}

		const object = copy[section];
		if (object !== null && typeof object === 'object' && typeof (object as Raw)[key] === 'string') {
			(object as Raw)[key] = rebasePath((object as Raw)[key] as string, fromDir, toDir);
		}
	}

	return copy;
}

function fieldName(parts: readonly PropertyKey[]): string {
	return parts.reduce<string>((name, part) => (typeof part === 'number' ? `${name}[${part}]` : name ? `${name}.${String(part)}` : String(part)), '');
}

/** The schema's own verdict on one setting (its messages are "problem|fix"), whatever the rest holds. */
function schemaProblems(candidate: Raw, prefix: readonly PropertyKey[]): Problem[] {
	const parsed = configSchema.safeParse(candidate);
	if (parsed.success) {
		return [];
	}

	return parsed.error.issues
		.filter(issue => issue.code !== 'unrecognized_keys' && prefix.every((part, index) => issue.path[index] === part) && issue.path.length >= prefix.length)
		.map(issue => {
			const [text, fix] = issue.message.split(fixSeparator) as [string, string | undefined];
			return {field: fieldName(issue.path), text, fix};
		});
}

function expandHome(file: string): string {
	return file === '~' || file.startsWith('~/') ? path.join(homedir(), file.slice(1)) : file;
}

function localFileNote(file: string, cwd: string): {exists: boolean; note: string} {
	const absolute = path.resolve(cwd, expandHome(file));
	try {
		const stat = statSync(absolute);
		return stat.isFile() ? {exists: true, note: `found, ${formatBytes(stat.size)}`} : {exists: false, note: `${absolute} is not a regular file`};
	} catch {
		return {exists: false, note: `${absolute} does not exist yet`};
	}
}

export type CheckContext = {cwd: string; extras: Raw};

/** The kubernetes service IP a CIDR gives, or undefined while it is not a CIDR. */
export function serviceIpOf(cidr: string): string | undefined {
	return parseCidr(cidr.trim()) ? kubernetesServiceIp(cidr.trim()) : undefined;
}

/** Checks one answer as it is typed: the schema's rule for it, plus what only the whole config knows. */
export function checkField(id: TextFieldId, value: string, answers: Answers, context: CheckContext): Check {
	const next = {...answers, [id]: value};
	const candidate = configInput(next, context.extras);
	const first = (prefix: readonly PropertyKey[]) => schemaProblems(candidate, prefix)[0];
	// A local file: the schema's rule first, then whether the file is there yet (a warning, not an error).
	const localFileCheck = (prefix: readonly PropertyKey[], whenMissing: string): Check => {
		const error = first(prefix);
		if (error) {
			return {error};
		}

		const file = localFileNote(value.trim(), context.cwd);
		return file.exists ? {info: file.note} : {warning: `${file.note}: ${whenMissing}`};
	};
	switch (id) {
		case 'version': {
			return {error: first(['version'])};
		}

		case 'tarball': {
			if (!value.trim()) {
				const url = asObject(context.extras.binaries).url;
				return typeof url === 'string'
					? {info: `empty: the tarball is downloaded from ${url}`}
					: {error: {field: 'binaries.tarball', text: 'is required', fix: 'give the path of kubernetes-server-linux-amd64.tar.gz'}};
			}

			return localFileCheck(['binaries', 'tarball'], 'put the tarball there before the config is written');
		}

		case 'sshUser': {
			return {error: first(['ssh', 'user'])};
		}

		case 'sshPort': {
			if (!/^\d+$/.test(value.trim())) {
				return {error: {field: 'ssh.port', text: 'must be a number', fix: 'write the port, e.g. 22'}};
			}

			const error = first(['ssh', 'port']);
			return {error: error ? {...error, text: 'must be between 1 and 65535', fix: 'write the port, e.g. 22'} : undefined};
		}

		case 'identityFile': {
			if (!value.trim()) {
				return {info: 'empty: ssh uses its default keys and ~/.ssh/config'};
			}

			return localFileCheck(['ssh', 'identityFile'], 'it must be there before the config is written');
		}

		case 'etcdEndpoints': {
			const endpoints = splitList(value);
			if (endpoints.length === 0) {
				return {error: {field: 'etcd.endpoints', text: 'lists no endpoint', fix: 'list the etcd client URLs, e.g. https://172.24.8.71:2379'}};
			}

			return {error: first(['etcd', 'endpoints']), info: `${endpoints.length} endpoint${endpoints.length === 1 ? '' : 's'}`};
		}

		case 'serviceCidr': {
			const error = first(['network', 'serviceCidr']);
			if (error) {
				return {error};
			}

			const cidr = parseCidr(value.trim())!;
			const inside = answers.masters.findIndex(master => isIpv4(master.ip) && cidrContains(cidr, master.ip));
			if (inside >= 0) {
				return {error: {field: 'network.serviceCidr', text: `contains masters[${inside}].ip ${answers.masters[inside]!.ip}`, fix: 'choose a service range that no host uses, e.g. 10.254.0.0/16'}};
			}

			return {info: `kubernetes service IP: ${kubernetesServiceIp(value.trim())} (the first address; it goes into the apiserver certificate)`};
		}

		case 'nodePortRange': {
			return {error: first(['network', 'nodePortRange'])};
		}

		case 'k8sDir': {
			return {error: first(['paths', 'k8sDir'])};
		}
	}
}

/** Checks a master's name or IP as it is typed, including against the masters already listed. */
export function checkMaster(part: 'name' | 'ip', value: string, masters: MasterAnswer[], index: number, context: CheckContext): Check {
	const draft = [...masters];
	draft[index] = {...(draft[index] ?? {name: '', ip: ''}), [part]: value.trim()};
	const other = masters.findIndex((master, position) => position !== index && master[part] === value.trim());
	if (other >= 0) {
		return {error: {field: `masters[${index}].${part}`, text: `repeats masters[${other}].${part}${part === 'ip' ? ` (${masters[other]!.name})` : ''}`, fix: `give every master its own ${part === 'ip' ? 'IP address' : 'name'}`}};
	}

	const candidate = configInput({...defaultAnswers, masters: draft}, context.extras);
	return {error: schemaProblems(candidate, ['masters', index, part])[0]};
}

/** The name the next master probably has: k8smaster01, k8smaster02… */
export function suggestName(masters: MasterAnswer[]): string {
	const last = masters.at(-1)?.name;
	const match = last ? /^(.*?)(\d+)$/.exec(last) : undefined;
	if (match) {
		return `${match[1]}${String(Number(match[2]) + 1).padStart(match[2]!.length, '0')}`;
	}

	return `k8smaster${String(masters.length + 1).padStart(2, '0')}`;
}

/** The address after the last master's, a likely guess for the next one. */
export function suggestIp(masters: MasterAnswer[]): string {
	const last = masters.at(-1)?.ip;
	return last && isIpv4(last) && !last.endsWith('.255') ? numberToIpv4(ipv4ToNumber(last) + 1) : '';
}

export function defaultEndpoints(masters: MasterAnswer[]): string {
	return masters.map(master => `https://${master.ip}:2379`).join(', ');
}

export type Imported = {answers: Answers; extras: Raw; notes: string[]; encryptionKey?: string; origin: string};

/** The tutorial's environment.sh, read without running it. Paths come back relative to cwd. */
export function importEnvironment(file: string, cwd: string, target: string): Imported {
	const absolute = path.resolve(cwd, expandHome(file));
	const text = readLocalTextSync(absolute, {field: 'environment.sh', kind: 'environment.sh', fix: 'give the path of the tutorial\'s environment.sh (a regular file)'});

	const {config, encryptionKey, notes} = configFromEnvironment(text, {version: defaultAnswers.version, tarball: defaultAnswers.tarball, file});
	const raw = structuredClone(config) as Raw;
	if (encryptionKey) {
		// The key is written next to the config, as `init --from-env` does.
		raw.encryption = {keyFile: rebasePath('./encryption.key', path.dirname(target), cwd)};
	}

	return {...answersFromConfig(raw), notes, encryptionKey, origin: absolute};
}

/** An existing config file, as a starting point; its relative paths are made relative to cwd. */
export function importConfigFile(file: string, cwd: string): Imported {
	const absolute = path.resolve(cwd, expandHome(file));
	const text = readLocalTextSync(absolute, {field: 'config file', kind: 'config', fix: 'give the path of a cluster config (YAML, a regular file)'});

	const raw = parseConfigText(text, absolute) as Raw;
	return {...answersFromConfig(rebaseLocalFiles(raw, path.dirname(absolute), cwd)), notes: [], origin: absolute};
}

/** The config as it will be written at target (its relative paths read from target's folder). */
export function finalConfig(answers: Answers, extras: Raw, cwd: string, target: string): Raw {
	return rebaseLocalFiles(configInput(answers, extras), cwd, path.dirname(target));
}

export type Review = {problems: Problem[]; onlyMissingFiles: boolean};

function toProblem(error: InputError): Problem {
	return {field: error.field, text: error.message.startsWith(`${error.field}: `) ? error.message.slice(error.field.length + 2) : error.message};
}

/** The whole config checked exactly as loading it later will: resolveConfig, against target's folder. */
export function review(answers: Answers, extras: Raw, cwd: string, target: string, encryptionKey: string | undefined): Review {
	const config = finalConfig(answers, extras, cwd, target);
	if (encryptionKey) {
		// The key file is written with the config; until then it cannot be checked.
		const encryption = {...asObject(config.encryption)};
		delete encryption.keyFile;
		config.encryption = encryption;
	}

	try {
		resolveConfig(config, target);
		return {problems: [], onlyMissingFiles: false};
	} catch (error) {
		const errors = error instanceof InputErrors ? error.errors : error instanceof InputError ? [error] : undefined;
		if (!errors) {
			throw error;
		}

		const problems = errors.map(each => toProblem(each));
		const fileFields = new Set(localFileFields);
		return {problems, onlyMissingFiles: errors.every(each => fileFields.has(each.field) && each.message.includes('does not exist'))};
	}
}

export const configHeader = '# Written by k8s-master-install (guided setup). Relative paths are read from this file\'s folder.\n';

/**
 * Writes the config (and an imported encryption key next to it, mode 0600). An existing file is
 * kept as FILE.bak. Returns the files written.
 */
export function writeConfig(answers: Answers, extras: Raw, cwd: string, target: string, encryptionKey: string | undefined): string[] {
	const written: string[] = [];
	const config = finalConfig(answers, extras, cwd, target);
	if (encryptionKey) {
		const keyFile = path.join(path.dirname(target), 'encryption.key');
		if (saveImportedEncryptionKey(keyFile, encryptionKey)) {
			written.push(keyFile);
		}
	}

	if (existsSync(target)) {
		// Read like any config: a pipe or device at that path is refused, not copied for ever.
		writeFileAtomic(`${target}.bak`, readLocalTextSync(target, {field: 'config file', kind: 'config', fix: 'move it away, or choose another file to write'}), 0o644);
		written.push(`${target}.bak`);
	}

	writeFileAtomic(target, `${configHeader}${YAML.stringify(config)}`, 0o644);
	written.push(target);
	return written;
}
