import {audit, binaries, certs, encryption, etcdCheck, rbac, start, units} from '../steps/definitions.js';
import {preflight} from '../steps/preflight.js';
import {verify} from '../steps/verify.js';
import type {Operation} from './types.js';

/** apply: checks, files, services, then what the cluster as a whole needs. */
export const install: Operation = {
	id: 'install',
	title: 'Install the control plane',
	noun: 'install',
	command: 'apply',
	steps: [preflight, binaries, certs, encryption, audit, units, start, etcdCheck, rbac, verify],
	mode: 'recorded',
};
