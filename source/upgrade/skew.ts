import {InputError} from '../errors.js';
import type {InstallState} from '../state/store.js';
import {parseVersion, type KubeVersion} from '../versions.js';

/*
 * The Kubernetes version-skew policy (kubernetes.io/releases/version-skew-policy), as it concerns a
 * control plane: apiservers of one cluster at most one minor release apart, so an upgrade goes one
 * minor at a time; controller-managers and schedulers never newer than any apiserver (services.ts's
 * two start steps see to that); no supported downgrade across minor releases (an apiserver of the
 * new minor may already have written objects the older one cannot read back whole).
 */

/** What moving one master from its release to another is. */
export type ReleaseMove = 'same' | 'patch-upgrade' | 'minor-upgrade' | 'skips-minor' | 'patch-downgrade' | 'minor-downgrade';

export function releaseMove(from: KubeVersion, to: KubeVersion): ReleaseMove {
	const minors = ((to.major - from.major) * 1000) + (to.minor - from.minor);
	if (minors > 1) {
		return 'skips-minor';
	}

	if (minors === 1) {
		return 'minor-upgrade';
	}

	if (minors < 0) {
		return 'minor-downgrade';
	}

	return to.patch > from.patch ? 'patch-upgrade' : to.patch < from.patch ? 'patch-downgrade' : 'same';
}

/**
 * The release each master runs as the state records it: the last release the start steps brought up
 * healthy there; for a state from before that record (none for any master), the release the last
 * apply applied where start was done. A master without (never started) runs nothing yet.
 */
export function recordedReleases(state: Pick<InstallState, 'version' | 'startedReleases' | 'steps'>, masters: readonly string[]): Map<string, KubeVersion> {
	const releases = new Map<string, KubeVersion>();
	for (const master of masters) {
		const started = state.startedReleases?.[master]?.at(-1);
		const startedBefore = state.startedReleases === undefined && state.steps['install/start']?.hosts[master]?.status === 'done';
		const version = parseVersion(started ?? (startedBefore ? state.version ?? '' : ''));
		if (version) {
			releases.set(master, version);
		}
	}

	return releases;
}

/** An upgrade (or a way back) in play: each master's release and the target, the largest step any master takes. */
export type ReleaseChange = {to: string; masters: Array<{host: string; from: string; move: ReleaseMove}>; minor: boolean; downgrade: boolean};

/** The change of release this run makes (undefined when every installed master already runs the target). Pure. */
export function releaseChange(state: Pick<InstallState, 'version' | 'startedReleases' | 'steps'>, masters: readonly string[], target: KubeVersion): ReleaseChange | undefined {
	const moves = [...recordedReleases(state, masters)].map(([host, from]) => ({host, from: from.text, move: releaseMove(from, target)}));
	if (moves.every(each => each.move === 'same')) {
		return undefined;
	}

	return {
		to: target.text,
		masters: moves,
		minor: moves.some(each => each.move === 'minor-upgrade' || each.move === 'minor-downgrade'),
		downgrade: moves.some(each => each.move === 'patch-downgrade' || each.move === 'minor-downgrade'),
	};
}

/**
 * Why the skew policy refuses moving the masters to `target`, as bad input on `version`, before
 * anything is touched; undefined when it allows it. Masters on different releases (an upgrade that
 * was stopped) are each checked: resuming it is one step for every one of them. Going back to the
 * release the others still run is allowed as long as no master is recorded on the new minor release
 * (a master is recorded once its controller-manager and scheduler run it, which the start steps do
 * only after every apiserver runs it): its apiservers that restarted already go back within the
 * policy's one minor release between apiservers.
 */
export function skewRefusal(state: Pick<InstallState, 'version' | 'startedReleases' | 'steps'>, masters: readonly string[], target: KubeVersion, allowDowngrade: boolean): InputError | undefined {
	const releases = [...recordedReleases(state, masters)];
	const describe = (move: ReleaseMove) => releases.filter(([, from]) => releaseMove(from, target) === move);
	const named = (found: Array<[string, KubeVersion]>) => found.map(([host, from]) => `${host} runs ${from.text}`).join(', ');

	const skipping = describe('skips-minor');
	if (skipping.length > 0) {
		const oldest = skipping.map(([, from]) => from).sort((a, b) => (a.major - b.major) || (a.minor - b.minor))[0]!;
		const next = `v${oldest.major}.${oldest.minor + 1}.x`;
		return new InputError('version', target.text, `skips a minor release (${named(skipping)}): the control plane is upgraded one minor release at a time`, `apply ${next} first (the latest v${oldest.major}.${oldest.minor + 1} patch release), then ${target.text}`);
	}

	const acrossMinors = describe('minor-downgrade');
	if (acrossMinors.length > 0) {
		return new InputError('version', target.text, `is older than the minor release ${named(acrossMinors)}: a downgrade across minor releases is not supported, not even with --allow-downgrade`, `set version back to ${acrossMinors[0]![1].text} (or a later ${`v${acrossMinors[0]![1].major}.${acrossMinors[0]![1].minor}`} patch release); to go back to ${target.text}, restore etcd from the snapshot taken before the upgrade (see status) and install ${target.text} again`);
	}

	const patchDown = describe('patch-downgrade');
	if (patchDown.length > 0 && !allowDowngrade) {
		return new InputError('version', target.text, `is older than the release ${named(patchDown)}: a downgrade`, `pass --allow-downgrade to go back to ${target.text} (within one minor release), or set version to ${patchDown[0]![1].text}`);
	}

	return undefined;
}
