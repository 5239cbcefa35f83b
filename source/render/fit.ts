import YAML from 'yaml';
import type {ResolvedConfig} from '../config/load.js';
import {InputError} from '../errors.js';
import {atLeast, configKinds, flagName, inReleaseSpan, introducedFlags, requiredFlags, retiredFlags, type Component, type KubeVersion} from '../versions.js';
import {components, type Artifact} from './artifacts.js';

/** Something rendered that the chosen release would refuse at start-up. */
export type Misfit = {file: string; problem: string; fix: string; flag?: string};

/** The arguments of a unit's ExecStart, continuation lines joined; systemd drops the quotes. */
export function execStartArguments(unit: string): string[] {
	const joined = unit.replaceAll(/\\\n/g, ' ');
	const line = /^ExecStart=(.*)$/m.exec(joined)?.[1] ?? '';
	return line.trim().split(/\s+/).slice(1).map(word => word.replaceAll(/["']/g, ''));
}

function unitMisfits(component: Component, artifact: Artifact, version: KubeVersion): Misfit[] {
	const flags = execStartArguments(artifact.content).filter(word => word.startsWith('--'));
	const names = new Set(flags.map(flagName));
	const misfits: Misfit[] = [];
	for (const flag of flags) {
		const name = flagName(flag);
		const value = flag.includes('=') ? flag.slice(flag.indexOf('=') + 1) : '';
		const retired = retiredFlags.find(rule => rule.component === component && rule.name === name && (rule.value === undefined || rule.value.test(value)) && atLeast(version, rule.removedIn));
		if (retired) {
			misfits.push({file: artifact.name, problem: `${flag} is refused by ${component} from v1.${retired.removedIn}`, fix: retired.fix, flag});
		}

		const early = introducedFlags.find(rule => rule.component === component && rule.name === name && !atLeast(version, rule.since));
		if (early) {
			misfits.push({file: artifact.name, problem: `${flag} is not known to ${component} before v1.${early.since}`, fix: early.fix, flag});
		}
	}

	for (const rule of requiredFlags.filter(rule => rule.component === component && atLeast(version, rule.since))) {
		const missing = rule.names.filter(name => !names.has(name));
		if (missing.length > 0) {
			misfits.push({file: artifact.name, problem: `${component} from v1.${rule.since} requires --${missing.join(' and --')}`, fix: rule.fix});
		}
	}

	return misfits;
}

function kindMisfits(artifact: Artifact, version: KubeVersion): Misfit[] {
	const known = configKinds.filter(entry => entry.file === artifact.name);
	if (known.length === 0) {
		return [];
	}

	const documents = YAML.parseAllDocuments(artifact.content);
	const broken = documents.find(each => each.errors.length > 0);
	if (broken) {
		return [{file: artifact.name, problem: `is not valid YAML (${broken.errors[0]!.message.split('\n')[0]})`, fix: 'correct the template'}];
	}

	return documents.map(each => each.toJS() as {apiVersion?: unknown; kind?: unknown} | null).filter(each => each !== null).flatMap(document => documentMisfits(artifact, document, known, version));
}

function documentMisfits(artifact: Artifact, document: {apiVersion?: unknown; kind?: unknown}, known: typeof configKinds, version: KubeVersion): Misfit[] {
	const matching = known.filter(entry => entry.apiVersion === document.apiVersion && entry.kind === document.kind);
	if (matching.some(entry => inReleaseSpan(entry, version))) {
		return [];
	}

	const accepted = known.filter(entry => inReleaseSpan(entry, version)).map(entry => `${entry.apiVersion} ${entry.kind}`);
	return [{
		file: artifact.name,
		problem: `${String(document.apiVersion)} ${String(document.kind)} is not read by ${version.text} (it reads ${accepted.join(', ')})`,
		fix: matching[0]?.fix ?? known[0]!.fix,
	}];
}

/** Checks rendered units and config files against what the chosen release accepts and requires. */
export function releaseMisfits(config: ResolvedConfig, artifacts: Artifact[]): Misfit[] {
	return artifacts.flatMap(artifact => artifactMisfits(artifact, config.kubeVersion));
}

/** Misfits found in an artifact, by release, name and content: a run renders the same files twice (its checks, its steps), each parse costs milliseconds. */
const found = new Map<string, Misfit[]>();

function artifactMisfits(artifact: Artifact, version: KubeVersion): Misfit[] {
	const key = `${version.text}\0${artifact.name}\0${artifact.content}`;
	let misfits = found.get(key);
	if (!misfits) {
		const component = components.find(each => artifact.name.startsWith(`${each}-`) && artifact.name.endsWith('.service'));
		misfits = component ? unitMisfits(component, artifact, version) : kindMisfits(artifact, version);
		// Bounded: a long-lived process (a test worker) renders many.
		if (found.size >= 512) {
			found.clear();
		}

		found.set(key, misfits);
	}

	return misfits;
}

/** A misfit as bad input: the operator's template or extra flag names what to change. */
export function misfitError(config: ResolvedConfig, misfit: Misfit): InputError {
	const component = components.find(each => misfit.file.startsWith(`${each}-`));
	const fromExtra = component !== undefined && misfit.flag !== undefined && config.extraFlags[component].includes(misfit.flag);
	const field = fromExtra ? `extraFlags.${component}` : config.templatesDir ? `templatesDir (${misfit.file})` : 'version';
	return new InputError(field, config.version, misfit.problem, misfit.fix);
}
