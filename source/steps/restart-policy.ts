import {sha256} from '../files.js';
import {unitPath} from '../render/artifacts.js';
import type {Upload} from './files.js';
import type {ServiceName} from './readiness.js';

/** A unit as systemd reports it: is-active, and NeedDaemonReload (an old copy of its unit loaded). */
export type UnitStatus = {active: string; needsReload: string};

/** What the restart policy knows of one service on one master. */
export type ServiceFacts = {
	name: ServiceName;
	/** Fingerprint of the files it reads, as this run would leave them. */
	inputs: string;
	/** Fingerprint of its files when it last started healthy; undefined: never started by this install. */
	recorded: string | undefined;
	/** Its files written in this run. */
	written: string[];
	/** undefined: not read (its files alone decide). */
	unit: UnitStatus | undefined;
};

export type ServiceChange = {name: ServiceName; action: 'restart' | 'reload'; reason: string};

function mentions(text: string, remotePath: string): boolean {
	// Most texts do not name the path at all: asked first, without making a pattern for it.
	return text.includes(remotePath) && new RegExp(`${remotePath.replaceAll(/[.*+?^${}()|[\]\\/]/g, '\\$&')}(?![\\w.-])`).test(text);
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

export function serviceFingerprint(inputs: Upload[]): string {
	return sha256(JSON.stringify(inputs.map(upload => [upload.path, upload.sha256, upload.mode]).sort()));
}

/** A reason found in the files alone, whatever state the unit is in. */
export function filesReason(facts: ServiceFacts): string | undefined {
	if (facts.recorded !== facts.inputs) {
		return facts.recorded ? 'a file it reads changed' : 'not started by this install';
	}

	return facts.written.length > 0 ? 'a file it reads was written in this run' : undefined;
}

/** kube-nginx of which only the config was written in this run: a reload may do, if it runs from an unchanged unit. */
export function onlyConfigWritten(facts: ServiceFacts): boolean {
	return facts.name === 'kube-nginx' && facts.written.length > 0 && facts.written.every(file => file.endsWith('/conf/kube-nginx.conf'));
}

function reasonToRestart(facts: ServiceFacts): string | undefined {
	const fromFiles = filesReason(facts);
	if (fromFiles) {
		return fromFiles;
	}

	if (facts.unit?.active !== 'active') {
		return `it is ${facts.unit?.active ?? 'unknown'}`;
	}

	return facts.unit.needsReload === 'no' ? undefined : 'its unit changed on disk';
}

/**
 * Which services restart, which reload, and why, in the order given. A service restarts when a file
 * it reads changed (since it last started healthy, or in this run), its unit is not active, or systemd
 * holds an old copy of its unit. kube-nginx whose config alone was written, running from an unchanged
 * unit, is reloaded instead: a reload keeps its open connections (the components' watches and leader elections).
 */
export function restartPolicy(services: ServiceFacts[]): ServiceChange[] {
	return services.flatMap((facts): ServiceChange[] => {
		const reason = reasonToRestart(facts);
		if (!reason) {
			return [];
		}

		const reload = onlyConfigWritten(facts) && facts.unit?.active === 'active' && facts.unit.needsReload === 'no';
		return [{name: facts.name, action: reload ? 'reload' : 'restart', reason}];
	});
}
