import {audit, binaries, certs, controllerBinaries, controllerUnits, encryption, etcdCheck, rbac, start, startControllers, units} from '../steps/definitions.js';
import {leave} from '../steps/membership.js';
import {distinctMachines, preflight} from '../steps/preflight.js';
import {beforeUpgrade, snapshotStep} from '../steps/snapshot.js';
import {verify, verifyCluster} from '../steps/verify.js';
import type {Operation} from './types.js';

/** Before an upgrade, taken among the checks (it needs them): a failed snapshot stops the run before any master changes. */
const snapshotBeforeUpgrade = {...snapshotStep(beforeUpgrade), needs: [distinctMachines.id]};

/** apply: checks (and a snapshot before an upgrade), masters that leave, files, services, then what the cluster as a whole needs. */
export const install: Operation = {
	id: 'install',
	title: 'Install the control plane',
	noun: 'install',
	command: 'apply',
	steps: [preflight, distinctMachines, snapshotBeforeUpgrade, leave, binaries, certs, encryption, audit, units, start, controllerBinaries, controllerUnits, startControllers, rbac, etcdCheck, verify, verifyCluster],
	mode: 'recorded',
	words: {
		question: ({masters}) => `Apply the plan to ${masters.length} master(s) (${masters.join(', ')})?`,
		done({masters, skipped, kind, changed}) {
			const count = masters.length - skipped.length;
			const done = changed === false ? `nothing to change: ${count} master(s) already as configured, and ready`
				: kind?.kind === 'upgrade' ? `${count} master(s) upgraded to ${kind.to}` : kind?.kind === 'apply-changes' ? `changes applied on ${count} master(s)` : `${count} master(s) installed`;
			const left = skipped.length === 1 ? 'it' : 'them';
			return `${done}${skipped.length > 0 ? `; skipped ${skipped.join(', ')}: run apply again to ${kind?.kind === 'upgrade' ? `upgrade ${left}` : kind?.kind === 'apply-changes' ? `change ${left} too` : `install ${left}`}` : ''}`;
		},
	},
};
