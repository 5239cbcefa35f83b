import {backup} from './backup.js';
import {certificates, cis, preflight, verify} from './checks.js';
import {install} from './install.js';
import {reset} from './reset.js';
import {rotateEncryptionKey} from './rotate-encryption-key.js';
import type {Operation} from './types.js';

export type {Operation} from './types.js';
export {backup, certificates, cis, install, preflight, reset, rotateEncryptionKey, verify};

/** Every operation, by the id its runs are recorded under. */
export const operations: ReadonlyMap<string, Operation> = new Map([install, reset, preflight, verify, cis, certificates, rotateEncryptionKey, backup].map(operation => [operation.id, operation]));
