import {execFileSync} from 'node:child_process';
import path from 'node:path';
import {afterEach, beforeEach, describe, expect, inject, test} from 'vitest';
import {tempDir} from '../helpers/temp.js';
import {labSsh, readState, resetMasters, writeLabConfig} from './lab-helpers.js';

const lab = inject('lab');
const session = 'k8smi-e2e-terminal';
// A tmux server of its own, its socket in the test's temporary folder: the default one leaves /tmp/tmux-UID behind.
const socket = path.join(tempDir('k8smi-tmux-'), 'socket');

function tmux(...args: string[]): string {
	return execFileSync('tmux', ['-S', socket, ...args], {encoding: 'utf8'});
}

/** The whole pane with its scroll-back, as the operator would read it. */
function screen(): string {
	return tmux('capture-pane', '-p', '-J', '-S', '-500', '-t', session);
}

async function waitFor(pattern: RegExp, timeoutMs: number): Promise<string> {
	const end = Date.now() + timeoutMs;
	for (;;) {
		const text = screen();
		if (pattern.test(text) || Date.now() > end) {
			return text;
		}

		await new Promise(resolve => setTimeout(resolve, 250));
	}
}

describe.skipIf(!lab)('the terminal UI in a real terminal', () => {
	beforeEach(() => resetMasters(lab!));
	afterEach(() => {
		try {
			tmux('kill-session', '-t', session);
		} catch {}
	});

	test('shows the plan, installs on Enter with live progress, and ends with every master ready', async () => {
		const {configFile, stateDir} = writeLabConfig(lab!, 'v1.28.7');
		const command = `${process.execPath} ${path.resolve('bin/k8s-master-install.js')} --config ${configFile} --state-dir ${stateDir}; echo "EXIT=$?"; sleep 600`;
		tmux('new-session', '-d', '-s', session, '-x', '120', '-y', '50', '-e', 'TERM=xterm-256color', command);
		const plan = await waitFor(/Start the install on k8smaster01, k8smaster02, k8smaster03/, 30_000);
		expect(plan).toMatch(/Place certificates and keys +○ 14 files +○ 14 files +○ 14 files/);
		tmux('send-keys', '-t', session, 'Enter');
		const progress = await waitFor(/Install on 3 master\(s\)|EXIT=/, 30_000);
		expect(progress).toMatch(/Install on 3 master\(s\): k8smaster01, k8smaster02, k8smaster03/);
		const done = await waitFor(/EXIT=\d+/, 120_000);
		expect(done, done).toContain('EXIT=0');
		expect(done).toMatch(/Done: 3 master\(s\) installed/);
		expect(done).toMatch(/✔ Start the control plane: the apiservers and kube-nginx/);
		expect(done).toMatch(/✔ Start the controller-managers and schedulers/);
		expect(readState(stateDir).run.status).toBe('done');
		for (const host of lab!.hosts) {
			expect(labSsh(lab!, host.name, 'systemctl is-active kube-apiserver').trim()).toBe('active');
		}
	});

	test('q stops after the current action and a second run offers to resume', async () => {
		const {configFile, stateDir} = writeLabConfig(lab!, 'v1.28.7');
		const command = `${process.execPath} ${path.resolve('bin/k8s-master-install.js')} --config ${configFile} --state-dir ${stateDir}; echo "EXIT=$?"; sleep 600`;
		tmux('new-session', '-d', '-s', session, '-x', '120', '-y', '50', '-e', 'TERM=xterm-256color', command);
		await waitFor(/Start the install on/, 30_000);
		tmux('send-keys', '-t', session, 'Enter');
		await waitFor(/Install on k8smaster01/, 30_000);
		tmux('send-keys', '-t', session, 'q');
		const stopped = await waitFor(/EXIT=\d+/, 60_000);
		expect(stopped, stopped).toContain('EXIT=130');
		expect(stopped).toMatch(/To resume: k8s-master-install apply --config/);
		tmux('kill-session', '-t', session);

		tmux('new-session', '-d', '-s', session, '-x', '120', '-y', '50', '-e', 'TERM=xterm-256color', command);
		const resume = await waitFor(/Resume/, 30_000);
		expect(resume.replaceAll(/\s+/g, ' ')).toMatch(/An install from \d{4}-\d\d-\d\d \d\d:\d\d stopped (at|before)/);
		tmux('send-keys', '-t', session, 'Enter');
		const done = await waitFor(/EXIT=\d+/, 120_000);
		expect(done, done).toContain('EXIT=0');
		expect(readState(stateDir).run.status).toBe('done');
	});
});
