import {snapshot} from '../steps/snapshot.js';
import type {Operation} from './types.js';

/** backup: an etcd snapshot through the first reachable master, kept on this workstation; no master changes. */
export const backup: Operation = {
	id: 'backup',
	title: 'Take an etcd snapshot',
	noun: 'backup',
	command: 'backup',
	steps: [snapshot],
	mode: 'fetch',
	words: {done: () => 'etcd snapshot taken'},
};
