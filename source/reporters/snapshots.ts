import type {SnapshotRecord} from '../state/store.js';
import {formatBytes} from './format.js';

/** status: the etcd snapshots kept, oldest first: when, etcd's revision, size, file and why. */
export function formatSnapshots(snapshots: SnapshotRecord[] | undefined): string[] {
	if (!snapshots || snapshots.length === 0) {
		return ['No etcd snapshot taken yet (k8s-master-install backup).'];
	}

	return [
		`etcd snapshots (${snapshots.length}, oldest first):`,
		...snapshots.map(each => `  ${each.at.replace(/\.\d+Z$/, 'Z')}  revision ${each.revision}  ${each.keys} keys  ${formatBytes(each.bytes)}  ${each.path}  (${each.occasion}, through ${each.master})`),
	];
}
