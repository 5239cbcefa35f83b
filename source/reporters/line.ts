import type {EngineEvent} from '../engine/events.js';
import {formatAdminKubeconfig, formatBytes, formatDuration, formatCheckGrid, type CheckRow} from './format.js';

const marks = {done: '✔', skipped: '↷', failed: '✘', stopped: '■', excluded: '–'} as const;

/**
 * Plain lines for logs, CI and pipes: one line per finished thing, progress only at quarter marks
 * so that a log stays readable. NO_COLOR has nothing to strip: this view writes no colour.
 */
export function lineReporter(write: (line: string) => void, options: {verbose?: boolean} = {}): (event: EngineEvent) => void {
	const lastQuarter = new Map<string, number>();
	// Checks of steps side by side (verify's masters and its cluster checks) make one grid, printed once none of them runs.
	let checks: CheckRow[] = [];
	const running = new Set<string>();
	// Steps that need nothing from each other run side by side: a line that belongs to another step
	// than the last heading printed names its step.
	let heading = '';
	const who = (host: string, step: string) => (step === heading ? host : `${host} [${step}]`);
	return event => {
		switch (event.type) {
			case 'check': {
				checks.push(event);
				break;
			}

			case 'step-done': {
				running.delete(event.step);
				if (running.size === 0 && checks.length > 0) {
					for (const line of formatCheckGrid(checks)) {
						write(`   ${line}`);
					}

					checks = [];
				}

				break;
			}

			case 'warning': {
				write(`warning: ${event.message}`);
				break;
			}

			case 'material': {
				const changed = event.changes.filter(change => change.action !== 'kept');
				if (changed.length > 0) {
					write(`material: ${changed.map(change => `${change.item} ${change.action}${change.reason ? ` (${change.reason})` : ''}`).join(', ')}`);
				}

				break;
			}

			case 'local': {
				if (event.bytes === undefined) {
					write(event.message);
				}

				break;
			}

			case 'admin-kubeconfig': {
				write(formatAdminKubeconfig(event));
				break;
			}

			case 'run-start': {
				write(`▶ ${event.title} on ${event.masters.length} master(s): ${event.masters.join(', ')}`);
				break;
			}

			case 'step-start': {
				running.add(event.step);
				heading = event.step;
				write(`== ${event.title} [${event.step}]`);
				break;
			}

			case 'host-progress': {
				if (event.bytes !== undefined && event.total) {
					const quarter = Math.floor((event.bytes / event.total) * 4);
					const key = `${event.step}/${event.host}`;
					if (quarter > (lastQuarter.get(key) ?? 0)) {
						lastQuarter.set(key, quarter);
						write(`   ${who(event.host, event.step)}: ${formatBytes(event.bytes)} of ${formatBytes(event.total)} (${quarter * 25}%)`);
					}
				} else if (event.message && options.verbose) {
					write(`   ${who(event.host, event.step)}: ${event.message}`);
				}

				break;
			}

			case 'host-done': {
				write(`   ${marks[event.outcome]} ${who(event.host, event.step)} ${event.outcome} in ${formatDuration(event.durationMs)}${event.detail ? `: ${event.detail}` : ''}`);
				if (event.failure) {
					write(`     ${event.failure.message}`);
					if (event.failure.command) {
						write(`     command: ${event.failure.command}`);
					}

					for (const line of event.failure.output.split('\n').filter(Boolean).slice(-8)) {
						write(`     | ${line}`);
					}

					if (event.failure.fix) {
						write(`     fix: ${event.failure.fix}`);
					}
				}

				break;
			}

			case 'command-start': {
				if (options.verbose) {
					write(`   $ ${event.display}`);
				}

				break;
			}

			case 'finished': {
				write(`${event.outcome === 'done' ? 'Done' : event.outcome === 'stopped' ? 'Stopped' : 'Failed'}: ${event.message} (${formatDuration(event.durationMs)})`);
				break;
			}

			default: {
				break;
			}
		}
	};
}

/** One JSON object per line per event, for automation. */
export function jsonReporter(write: (line: string) => void): (event: EngineEvent) => void {
	return event => {
		write(JSON.stringify({time: new Date().toISOString(), ...event}));
	};
}
