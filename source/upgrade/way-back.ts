import type {InstallState} from '../state/store.js';
import type {KubeVersion} from '../versions.js';
import {releaseChange} from './skew.js';

/**
 * What an operator reads when a run that changes the release failed: which master failed, that the
 * others were left as they are (still serving; the rolling start steps touch no master after a
 * failure), and the way back, as the skew policy allows it from what the state records now.
 * undefined when every master already runs the target (no upgrade in play).
 */
export function wayBack(state: Pick<InstallState, 'version' | 'startedReleases' | 'steps'>, masters: readonly string[], target: KubeVersion, failed: readonly string[]): string | undefined {
	const change = releaseChange(state, masters, target);
	if (!change) {
		return undefined;
	}

	const finished = change.masters.filter(each => each.move === 'same').map(each => each.host);
	const behind = change.masters.filter(each => each.move !== 'same');
	const previous = behind[0]!.from;
	const untouched = masters.filter(master => !failed.includes(master));
	const lines = [`The change of release to ${target.text} failed on ${failed.join(', ')}; ${untouched.length > 0 ? `${untouched.join(', ')} were left as they are, serving` : 'no other master was touched after it'} (${change.masters.map(each => `${each.host} ${each.move === 'same' ? `runs ${target.text}` : `still runs ${each.from} as recorded`}`).join(', ')}).`];
	if (change.minor && finished.length > 0) {
		lines.push(`The way forward: fix the cause and run apply again (it resumes). ${finished.join(', ')} already run ${target.text} throughout, so going back is a downgrade across minor releases, which is refused: that needs etcd restored from the snapshot taken before the upgrade (status lists them) and ${previous} installed again.`);
	} else {
		lines.push(`The way back: set version back to ${previous} in the config and run apply again${finished.length > 0 ? ' with --allow-downgrade' : ''}; or fix the cause and run apply again to resume. The etcd snapshots taken before the upgrade are listed by status.`);
	}

	return lines.join('\n');
}
