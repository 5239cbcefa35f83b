import {rotationSteps} from '../steps/rotation.js';
import {snapshotStep, type Occasion} from '../steps/snapshot.js';
import type {Operation} from './types.js';

/** Before a rotation begins; a resumed one was snapshotted when it began (its new key was made after it). */
const beforeRotation: Occasion = context => {
	const rotation = context.state.encryptionRotation();
	return rotation && rotation.phase !== 'done'
		? {take: false, why: `the rotation to ${rotation.to.name} is under way (a snapshot was taken before it began)`}
		: {take: true, why: 'before the key rotation'};
};

/**
 * rotate-encryption-key: a new aescbc key in four phases (prepare, rotate, rewrite, drop), each
 * finished on every master before the next; see steps/rotation.ts. A killed run continues.
 */
export const rotateEncryptionKey: Operation = {
	id: 'rotate-encryption-key',
	title: 'Rotate the encryption key',
	noun: 'encryption-key rotation',
	command: 'rotate-encryption-key',
	steps: rotationSteps(snapshotStep(beforeRotation)),
	mode: 'recorded',
	words: {
		question: ({masters}) => `Rotate the encryption key on ${masters.length} master(s) (${masters.join(', ')}): add a new key, restart every apiserver three times one after the other, and write every secret back?`,
		done: ({masters}) => `encryption key rotated on ${masters.length} master(s): every secret is under the new key; the old key file stays in the state folder until rotate-encryption-key --remove-old-key`,
	},
};
