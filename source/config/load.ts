import {accessSync, constants, statSync} from 'node:fs';
import {homedir} from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import type {z} from 'zod';
import {InputError, InputErrors} from '../errors.js';
import {checkLocalFile, readLocalText, type FileKind} from '../safe-read.js';
import {parseVersion, supportedMinors, type KubeVersion} from '../versions.js';
import {configSchema, fixSeparator, type ClusterConfig} from './schema.js';
import {closest} from './did-you-mean.js';
import {kubernetesServiceIp, parseBastion, parseEndpoint, type Bastion, type Endpoint} from './network.js';
import {checkYamlLimits, toDataWithinLimits} from './yaml-limits.js';

export type ResolvedConfig = ClusterConfig & {
	/** The file the config came from; relative paths in it were resolved against its folder. */
	source: string;
	kubeVersion: KubeVersion;
	serviceIp: string;
	/** controlPlaneEndpoint, read: what kubectl and verify reach the apiservers through, when set. */
	controlPlane: Endpoint | undefined;
	/** ssh.bastion, read: the jump host every ssh connection goes through, when set. */
	bastion: Bastion | undefined;
	warnings: string[];
};

function fieldName(pathParts: readonly PropertyKey[]): string {
	return pathParts.reduce<string>((name, part) => (typeof part === 'number' ? `${name}[${part}]` : name ? `${name}.${String(part)}` : String(part)), '') || '(top level)';
}

function valueAt(root: unknown, pathParts: readonly PropertyKey[]): unknown {
	let value = root;
	for (const part of pathParts) {
		value = value !== null && typeof value === 'object' ? (value as Record<PropertyKey, unknown>)[part] : undefined;
	}

	return value;
}

/** The keys a strict object at this path accepts, for "did you mean". */
function knownKeysAt(pathParts: readonly PropertyKey[]): string[] {
	let schema: z.ZodType = configSchema;
	for (const part of pathParts) {
		schema = unwrap(schema);
		const def = (schema as unknown as {def: {type: string; shape?: Record<string, z.ZodType>; element?: z.ZodType}}).def;
		if (def.type === 'object' && typeof part === 'string' && def.shape?.[part]) {
			schema = def.shape[part];
		} else if (def.type === 'array' && typeof part === 'number' && def.element) {
			schema = def.element;
		} else {
			return [];
		}
	}

	const def = (unwrap(schema) as unknown as {def: {shape?: Record<string, unknown>}}).def;
	return Object.keys(def.shape ?? {});
}

function unwrap(schema: z.ZodType): z.ZodType {
	let current = schema as unknown as {def: {type: string; innerType?: unknown; in?: unknown}};
	while (current.def.innerType ?? (current.def.type === 'pipe' ? current.def.in : undefined)) {
		current = (current.def.innerType ?? current.def.in) as typeof current;
	}

	return current as unknown as z.ZodType;
}

function issueToError(issue: z.core.$ZodIssue, raw: unknown): InputError[] {
	if (issue.code === 'unrecognized_keys') {
		const known = knownKeysAt(issue.path);
		return issue.keys.map(key => {
			const suggestion = closest(key, known);
			const field = fieldName([...issue.path, key]);
			return new InputError(field, key, 'is not a known setting', suggestion ? `did you mean "${suggestion}"? Known here: ${known.join(', ')}` : `remove it; known here: ${known.join(', ')}`);
		});
	}

	const field = fieldName(issue.path);
	const value = valueAt(raw, issue.path);
	const [text, fix] = issue.message.includes(fixSeparator) ? issue.message.split(fixSeparator) as [string, string] : [issue.message, ''];
	if (issue.code === 'invalid_type' && value === undefined) {
		return [new InputError(field, value, 'is required', `add ${field} to the config (see README, "Cluster config")`)];
	}

	if (issue.code === 'invalid_type') {
		return [new InputError(field, value, `must be ${issue.expected}`, `write a ${issue.expected} here`)];
	}

	return [new InputError(field, value, text, fix || 'see README, "Cluster config"')];
}

function expandHome(file: string): string {
	return file === '~' || file.startsWith('~/') ? path.join(homedir(), file.slice(1)) : file;
}

type LocalFileField = {field: string; get: (config: ClusterConfig) => string | undefined; set: (config: ClusterConfig, value: string) => void};

const localFiles: LocalFileField[] = [
	{field: 'binaries.tarball', get: c => c.binaries.tarball, set: (c, v) => { c.binaries.tarball = v; }},
	{field: 'ssh.identityFile', get: c => c.ssh.identityFile, set: (c, v) => { c.ssh.identityFile = v; }},
	{field: 'ssh.configFile', get: c => c.ssh.configFile, set: (c, v) => { c.ssh.configFile = v; }},
	{field: 'ssh.knownHostsFile', get: c => c.ssh.knownHostsFile, set: (c, v) => { c.ssh.knownHostsFile = v; }},
	{field: 'etcd.caFile', get: c => c.etcd.caFile, set: (c, v) => { c.etcd.caFile = v; }},
	{field: 'etcd.certFile', get: c => c.etcd.certFile, set: (c, v) => { c.etcd.certFile = v; }},
	{field: 'etcd.keyFile', get: c => c.etcd.keyFile, set: (c, v) => { c.etcd.keyFile = v; }},
	{field: 'ca.certFile', get: c => c.ca?.certFile, set: (c, v) => { c.ca!.certFile = v; }},
	{field: 'ca.keyFile', get: c => c.ca?.keyFile, set: (c, v) => { c.ca!.keyFile = v; }},
	{field: 'encryption.keyFile', get: c => c.encryption.keyFile, set: (c, v) => { c.encryption.keyFile = v; }},
	{field: 'templatesDir', get: c => c.templatesDir, set: (c, v) => { c.templatesDir = v; }},
];

/** The settings that name local files (relative ones are read from the config file's folder). */
export const localFileFields: readonly string[] = localFiles.map(entry => entry.field);

/** Files that must exist when the config is loaded, with what they are (the known_hosts file may be created by accept-new). */
const mustExist = new Map<string, FileKind>([
	['binaries.tarball', 'tarball'], ['ssh.identityFile', 'ssh'], ['ssh.configFile', 'ssh'], ['etcd.caFile', 'pem'], ['etcd.certFile', 'pem'],
	['etcd.keyFile', 'pem'], ['ca.certFile', 'pem'], ['ca.keyFile', 'pem'], ['encryption.keyFile', 'encryption key'],
]);

function checkReadable(field: string, file: string, kind: FileKind): InputError | undefined {
	try {
		checkLocalFile(file, {field, kind, fix: `point ${field} at the file itself (relative paths are read from the config file's folder)`});
		accessSync(file, constants.R_OK);
		return undefined;
	} catch (error) {
		return error instanceof InputError ? error : new InputError(field, file, `cannot be read (${(error as NodeJS.ErrnoException).code ?? 'error'})`, 'make the file readable by this user');
	}
}

function isDirectory(folder: string): boolean {
	try {
		return statSync(folder).isDirectory();
	} catch {
		return false;
	}
}

/** Validates raw config data (already parsed from YAML) and resolves it against a base folder. */
export function resolveConfig(raw: unknown, source: string): ResolvedConfig {
	const parsed = configSchema.safeParse(raw);
	if (!parsed.success) {
		throw new InputErrors(parsed.error.issues.flatMap(issue => issueToError(issue, raw)));
	}

	const config = parsed.data;
	const base = path.dirname(path.resolve(source));
	const errors: InputError[] = [];
	for (const entry of localFiles) {
		const value = entry.get(config);
		if (value === undefined) {
			continue;
		}

		const absolute = path.resolve(base, expandHome(value));
		entry.set(config, absolute);
		const kind = mustExist.get(entry.field);
		if (kind) {
			const error = checkReadable(entry.field, absolute, kind);
			if (error) {
				errors.push(error);
			}
		}
	}

	if (config.templatesDir !== undefined && !isDirectory(config.templatesDir)) {
		errors.push(new InputError('templatesDir', config.templatesDir, 'is not a folder', 'point templatesDir at a folder holding your own copies of files from templates/ (same names), or remove it'));
	}

	if (errors.length > 0) {
		throw new InputErrors(errors);
	}

	const kubeVersion = parseVersion(config.version)!;
	const warnings: string[] = [];
	if (kubeVersion.minor > supportedMinors.newest) {
		warnings.push(`version ${config.version} is newer than v1.${supportedMinors.newest}, the newest release whose flags this tool knows; the v1.${supportedMinors.newest} flags are used.`);
	}

	if (config.kubectl !== undefined) {
		warnings.push('kubectl: no longer used, this workstation needs no kubectl (the tool calls the apiservers itself); remove the setting.');
	}

	const controlPlane = config.controlPlaneEndpoint === undefined ? undefined : parseEndpoint(config.controlPlaneEndpoint);
	const bastion = config.ssh.bastion === undefined ? undefined : parseBastion(config.ssh.bastion);
	return {...config, source: path.resolve(source), kubeVersion, serviceIp: kubernetesServiceIp(config.network.serviceCidr), controlPlane, bastion, warnings};
}

export function parseConfigText(text: string, source: string): unknown {
	checkYamlLimits(text, source);
	const document = YAML.parseDocument(text, {prettyErrors: true, uniqueKeys: true});
	if (document.errors.length > 0) {
		const first = document.errors[0]!;
		const where = first.linePos?.[0] ? `line ${first.linePos[0].line}, column ${first.linePos[0].col}` : 'the file';
		throw new InputError(source, where, `is not valid YAML: ${first.message.split('\n')[0]}`, 'correct the YAML syntax at that place (indent with spaces, quote values holding ": ")');
	}

	const data = toDataWithinLimits(document, source);
	if (data === null || typeof data !== 'object' || Array.isArray(data)) {
		throw new InputError(source, typeof data, 'does not hold a YAML mapping', 'start the file with "version: v1.28.7" and the other keys (see README)');
	}

	return data;
}

/** How a cluster config file is read: where it comes from is named, and how to give the right one. */
export const configFileSpec = {field: '--config', kind: 'config', fix: 'pass the path of a cluster config (a regular file), or write one with `k8s-master-install init`'} as const;

export async function loadConfig(file: string): Promise<ResolvedConfig> {
	const text = await readLocalText(file, configFileSpec);
	return resolveConfig(parseConfigText(text, file), file);
}
