import {expect, test} from 'vitest';
import {batches, type Upload} from '../../source/steps/files.js';

const MiB = 1024 * 1024;
const upload = (name: string, bytes: number): Upload => ({kind: 'upload', path: `/opt/k8s/bin/${name}`, mode: 0o755, sha256: '0'.repeat(64), bytes, secret: false, source: {file: name}, label: name});

test('uploads share round trips: small files up to 8 MiB together, each large file with at most 8 MiB of small ones', () => {
	const names = (groups: Upload[][]) => groups.map(group => group.map(each => each.label));
	// The lab's release: one large kubectl among small stand-ins, all in one round trip.
	expect(names(batches([upload('a', 1000), upload('kubectl', 37 * MiB), upload('b', 2000), upload('c', 3000)]))).toEqual([['a', 'b', 'c', 'kubectl']]);
	// A real release: every server binary is large, each goes in its own round trip.
	expect(names(batches([upload('kube-apiserver', 120 * MiB), upload('mounter', 2 * MiB), upload('kubelet', 110 * MiB), upload('kubectl', 50 * MiB)]))).toEqual([['mounter', 'kube-apiserver'], ['kubelet'], ['kubectl']]);
	// Small files past 8 MiB start another round trip.
	expect(names(batches([upload('a', 5 * MiB), upload('b', 5 * MiB), upload('c', 1 * MiB)]))).toEqual([['a'], ['b', 'c']]);
	expect(batches([])).toEqual([]);
});
