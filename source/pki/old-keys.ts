import {existsSync, rmSync} from 'node:fs';
import {InputError} from '../errors.js';
import type {StateStore} from '../state/store.js';
import type {Workspace} from '../workspace.js';
import {encryptionKeyFile} from './material.js';

/**
 * Deletes the files of the keys a finished rotation replaced, and records when. Refused while the
 * rotation runs (the masters or etcd's data may still need them) and for a key still in use.
 */
export function removeOldKeyFiles(workspace: Workspace, store: StateStore): string[] {
	const {encryptionRotation: rotation, material} = store.snapshot;
	if (!rotation) {
		throw new InputError('--remove-old-key', workspace.root, 'records no encryption-key rotation', 'run rotate-encryption-key first');
	}

	if (rotation.phase !== 'done') {
		throw new InputError('--remove-old-key', rotation.from.map(key => key.name).join(', '), `is still needed: the rotation is at its ${rotation.phase} phase`, 'run rotate-encryption-key until it is done, then --remove-old-key');
	}

	// A snapshot from before the rewrite holds secrets only the old key decrypts: restored without it, they are lost.
	const needing = (store.snapshot.snapshots ?? []).filter(snapshot => snapshot.at < (rotation.count?.at ?? rotation.finishedAt ?? '') && existsSync(snapshot.path));
	if (needing.length > 0) {
		throw new InputError('--remove-old-key', rotation.from.map(key => key.name).join(', '), `still decrypts the secrets in ${needing.length} etcd snapshot(s) taken before the rewrite (${needing.map(snapshot => snapshot.path).join(', ')})`, 'keep the old key as long as you keep those snapshots; delete or move them away first, then --remove-old-key');
	}

	const inUse = new Set(material?.encryptionKeys.map(key => key.name) ?? [rotation.to.name]);
	const files = rotation.from.filter(key => !inUse.has(key.name)).map(key => encryptionKeyFile(workspace, key.name)).filter(file => existsSync(file));
	for (const file of files) {
		rmSync(file);
	}

	store.update(state => {
		state.encryptionRotation = {...rotation, oldKeysRemovedAt: rotation.oldKeysRemovedAt ?? new Date().toISOString()};
	});
	return files;
}
