import {cisStep} from '../steps/cis.js';
import {preflight as preflightStep} from '../steps/preflight.js';
import {verify as verifyStep} from '../steps/verify.js';
import type {Operation} from './types.js';

/** preflight: the install's first step alone, recording nothing. */
export const preflight: Operation = {id: 'preflight', title: 'Check the masters before installing', noun: 'preflight', command: 'preflight', steps: [preflightStep], mode: 'checks'};

/** verify: the install's last step alone, recording nothing. */
export const verify: Operation = {id: 'verify', title: 'Check the installed control plane', noun: 'verify', command: 'verify', steps: [verifyStep], mode: 'checks'};

/** cis: the CIS benchmark's control-plane checks, read from every master. */
export const cis: Operation = {id: 'cis', title: 'Read the CIS benchmark checks', noun: 'CIS benchmark', command: 'cis', steps: [cisStep], mode: 'checks'};
