import {existsSync, readFileSync} from 'node:fs';
import path from 'node:path';
import {describe, expect, test} from 'vitest';
import {main} from '../../../source/cli.js';
import {loadConfig} from '../../../source/config/load.js';
import type {EngineEvent} from '../../../source/engine/events.js';
import {install} from '../../../source/operations/install.js';
import {keysFor} from '../../../source/ui/app.js';
import {initialRun, reduceRun, type HistoryItem, type RunModel} from '../../../source/ui/run-model.js';
import {Session, type SessionState} from '../../../source/ui/session.js';
import {failureChoices, orderDiff, resumeSentence, summarizeMaterial} from '../../../source/ui/wording.js';
import {checkField, checkMaster, defaultAnswers, rebasePath, review, writeConfig, type Answers} from '../../../source/ui/wizard/model.js';
import {initialWizard, wizardReducer} from '../../../source/ui/wizard/use-wizard.js';
import {makeFixture} from '../../helpers/fixture.js';

const masters = ['k8smaster01', 'k8smaster02', 'k8smaster03'];

function replay(events: EngineEvent[]): {model: RunModel; history: HistoryItem[]} {
	let model = initialRun(masters);
	const history: HistoryItem[] = [];
	for (const [index, event] of events.entries()) {
		const next = reduceRun(model, event, 1000 * index);
		model = next.model;
		history.push(...next.history);
	}

	return {model, history};
}

describe('run model', () => {
	test('steps start pending on the hosts they run on; progress, outcomes and times land per host', () => {
		const initial = initialRun(masters);
		expect(initial.steps.map(step => step.status)).toEqual(Array.from({length: install.steps.length}, () => 'pending'));
		expect(initial.steps.find(step => step.id === 'rbac')!.hosts.map(host => host.host)).toEqual(['cluster']);

		const {model, history} = replay([
			{type: 'local', message: 'unpack /tmp/k.tar.gz'},
			{type: 'step-start', step: 'binaries', title: 'Copy the server binaries', hosts: masters},
			{type: 'host-start', step: 'binaries', host: 'k8smaster01'},
			{type: 'host-progress', step: 'binaries', host: 'k8smaster01', bytes: 50, total: 200, message: '/opt/k8s/bin/kubelet'},
			{type: 'host-done', step: 'binaries', host: 'k8smaster02', outcome: 'skipped', detail: '10 file(s) in place', durationMs: 5},
		]);
		const binaries = model.steps.find(step => step.id === 'binaries')!;
		expect(binaries).toMatchObject({status: 'running', startedAt: 1000});
		expect(binaries.hosts[0]).toMatchObject({host: 'k8smaster01', status: 'running', bytes: 50, total: 200, message: '/opt/k8s/bin/kubelet'});
		expect(binaries.hosts[1]).toMatchObject({status: 'skipped', detail: '10 file(s) in place'});
		expect(binaries.hosts[2]!.status).toBe('pending');
		expect(history).toEqual([{kind: 'note', tone: 'ok', text: '✔ unpack /tmp/k.tar.gz'}]);
		expect(model.local).toBeUndefined();
	});

	test('a finished step becomes history with its hosts; the command pane keeps running ones and the latest', () => {
		const commands: EngineEvent[] = Array.from({length: 7}, (_, id) => ({type: 'command-start', id, host: 'k8smaster01', display: `cmd ${id}`}));
		const {model, history} = replay([
			{type: 'step-start', step: 'certs', title: 'Place certificates and keys', hosts: masters},
			...commands,
			...[0, 1, 2, 3, 4].map((id): EngineEvent => ({type: 'command-end', id, host: 'k8smaster01', display: `cmd ${id}`, exitCode: id === 4 ? 255 : 0, durationMs: 3, timedOut: false})),
			...masters.map((host): EngineEvent => ({type: 'host-done', step: 'certs', host, outcome: 'done', detail: '7 written', durationMs: 9})),
			{type: 'step-done', step: 'certs', outcome: 'done', durationMs: 30},
		]);
		expect(model.commands.map(row => `${row.display}:${row.status}`)).toEqual(['cmd 2:ok', 'cmd 3:ok', 'cmd 4:failed', 'cmd 5:running', 'cmd 6:running']);
		expect(history).toHaveLength(1);
		expect(history[0]).toMatchObject({kind: 'step', step: {id: 'certs', status: 'done', durationMs: 30}});
		expect(history[0]!.kind === 'step' && history[0]!.step.hosts.map(host => host.status)).toEqual(['done', 'done', 'done']);
	});

	test('key material in a few words', () => {
		expect(summarizeMaterial(['CA key', 'kubernetes key', 'admin key', 'CA certificate', 'encryption key'])).toBe('the CA, 2 key pairs, the encryption key');
		const {history} = replay([{type: 'material', changes: [{item: 'CA key', action: 'kept'}, {item: 'kubernetes certificate', action: 'reissued', reason: '--rotate'}]}]);
		expect(history).toEqual([{kind: 'note', tone: 'info', text: 'Key material: issued again 1 certificate (kubernetes certificate: --rotate)'}]);
	});
});

describe('wording', () => {
	test('the resume sentence names when, the step and the host', () => {
		const sentence = resumeSentence({startedAt: '2026-03-04T05:06:00.000Z', updatedAt: '2026-03-04T05:09:00.000Z', status: 'stopped', step: 'certs', host: 'k8smaster02'});
		expect(sentence).toMatch(/^An install from 2026-03-0\d \d\d:\d6 stopped at certs \(Place certificates and keys\) on k8smaster02\.$/);
		expect(resumeSentence({startedAt: 'x', updatedAt: 'x', status: 'failed', host: 'k8smaster03', error: 'skipped on request'})).toBe('An install from x stopped with k8smaster03 left out.');
	});

	test('skip is offered for an each-master step only, and only while another master remains', () => {
		const failure = (step: string, host: string) => ({step, host, message: 'm', command: '', output: ''});
		const kinds = (choices: ReturnType<typeof failureChoices>) => choices.map(choice => choice.kind);
		expect(kinds(failureChoices([failure('binaries', 'k8smaster02')], masters, []))).toEqual(['retry', 'skip', 'abort']);
		expect(failureChoices([failure('binaries', 'k8smaster02')], masters, [])[1]).toMatchObject({hosts: ['k8smaster02']});
		expect(kinds(failureChoices([failure('rbac', 'k8smaster01')], masters, []))).toEqual(['retry', 'abort']);
		expect(kinds(failureChoices([failure('etcd-check', 'k8smaster01')], masters, []))).toEqual(['retry', 'abort']);
		expect(kinds(failureChoices([failure('certs', 'b')], ['a', 'b'], ['a']))).toEqual(['retry', 'abort']);
		expect(failureChoices([failure('certs', 'k8smaster03')], masters, ['k8smaster01'])[1]).toMatchObject({kind: 'skip', hosts: ['k8smaster01', 'k8smaster03']});
		expect(kinds(failureChoices([failure('start', 'k8smaster01'), failure('start', 'k8smaster02'), failure('start', 'k8smaster03')], masters, []))).toEqual(['retry', 'abort']);
	});

	test('a diff shows what is on the master before what replaces it', () => {
		const ordered = orderDiff('--- a\n+++ b\n context\n+new 1\n+new 2\n-old\n same');
		expect(ordered).toEqual({header: ['--- a', '+++ b'], body: [' context', '-old', '+new 1', '+new 2', ' same'], removed: 1, added: 2});
	});
});

describe('wizard checks', () => {
	const context = {cwd: '/tmp', extras: {}};
	const answers: Answers = {...defaultAnswers, masters: [{name: 'k8smaster01', ip: '172.24.8.71'}]};

	test('a bad or repeated IP names the field', () => {
		expect(checkMaster('ip', '172.24.8.256', answers.masters, 1, context).error).toMatchObject({field: 'masters[1].ip', text: 'is not an IPv4 address'});
		expect(checkMaster('ip', '172.24.8.71', answers.masters, 1, context).error).toMatchObject({field: 'masters[1].ip', text: 'repeats masters[0].ip (k8smaster01)'});
		expect(checkMaster('ip', '172.24.8.72', answers.masters, 1, context)).toEqual({error: undefined});
		expect(checkMaster('name', 'Master-1', answers.masters, 1, context).error?.field).toBe('masters[1].name');
	});

	test('the CIDR gives the kubernetes service IP, and may not hold a master', () => {
		expect(checkField('serviceCidr', '10.96.0.0/12', answers, context).info).toMatch(/^kubernetes service IP: 10\.96\.0\.1 /);
		expect(checkField('serviceCidr', '172.24.0.0/16', answers, context).error).toMatchObject({field: 'network.serviceCidr', text: 'contains masters[0].ip 172.24.8.71'});
		expect(checkField('serviceCidr', '10.96.0.0', answers, context).error).toMatchObject({field: 'network.serviceCidr', text: 'is not an IPv4 CIDR'});
		expect(checkField('serviceCidr', '10.0.0.0/8', answers, context).error?.text).toBe('has a prefix outside /12 to /28');
	});

	test('other fields: the schema\'s own rules, named', () => {
		expect(checkField('etcdEndpoints', 'https://10.0.0.1:2379, http://10.0.0.2:2379', answers, context).error).toMatchObject({field: 'etcd.endpoints[1]', text: 'is not an etcd client URL'});
		expect(checkField('etcdEndpoints', '', answers, context).error?.field).toBe('etcd.endpoints');
		expect(checkField('nodePortRange', '32767-30000', answers, context).error?.field).toBe('network.nodePortRange');
		expect(checkField('sshUser', 'Root User', answers, context).error?.field).toBe('ssh.user');
		expect(checkField('version', 'v1.13.0', answers, context).error?.field).toBe('version');
		expect(checkField('identityFile', '', answers, context).info).toMatch(/ssh uses its default keys/);
	});

	test('the reducer walks the questions, and edits from the review return there', () => {
		let state = wizardReducer(initialWizard(), {type: 'source', choice: 'questions'});
		expect(state.stage).toEqual({kind: 'field', id: 'version', value: 'v1.14.2'});
		state = wizardReducer(state, {type: 'change', value: 'v1.28.7'});
		state = wizardReducer(state, {type: 'submit', check: {error: {field: 'version', text: 'bad'}}});
		expect(state.attempted).toBe(true);
		expect(state.stage.kind).toBe('field');
		state = wizardReducer(state, {type: 'submit', check: {}});
		expect(state.answers.version).toBe('v1.28.7');
		expect(state.stage).toMatchObject({kind: 'field', id: 'tarball'});
		state = wizardReducer(state, {type: 'submit', check: {}});
		expect(state.stage).toEqual({kind: 'master', part: 'name', index: 0, name: '', value: 'k8smaster01'});
		state = wizardReducer(state, {type: 'submit', check: {}});
		state = wizardReducer(state, {type: 'change', value: '172.24.8.71'});
		state = wizardReducer(state, {type: 'submit', check: {}});
		expect(state.stage).toEqual({kind: 'masters'});
		expect(state.answers.masters).toEqual([{name: 'k8smaster01', ip: '172.24.8.71'}]);
		state = wizardReducer(state, {type: 'masters', choice: 'done'});
		expect(state.stage).toMatchObject({kind: 'field', id: 'sshUser'});
		state = wizardReducer(state, {type: 'edit', field: 'etcdEndpoints'});
		expect(state.stage).toEqual({kind: 'field', id: 'etcdEndpoints', value: 'https://172.24.8.71:2379'});
		state = wizardReducer(state, {type: 'submit', check: {}});
		expect(state.stage).toEqual({kind: 'review'});
		expect(wizardReducer(initialWizard(), {type: 'back'}).stage).toEqual({kind: 'source'});
	});

	test('paths typed relative to the current folder are written relative to the config', () => {
		expect(rebasePath('./k.tar.gz', '/work', '/work')).toBe('./k.tar.gz');
		expect(rebasePath('k.tar.gz', '/work', '/work/conf')).toBe('/work/k.tar.gz');
		expect(rebasePath('conf/key', '/work', '/work/conf')).toBe('./key');
		expect(rebasePath('~/id_rsa', '/work', '/elsewhere')).toBe('~/id_rsa');
	});

	test('review uses resolveConfig; the written file loads with loadConfig', async () => {
		const {dir, tarball} = makeFixture();
		const target = path.join(dir, 'conf', 'cluster.yaml');
		const full: Answers = {...defaultAnswers, version: 'v1.28.7', tarball: path.basename(tarball), masters: [{name: 'm1', ip: '10.0.0.1'}, {name: 'm2', ip: '10.0.0.2'}], etcdEndpoints: 'https://10.0.0.1:2379'};
		expect(review({...full, masters: [...full.masters, {name: 'm3', ip: '10.0.0.1'}]}, {}, dir, target, undefined).problems).toEqual([
			{field: 'masters[2].ip', text: 'repeats masters[0].ip (got 10.0.0.1). Fix: give every master its own ip'},
		]);
		expect(review({...full, tarball: 'nope.tar.gz'}, {}, dir, target, undefined)).toMatchObject({onlyMissingFiles: true});
		expect(review(full, {}, dir, target, undefined).problems).toEqual([]);
		writeConfig(full, {name: 'prod', timeouts: {readySeconds: 60}}, dir, target, undefined);
		const config = await loadConfig(target);
		expect(config).toMatchObject({name: 'prod', version: 'v1.28.7', serviceIp: '10.254.0.1', timeouts: {readySeconds: 60}});
		expect(config.binaries.tarball).toBe(tarball);
		expect(readFileSync(target, 'utf8')).toContain('tarball: ../kubernetes-server-linux-amd64.tar.gz'.replace('../', dir + '/'));
		writeConfig(full, {}, dir, target, undefined);
		expect(existsSync(`${target}.bak`)).toBe(true);
	});
});

describe('keys and prompts', () => {
	const state = (screen: SessionState['screen'], extra: Partial<SessionState> = {}): SessionState => ({
		screen, history: [], run: initialRun(masters), promptsWaiting: 0, masters, skipHosts: [], attempt: 1, configFile: '/c.yaml', cwd: '/', ...extra,
	});

	test('the footer names the keys of each screen', () => {
		const text = (value: SessionState) => keysFor(value).map(([key, what]) => `${key} ${what}`).join(' · ');
		expect(text(state({name: 'running', stopping: false}))).toBe('q or Ctrl-C stop safely after the current action (progress is saved)');
		expect(text(state({name: 'running', stopping: true}))).toMatch(/^Ctrl-C again: quit at once/);
		expect(text(state({name: 'running', stopping: false}, {prompt: {kind: 'overwrite', host: 'h', path: '/p', message: 'm', diff: '--- a\n+++ b\n+x'}}))).toBe('↑↓ choose · Enter select · Ctrl-C stop (the file is kept)');
		expect(text(state({name: 'failed', failures: [], choices: []}))).toContain('q abort (progress is kept)');
		expect(text(state({name: 'resume', run: {operation: 'install', startedAt: '', updatedAt: '', status: 'stopped'}, sentence: ''}))).toBe('↑↓ choose · Enter select · q quit');
		expect(keysFor(state({name: 'wizard', reason: 'missing'}))).toEqual([]);
	});

	test('questions are answered one at a time, in order', async () => {
		const session = new Session({configFile: '/nonexistent/cluster.yaml', stateDir: '/nonexistent', createEngine: () => {
			throw new Error('not used');
		}});
		const first = session.prompter.ask({kind: 'overwrite', host: 'a', path: '/x', message: 'x differs'});
		const second = session.prompter.ask({kind: 'confirm-apply', message: 'Apply?'});
		expect(session.getSnapshot()).toMatchObject({prompt: {kind: 'overwrite', host: 'a'}, promptsWaiting: 1});
		session.answer(true);
		expect(await first).toBe(true);
		expect(session.getSnapshot()).toMatchObject({prompt: {kind: 'confirm-apply'}, promptsWaiting: 0});
		session.answer(false);
		expect(await second).toBe(false);
		expect(session.getSnapshot().prompt).toBeUndefined();
		expect(session.getSnapshot().history.map(entry => entry.kind === 'note' && entry.text)).toEqual(['Overwriting /x on a (a backup is kept there)']);
	});
});

describe('without a terminal', () => {
	test('no command prints the help and exits 2: Ink is not mounted', async () => {
		expect(process.stdin.isTTY && process.stdout.isTTY).toBeFalsy();
		const out: string[] = [];
		const code = await main([], {out: line => out.push(line), err: line => out.push(line)});
		expect(code).toBe(2);
		expect(out.join('\n')).toContain('Usage');
	});
});
