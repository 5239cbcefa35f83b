import {existsSync, readFileSync, statSync} from 'node:fs';
import path from 'node:path';
import {cleanup} from 'ink-testing-library';
import {afterEach, describe, expect, test} from 'vitest';
import {StopRequested} from '../../../source/engine/engine.js';
import type {CommandResult, CommandSpec} from '../../../source/runner.js';
import {StateStore} from '../../../source/state/store.js';
import type {FakeCluster} from '../../helpers/fake-hosts.js';
import {ips, keys, mount, setup} from './helpers.js';

afterEach(cleanup);

const active = (cluster: FakeCluster) => ips.map(ip => cluster.hosts.get(ip)!.active);
const isUpload = (spec: CommandSpec) => spec.command === 'ssh' && /(cat|head -c \d+) > /.test(spec.args.at(-1) ?? '');

/** An executor that holds the nth upload to one master until the test lets it go. */
function holdUpload(ip: string) {
	let release: () => void = () => undefined;
	const released = new Promise<void>(resolve => {
		release = resolve;
	});
	let reached: () => void = () => undefined;
	const held = new Promise<void>(resolve => {
		reached = resolve;
	});
	let count = 0;
	const executor = (cluster: FakeCluster) => async (spec: CommandSpec): Promise<CommandResult> => {
		if (isUpload(spec) && spec.args.includes(ip) && count++ === 0) {
			// Held in the middle of its stream: the first file sent, the rest to come.
			const [first] = spec.inputParts ?? [];
			spec.onInputProgress?.(first && 'file' in first ? statSync(first.file).size : first?.bytes.length ?? 0);
			reached();
			await released;
		}

		return cluster.executor(spec);
	};

	return {executor, release, held};
}

describe('plan and run', () => {
	test('the plan is a grid of steps × masters; Start runs every step and keeps finished steps above', async () => {
		const {session, cluster, applies, stateDir} = setup();
		const app = mount(session());
		const plan = await app.until('Start the install');
		expect(existsSync(stateDir)).toBe(false);
		expect(plan).toContain('Install: plan for cluster kubernetes, Kubernetes v1.28.7 on 3 masters');
		expect(plan).toMatch(/Step\s+k8smaster01\s+k8smaster02\s+k8smaster03/);
		expect(plan).toMatch(/Place certificates and keys\s+○ 14 files\s+○ 14 files\s+○ 14 files/);
		expect(plan).toMatch(/Let the apiserver use the kubelet API \(RBAC\)\s+○ once for the cluster, via k8smaster01/);
		expect(plan).toContain('↑↓ choose  ·  Enter select  ·  q quit');
		expect(cluster.calls).toHaveLength(0);

		await app.press(keys.enter);
		expect(await app.exited).toBe(0);
		const last = app.frame();
		expect(last).toMatch(/✔ Copy kube-apiserver and kubectl\s+\d/);
		expect(last).toMatch(/✔ k8smaster02\s+done: 2 written, 0 already in place/);
		expect(last).toContain('✔ Done: 3 master(s) installed');
		// A long path wraps on the screen.
		expect(last.replaceAll(/\s+/g, '')).toMatch(/Log:.*apply-.*\.jsonl/);
		expect(applies).toEqual([{confirm: false, skipHosts: []}]);
		expect(active(cluster)).toEqual([true, true, true]);
	});

	test('while copying: per-host bytes and percent, the last commands, pending steps; q stops after the current action', async () => {
		const hold = holdUpload('172.24.8.71');
		const {session, stateDir} = setup({executor: hold.executor});
		const app = mount(session());
		await app.until('Start the install');
		await app.press(keys.enter);
		await hold.held;
		const running = await app.until(/k8smaster01 +\[█+░+\] +\d+%/);
		const [, share] = /k8smaster01 +\[█+░+\] +(\d+)% {2}[\d.]+ (?:B|KiB|MiB) of [\d.]+ (?:B|KiB|MiB)/.exec(running)!;
		expect(Number(share)).toBeGreaterThan(0);
		expect(Number(share)).toBeLessThan(100);
		expect(running).toMatch(/Copy kube-apiserver and kubectl {2}\d+ s\n/);
		expect(running).toContain('Last commands');
		expect(running).toMatch(/⠋ k8smaster01 +ssh k8smaster01 write 2 files: \/opt\/k8s\/bin\/\S+ \(755\)/);
		// The generated files need nothing from the binaries: they are written meanwhile; start waits for both.
		expect(running).toContain('○ Start the control plane');
		expect(running).toContain('q or Ctrl-C stop safely after the current action');

		await app.press('q');
		const stopping = await app.until('Stopping after the current action');
		expect(stopping).toContain('Ctrl-C again: quit at once');
		hold.release();
		expect(await app.exited).toBe(130);
		const last = app.frame();
		// The action under way was the stream of the binaries: it finished, nothing after it began (on a new
		// cluster the units went beside it).
		expect(last.replaceAll(/\s+/g, ' ')).toContain('■ Stopped before start (Start the control plane: the apiservers and kube-nginx, and wait until ready). Progress is saved.');
		// The step lasted as long as the upload was held: past a second on a busy machine ("1.2 s").
		expect(last).toMatch(/✔ Copy kube-apiserver and kubectl +(\d+ ms|\d+\.\d s)\n +✔ k8smaster01 +done: 2 written/);
		expect(last).toMatch(/To resume: k8s-master-install apply --config \S+cluster\.yaml/);
		expect(new StateStore(path.join(stateDir, 'kubernetes'), 'kubernetes').snapshot.run?.status).toBe('stopped');
	});
});

describe('failure', () => {
	test('shows step, host, command, output and fix; Retry applies again and finishes', async () => {
		const {session, cluster, applies} = setup();
		const heal = cluster.cutDuring('binaries', '172.24.8.72');
		const app = mount(session());
		await app.until('Start the install');
		await app.press(keys.enter);
		const failed = await app.until('What now?');
		expect(failed).toContain('✘ Copy kube-apiserver and kubectl failed on k8smaster02');
		expect(failed).toMatch(/command: write 2 files: \/opt\/k8s\/bin\//);
		expect(failed).toMatch(/│ ssh: connect to host 172\.24\.8\.72 port 22: No route to host/);
		expect(failed).toMatch(/fix: k8smaster02 \(172\.24\.8\.72\) is not reachable/);
		expect(failed).toContain('❯ Retry');
		expect(failed).toContain('Skip k8smaster02 for this run (apply again on k8smaster01, k8smaster03)');
		expect(failed).toContain('Abort (progress is kept)');

		heal();
		await app.press(keys.enter);
		expect(await app.exited).toBe(0);
		expect(app.frame()).toContain('✔ Done: 3 master(s) installed');
		expect(applies).toHaveLength(2);
		expect(active(cluster)).toEqual([true, true, true]);
	});

	test('Skip this host applies again without it', async () => {
		const {session, cluster, applies} = setup();
		cluster.cutDuring('binaries', '172.24.8.72');
		const app = mount(session());
		await app.until('Start the install');
		await app.press(keys.enter);
		await app.until('What now?');
		await app.press(keys.down, keys.enter);
		expect(await app.exited).toBe(0);
		expect(applies.map(each => each.skipHosts)).toEqual([[], ['k8smaster02']]);
		const last = app.frame();
		expect(last).toContain('✔ Done, with masters left out: 2 master(s) installed; skipped k8smaster02');
		expect(last).toContain('To install k8smaster02 later: k8s-master-install apply --config');
		expect(last).toMatch(/– k8smaster02 +skipped for this run/);
		expect(active(cluster)).toEqual([true, false, true]);
	});

	test('Abort keeps the progress and says how to resume', async () => {
		const {session, cluster} = setup();
		cluster.hosts.get('172.24.8.73')!.reachable = false;
		const app = mount(session());
		await app.until('Start the install');
		await app.press(keys.enter);
		await app.until('What now?');
		await app.press(keys.down, keys.down, keys.enter);
		expect(await app.exited).toBe(1);
		// A master down from the start fails the preflight: nothing is done on any master.
		expect(app.frame()).toContain('Aborted: Preflight checks failed on k8smaster03. Progress is kept.');
		expect(app.frame()).toMatch(/To resume: k8s-master-install apply --config \S+cluster\.yaml/);
	});
});

describe('a master down after the install', () => {
	test('the plan is still shown, that master named as not read (the way to --skip it is open)', async () => {
		const {session, cluster, headless} = setup();
		await (await headless()).apply({confirm: false});
		cluster.hosts.get('172.24.8.73')!.reachable = false;
		const app = mount(session());
		const plan = await app.until('Apply changes on');
		expect(plan).toMatch(/k8smaster03: not read \(172\.24\.8\.73: /);
		expect(plan).toContain('k8smaster01: no file differs');
	});
});

describe('a file changed on a master', () => {
	test('the diff is shown; Overwrite replaces it and keeps a backup', async () => {
		const {session, cluster, headless} = setup();
		await (await headless()).apply({confirm: false});
		const host = cluster.hosts.get('172.24.8.73')!;
		host.files.set('/etc/kubernetes/audit-policy.yaml', {content: Buffer.from('edited by hand\n'), mode: 0o644, owner: 'root'});
		const app = mount(session());
		const plan = await app.until('Apply changes on');
		expect(plan).toContain('Apply changes: plan for cluster kubernetes');
		// The hand edit, as plan reads it from the master: a diff against what the config writes.
		expect(plan).toMatch(/~ \/etc\/kubernetes\/audit-policy\.yaml {2}\[audit\] {2}\(changed on the master by hand/);
		expect(plan).toMatch(/^ *-edited by hand/m);
		expect(plan).toMatch(/Installed \d{4}-\d\d-\d\d \d\d:\d\d\. Applying again checks every master/);
		expect(plan).toMatch(/Place the audit policy\s+✔ done\s+✔ done\s+✔ done/);
		await app.press(keys.enter);
		const prompt = await app.until('Overwrite /etc/kubernetes/audit-policy.yaml');
		expect(prompt).toContain('⚠ /etc/kubernetes/audit-policy.yaml on k8smaster03 differs from what this install wrote there.');
		expect(prompt).toMatch(/1 line only on k8smaster03 \(-\), \d+ lines only in what this install writes \(\+\)/);
		expect(prompt).toMatch(/--- k8smaster03:\/etc\/kubernetes\/audit-policy\.yaml *│\n│ \+\+\+ rendered *│\n│ -edited by hand *│\n│ \+apiVersion: audit\.k8s\.io\/v1/);
		expect(prompt).toMatch(/lines 1–18 of \d+ {2}· {2}PgDn\/Space further/);
		await app.press('\u001B[6~');
		const scrolled = await app.until('lines 19–36 of');
		expect(scrolled).not.toContain('-edited by hand');
		expect(prompt).toContain('Keep it (the step fails on k8smaster03; the install stops there)');
		await app.press(keys.enter);
		expect(await app.exited).toBe(0);
		expect(app.frame()).toContain('Overwriting /etc/kubernetes/audit-policy.yaml on k8smaster03 (a backup is kept there)');
		expect(host.files.get('/etc/kubernetes/audit-policy.yaml')?.content.toString()).toContain('kind: Policy');
		expect(cluster.calls.some(call => (call.args.at(-1) ?? '').includes('k8smi-backup-'))).toBe(true);
	});

	test('a long diff is cut short on screen, what restarts never is', async () => {
		const {session, cluster, headless} = setup();
		await (await headless()).apply({confirm: false});
		const edited = Array.from({length: 120}, (_, index) => `line ${index} edited by hand`).join('\n');
		cluster.hosts.get('172.24.8.73')!.files.set('/etc/kubernetes/audit-policy.yaml', {content: Buffer.from(`${edited}\n`), mode: 0o644, owner: 'root'});
		const app = mount(session());
		const plan = await app.until('Apply changes on');
		expect(plan).toMatch(/… \d+ more lines of differences: k8s-master-install plan --config\s+\S+cluster\.yaml/);
		expect(plan).toContain('Restarts, one master at a time');
		expect(plan).toMatch(/restart kube-apiserver \(a file it reads differs on the master/);
	});

	test('Keep leaves it and the step fails on that master', async () => {
		const {session, cluster, headless} = setup();
		await (await headless()).apply({confirm: false});
		const host = cluster.hosts.get('172.24.8.73')!;
		host.files.set('/etc/kubernetes/audit-policy.yaml', {content: Buffer.from('edited by hand\n'), mode: 0o644, owner: 'root'});
		const app = mount(session());
		await app.until('Apply changes on');
		await app.press(keys.enter);
		await app.until('Overwrite /etc/kubernetes/audit-policy.yaml');
		await app.press(keys.down, keys.enter);
		const failed = await app.until('What now?');
		expect(failed).toContain('✘ Place the audit policy failed on k8smaster03');
		expect(failed).toContain('/etc/kubernetes/audit-policy.yaml was changed on the host; left as it is');
		expect(host.files.get('/etc/kubernetes/audit-policy.yaml')?.content.toString()).toBe('edited by hand\n');
	});
});

describe('questions from the engine', () => {
	test('confirm-apply is asked on screen and answered with the choice', async () => {
		const {session} = setup();
		const instance = session();
		const app = mount(instance);
		await app.until('Start the install');
		const answer = instance.prompter.ask({kind: 'confirm-apply', message: 'Apply the plan to 3 master(s) (k8smaster01, k8smaster02, k8smaster03)?'});
		const frame = await app.until('Yes, apply');
		expect(frame).toContain('Apply the plan to 3 master(s) (k8smaster01, k8smaster02, k8smaster03)?');
		expect(frame).not.toContain('Start the install');
		await app.press(keys.down, keys.enter);
		expect(await answer).toBe(false);
		await app.until('Start the install');
	});
});

describe('saved progress', () => {
	async function stoppedInstall() {
		const context = setup();
		const first = await context.headless();
		context.cluster.beforeCommand = (_, index) => {
			if (index === 20) {
				first.requestStop();
			}
		};

		await expect(first.apply({confirm: false})).rejects.toBeInstanceOf(StopRequested);
		context.cluster.beforeCommand = () => undefined;
		return {...context, run: first.state.snapshot.run!};
	}

	test('says where an earlier install stopped; Resume applies and finishes', async () => {
		const {session, cluster, applies, run} = await stoppedInstall();
		expect(run.status).toBe('stopped');
		const app = mount(session());
		const screen = await app.until('Show what is done');
		// The terminal wraps the sentence when it names several masters.
		expect(screen.replaceAll(/\s+/g, ' ')).toMatch(new RegExp(`An install from \\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d stopped at ${run.step} \\(.+\\) on ${run.host}\\.`));
		expect(screen).toContain('Start over (forget the progress; keeps the CA and the keys)');
		await app.press(keys.enter);
		expect(await app.exited).toBe(0);
		expect(applies).toEqual([{confirm: false, skipHosts: []}]);
		expect(app.frame()).toContain('▶ Resume from');
		expect(active(cluster)).toEqual([true, true, true]);
	});

	test('Show what is done, then Start over: progress forgotten, keys kept, plan shown', async () => {
		const {session, stateDir, applies} = await stoppedInstall();
		const ca = readFileSync(path.join(stateDir, 'kubernetes', 'pki', 'ca.pem'), 'utf8');
		const app = mount(session());
		await app.until('Show what is done');
		await app.press(keys.down, keys.enter);
		const done = await app.until('What is done');
		expect(done).toMatch(/Copy kube-apiserver and kubectl\s+(✔ done|■ stopped) \d\d:\d\d/);
		expect(done).toMatch(/Let the apiserver use the kubelet API \(RBAC\)\s+○ not yet/);
		await app.press(keys.enter);
		await app.until('Show what is done');
		await app.press(keys.down, keys.down, keys.enter);
		const plan = await app.until('Start the install');
		expect(plan).toContain('Progress forgotten; the CA, the keys and the encryption key are kept.');
		expect(new StateStore(path.join(stateDir, 'kubernetes'), 'kubernetes').snapshot.run).toBeUndefined();
		expect(readFileSync(path.join(stateDir, 'kubernetes', 'pki', 'ca.pem'), 'utf8')).toBe(ca);
		expect(applies).toHaveLength(0);
		await app.press('q');
		expect(await app.exited).toBe(0);
		expect(app.frame()).toContain('Quit. Nothing was applied.');
	});
});
