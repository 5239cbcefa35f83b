import {resetStep} from '../steps/reset.js';
import {snapshotBeforeReset} from '../steps/snapshot.js';
import type {Operation} from './types.js';

/** reset: an etcd snapshot first, then the control plane removed from every master; etcd's data and the local CA stay. */
export const reset: Operation = {
	id: 'reset',
	title: 'Remove the control plane from the masters',
	noun: 'reset',
	command: 'reset',
	steps: [snapshotBeforeReset, resetStep],
	mode: 'sweep',
	words: {
		question: ({masters, stateFolder, removeLocal}) => `Stop kube-apiserver, kube-nginx, kube-controller-manager and kube-scheduler and remove this install's files on ${masters.join(', ')}${removeLocal ? `, then delete ${stateFolder} (CA, keys, encryption key, state and the etcd snapshots under it)` : ''}?`,
		done: ({masters, stateFolder, removeLocal}) => `${masters.length} master(s) reset${removeLocal ? `; ${stateFolder} deleted` : `; the CA and keys are kept in ${stateFolder}`}`,
	},
};
