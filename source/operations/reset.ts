import {resetStep} from '../steps/reset.js';
import type {Operation} from './types.js';

/** reset: the control plane removed from every master; etcd's data and the local CA stay. */
export const reset: Operation = {
	id: 'reset',
	title: 'Remove the control plane from the masters',
	noun: 'reset',
	command: 'reset',
	steps: [resetStep],
	mode: 'sweep',
};
