import {certsReadStep} from '../steps/certs-read.js';
import {cisStep} from '../steps/cis.js';
import {distinctMachines, preflight as preflightStep} from '../steps/preflight.js';
import {verify as verifyStep, verifyCluster} from '../steps/verify.js';
import type {Operation} from './types.js';

/** preflight: the install's first checks alone (every master, then across them), recording nothing. */
export const preflight: Operation = {id: 'preflight', title: 'Check the masters before installing', noun: 'preflight', command: 'preflight', steps: [preflightStep, distinctMachines], mode: 'checks'};

/** verify: the install's last checks alone (every master, and the cluster beside them), recording nothing. */
export const verify: Operation = {id: 'verify', title: 'Check the installed control plane', noun: 'verify', command: 'verify', steps: [verifyStep, verifyCluster], mode: 'checks'};

/** cis: the CIS benchmark's control-plane checks, read from every master. */
export const cis: Operation = {id: 'cis', title: 'Read the CIS benchmark checks', noun: 'CIS benchmark', command: 'cis', steps: [cisStep], mode: 'checks'};

/** certs: every certificate this install manages, read from every master. */
export const certificates: Operation = {id: 'certs', title: 'Read the certificates on the masters', noun: 'certificates', command: 'certs', steps: [certsReadStep], mode: 'checks'};
