import {readFileSync} from 'node:fs';
import path from 'node:path';
import {describe, expect, test} from 'vitest';
import {loadConfig} from '../../source/config/load.js';
import {planExitCode} from '../../source/commands.js';
import {ApplyFailed, Engine, StopRequested} from '../../source/engine/engine.js';
import type {EngineEvent} from '../../source/engine/events.js';
import {headlessPrompter, type Prompter} from '../../source/engine/prompts.js';
import {InputError} from '../../source/errors.js';
import {readCertificate} from '../../source/pki/certs.js';
import type {Api, ApiRequest, HealthAnswer} from '../../source/remote/health.js';
import {formatPlan} from '../../source/reporters/format.js';
import {Runner} from '../../source/runner.js';
import {Workspace} from '../../source/workspace.js';
import {FakeCluster, fakeHostname} from '../helpers/fake-hosts.js';
import {baseConfig, makeFixture, writeConfig} from '../helpers/fixture.js';

const [ip1, ip2, ip3, ip4] = ['172.24.8.71', '172.24.8.72', '172.24.8.73', '172.24.8.74'] as const;
const master = (number: number, ip: string) => ({name: `k8smaster0${number}`, ip});
const three = [master(1, ip1), master(2, ip2), master(3, ip3)];
const nginxConf = '/opt/k8s/kube-nginx/conf/kube-nginx.conf';
const apiserverCert = '/etc/kubernetes/cert/kubernetes.pem';

/**
 * The cluster objects of the apiservers that the masters' changes touch: each running apiserver's
 * identity lease (labelled with its host name) and its address in the kubernetes Endpoints and
 * EndpointSlice, as the apiservers keep them; the rest is the fake cluster's API.
 */
class ClusterObjects {
	readonly leases = new Map<string, string>();
	readonly endpoints = new Set<string>();
	readonly slice = new Set<string>();

	constructor(private readonly cluster: FakeCluster) {}

	/** What the running apiservers wrote: call once the masters run. */
	syncFromRunning(): void {
		for (const host of this.cluster.hosts.values()) {
			if (host.active) {
				this.leases.set(`kube-apiserver-${host.ip.replaceAll('.', '')}`, fakeHostname(host.ip));
				this.endpoints.add(host.ip);
				this.slice.add(host.ip);
			}
		}
	}

	readonly api: Api = async (ip: string, port: number, request: ApiRequest, ...rest): Promise<HealthAnswer> => {
		const answer = (status: number, object: unknown): HealthAnswer => ({ok: status >= 200 && status < 300, status, body: JSON.stringify(object)});
		const serving = this.cluster.hosts.get(ip)?.active && this.cluster.hosts.get(ip)?.reachable;
		const leases = '/apis/coordination.k8s.io/v1/namespaces/kube-system/leases';
		const known = request.path === leases || request.path.startsWith(`${leases}/kube-apiserver-`) || request.path.endsWith('/endpoints/kubernetes') || request.path.endsWith('/endpointslices/kubernetes');
		if (!known) {
			return this.cluster.api(ip, port, request, ...rest);
		}

		this.cluster.calls.push({command: 'https', args: [request.method, `https://${ip}:6443${request.path}`], host: ip, step: 'leave'});
		if (!serving) {
			return {ok: false, status: 0, body: '', error: 'connect ECONNREFUSED'};
		}

		if (request.path === leases) {
			return answer(200, {items: [...this.leases].map(([name, hostname]) => ({metadata: {name, labels: {'apiserver.kubernetes.io/identity': 'kube-apiserver', 'kubernetes.io/hostname': hostname}}}))});
		}

		if (request.path.startsWith(`${leases}/`)) {
			this.leases.delete(request.path.slice(leases.length + 1));
			return answer(200, {kind: 'Status', status: 'Success'});
		}

		const body = request.body as Record<string, any> | undefined;
		if (request.path.endsWith('/endpoints/kubernetes')) {
			if (request.method === 'PUT') {
				this.endpoints.clear();
				for (const address of body!.subsets[0].addresses) {
					this.endpoints.add(address.ip);
				}
			}

			return answer(200, {kind: 'Endpoints', metadata: {name: 'kubernetes'}, subsets: [{addresses: [...this.endpoints].map(each => ({ip: each})), ports: [{port: 6443}]}]});
		}

		if (request.method === 'PUT') {
			this.slice.clear();
			for (const endpoint of body!.endpoints) {
				this.slice.add(endpoint.addresses[0]);
			}
		}

		return answer(200, {kind: 'EndpointSlice', metadata: {name: 'kubernetes'}, endpoints: [...this.slice].map(each => ({addresses: [each]}))});
	};
}

type MasterEntry = {name: string; ip: string; sshHost?: string};

function setup(masters: MasterEntry[] = three, version = 'v1.28.7') {
	const fixture = makeFixture(version);
	const raw = baseConfig(fixture.tarball, version);
	raw.masters = masters;
	const configFile = writeConfig(fixture.dir, raw);
	const cluster = new FakeCluster([ip1, ip2, ip3, ip4]);
	const objects = new ClusterObjects(cluster);
	const logFile = path.join(fixture.dir, 'apply.jsonl');
	const engine = async (options: {forceRemove?: string[]; prompter?: Prompter} = {}) => {
		const config = await loadConfig(configFile);
		const events: EngineEvent[] = [];
		const instance = new Engine({
			config,
			workspace: new Workspace(fixture.stateDir, config.name),
			runner: new Runner({executor: cluster.executor, logFile}),
			prompter: options.prompter ?? headlessPrompter({yes: true, overwrite: false}),
			probe: cluster.probe,
			api: objects.api,
			forceRemove: options.forceRemove,
		});
		instance.subscribe(event => events.push(event));
		return {engine: instance, events};
	};

	/** The config's masters changed, as an operator edits the list. */
	const setMasters = (list: MasterEntry[]) => writeConfig(fixture.dir, {...raw, masters: list});
	const install = async () => {
		await (await engine()).engine.apply({confirm: true});
		objects.syncFromRunning();
	};

	return {...fixture, cluster, objects, engine, setMasters, install};
}

const file = (cluster: FakeCluster, ip: string, remotePath: string) => cluster.hosts.get(ip)!.files.get(remotePath)?.content.toString();
const upstreams = (cluster: FakeCluster, ip: string) => [...(file(cluster, ip, nginxConf) ?? '').matchAll(/server (\S+):6443/g)].map(match => match[1]);
const certSans = (cluster: FakeCluster, ip: string) => readCertificate(file(cluster, ip, apiserverCert)!).ipSans;
const certKey = (cluster: FakeCluster, ip: string) => readCertificate(file(cluster, ip, apiserverCert)!).publicKeyPem;
const finished = (events: EngineEvent[]) => events.find((event): event is Extract<EngineEvent, {type: 'finished'}> => event.type === 'finished');
const hostsRecorded = (engine: Engine) => new Set(Object.values(engine.state.snapshot.steps).flatMap(step => Object.keys(step?.hosts ?? {})));

describe('a master added to the config', () => {
	test('plan says what joins and what changes on the others: certificate SANs with the same key, kube-nginx, rolling restarts; etcd untouched', async () => {
		const {engine, setMasters, install} = setup();
		await install();
		setMasters([...three, master(4, ip4)]);
		const plan = await (await engine()).engine.plan();
		expect(plan.masters).toEqual([
			expect.stringMatching(/^k8smaster04 \(172\.24\.8\.74\) joins: checked by preflight first.*apiserver certificate's SANs \(issued again with the same key\).*kube-nginx's upstreams on every master/),
			expect.stringMatching(/^k8smaster01, k8smaster02, k8smaster03 stay: certificates issued again.*kube-apiserver restarted one master at a time/),
			expect.stringMatching(/^etcd is external to this tool and is not changed/),
		]);
		expect(plan.materialChanges).toContainEqual({item: 'kubernetes certificate', action: 'reissued', reason: 'its SANs changed (+172.24.8.74); same key pair'});
		expect(plan.steps.find(step => step.id === 'leave')!.hosts[0]!.actions).toEqual([expect.objectContaining({kind: 'check', description: expect.stringMatching(/^no master leaves/)})]);
		const text = formatPlan(plan);
		expect(text).toContain('Masters that join or leave:');
		expect(text).toContain('kubernetes certificate reissued (its SANs changed (+172.24.8.74); same key pair)');
		// kube-nginx is reloaded on the masters that stay (its config alone changes there), restarted nowhere.
		const nginx = plan.changes!.hosts.filter(host => host.host !== 'k8smaster04').map(host => host.services.find(service => service.name === 'kube-nginx')?.action);
		expect(nginx).toEqual(['reload', 'reload', 'reload']);
	});

	test('apply gives the new master everything, re-issues the certificates with the same keys, reloads kube-nginx and restarts the apiservers one at a time, each out of kube-nginx first', async () => {
		const {cluster, engine, setMasters, install} = setup();
		await install();
		const keyBefore = certKey(cluster, ip1);
		const nginxRestarts = [ip1, ip2, ip3].map(ip => cluster.hosts.get(ip)!.unitRestarts.get('kube-nginx'));
		const timeline = cluster.drainTimeline.length;
		setMasters([...three, master(4, ip4)]);
		const {engine: instance, events} = await engine();
		await instance.apply({confirm: true});
		expect(events.filter(event => event.type === 'warning').map(event => event.type === 'warning' && event.message)).toContainEqual(expect.stringMatching(/^k8smaster04 \(172\.24\.8\.74\) joins/));
		for (const ip of [ip1, ip2, ip3, ip4]) {
			expect(cluster.running(ip)).toEqual(['kube-apiserver', 'kube-controller-manager', 'kube-nginx', 'kube-scheduler']);
			expect(upstreams(cluster, ip)).toEqual([ip1, ip2, ip3, ip4]);
			expect(certSans(cluster, ip)).toContain(ip4);
			expect(certKey(cluster, ip)).toBe(keyBefore);
		}

		// The masters that stay reloaded kube-nginx (connections kept); none restarted it.
		expect([ip1, ip2, ip3].map(ip => cluster.hosts.get(ip)!.unitRestarts.get('kube-nginx'))).toEqual(nginxRestarts);
		expect(cluster.reloads.filter(reload => reload.endsWith('kube-nginx'))).toEqual(expect.arrayContaining([`${ip1} kube-nginx`, `${ip2} kube-nginx`, `${ip3} kube-nginx`]));
		// Each apiserver restarted alone, taken out of kube-nginx on every master first (the new one too).
		const restarts = cluster.drainTimeline.slice(timeline).filter(entry => entry.includes('restart'));
		expect(restarts).toEqual([ip1, ip2, ip3, ip4].map(ip => `${ip} restart kube-apiserver`));
		for (const ip of [ip1, ip2, ip3, ip4]) {
			const at = cluster.drainTimeline.indexOf(`${ip} restart kube-apiserver`, timeline);
			expect(cluster.drainTimeline.slice(timeline, at)).toContain(`${ip1} nginx down=${ip}`);
		}

		expect(instance.state.snapshot.masters).toEqual({k8smaster01: {ip: ip1}, k8smaster02: {ip: ip2}, k8smaster03: {ip: ip3}, k8smaster04: {ip: ip4}});
		expect(finished(events)).toMatchObject({outcome: 'done', message: 'changes applied on 4 master(s)'});
	});

	test('the release\'s --apiserver-count follows the list where the release has the flag', async () => {
		const {cluster, setMasters, install, engine} = setup(three, 'v1.22.17');
		await install();
		expect(file(cluster, ip1, '/etc/systemd/system/kube-apiserver.service')).toContain('--apiserver-count=3');
		setMasters([...three, master(4, ip4)]);
		await (await engine()).engine.apply({confirm: true});
		for (const ip of [ip1, ip2, ip3, ip4]) {
			expect(file(cluster, ip, '/etc/systemd/system/kube-apiserver.service')).toContain('--apiserver-count=4');
		}
	});

	test('an add killed part way continues where it stopped: the new master finishes, the others restart once', async () => {
		const {cluster, engine, setMasters, install} = setup();
		await install();
		const restarts = [ip1, ip2, ip3].map(ip => cluster.hosts.get(ip)!.restarts);
		setMasters([...three, master(4, ip4)]);
		const {engine: first} = await engine();
		// Stopped while the new master's files are written, before anything restarts.
		cluster.beforeCommand = spec => {
			if (spec.step === 'units' && spec.args.includes(ip4)) {
				first.requestStop();
			}
		};

		await expect(first.apply({confirm: true})).rejects.toBeInstanceOf(StopRequested);
		expect(cluster.hosts.get(ip4)!.active).toBe(false);
		cluster.beforeCommand = () => undefined;
		const asked: string[] = [];
		const {engine: second} = await engine({prompter: {async ask(request) {
			asked.push(request.message);
			return true as never;
		}}});
		await second.apply({confirm: true});
		expect(asked).toEqual([expect.stringMatching(/^Resume the install stopped at /)]);
		expect(cluster.running(ip4)).toEqual(['kube-apiserver', 'kube-controller-manager', 'kube-nginx', 'kube-scheduler']);
		expect([ip1, ip2, ip3].map(ip => cluster.hosts.get(ip)!.restarts)).toEqual(restarts.map(count => count + 1));
		expect(second.state.snapshot.run).toMatchObject({status: 'done'});
	});
});

describe('a master taken out of the config', () => {
	test('plan says it is decommissioned and that the others drop it; apply takes it out of kube-nginx everywhere before it is stopped', async () => {
		const {cluster, objects, engine, setMasters, install} = setup([...three, master(4, ip4)]);
		await install();
		setMasters([master(1, ip1), master(3, ip3), master(4, ip4)]);
		const plan = await (await engine()).engine.plan();
		expect(plan.masters).toEqual([
			expect.stringMatching(/^k8smaster02 \(172\.24\.8\.72\) leaves: first out of kube-nginx on every master that stays.*then decommissioned \(units stopped and disabled, the files this install wrote removed as reset does\), its apiserver lease and its address in the kubernetes Endpoints/),
			expect.stringMatching(/^k8smaster01, k8smaster03, k8smaster04 stay/),
			expect.stringMatching(/etcd is external.*etcd\.endpoints still lists https:\/\/172\.24\.8\.72:2379 of a leaving master/),
		]);
		expect(plan.materialChanges).toContainEqual({item: 'kubernetes certificate', action: 'reissued', reason: 'its SANs changed (-172.24.8.72); same key pair'});
		const leave = plan.steps.find(step => step.id === 'leave')!;
		expect(leave.hosts[0]!.host).toBe('cluster (via k8smaster01)');
		expect(leave.hosts[0]!.actions.map(action => ('command' in action ? action.command : 'description' in action ? action.description : action.path))).toEqual([
			expect.stringMatching(/^on k8smaster01, k8smaster03, k8smaster04: write kube-nginx's config without k8smaster02, reload kube-nginx/),
			expect.stringMatching(/^on k8smaster02 \(172\.24\.8\.72\): systemctl stop and disable/),
			expect.stringMatching(/DELETE its apiserver identity lease/),
			'forget k8smaster02\'s records in the state once it is decommissioned',
		]);

		const calls = cluster.calls.length;
		const nginxRestarts = [ip1, ip3, ip4].map(ip => cluster.hosts.get(ip)!.unitRestarts.get('kube-nginx'));
		const {engine: instance, events} = await engine();
		await instance.apply({confirm: true});
		// kube-nginx is reloaded where it stays, never restarted: its open connections are kept.
		expect([ip1, ip3, ip4].map(ip => cluster.hosts.get(ip)!.unitRestarts.get('kube-nginx'))).toEqual(nginxRestarts);
		const run = cluster.calls.slice(calls);
		const stop = run.findIndex(call => call.args.includes(ip2) && (call.args.at(-1) ?? '').includes('systemctl stop'));
		expect(stop).toBeGreaterThan(0);
		for (const ip of [ip1, ip3, ip4]) {
			const rewrite = run.findIndex(call => call.step === 'leave' && call.args.includes(ip) && (call.args.at(-1) ?? '').includes('k8smi-drain'));
			expect(rewrite, ip).toBeGreaterThanOrEqual(0);
			expect(rewrite, ip).toBeLessThan(stop);
			expect(upstreams(cluster, ip)).toEqual([ip1, ip3, ip4]);
			expect(certSans(cluster, ip)).not.toContain(ip2);
		}

		// Decommissioned as reset does: nothing of this install left there, nothing running.
		const left = cluster.hosts.get(ip2)!;
		expect(cluster.running(ip2)).toEqual([]);
		expect([...left.files.keys()].filter(remotePath => remotePath.startsWith('/etc/kubernetes') || remotePath.startsWith('/etc/systemd') || remotePath.startsWith('/opt/k8s'))).toEqual([]);
		// Its lease and endpoint gone from the cluster.
		expect([...objects.leases.values()]).not.toContain(fakeHostname(ip2));
		expect([...objects.endpoints].sort()).toEqual([ip1, ip3, ip4]);
		expect([...objects.slice].sort()).toEqual([ip1, ip3, ip4]);
		// Forgotten in the state once decommissioned.
		const state = instance.state.snapshot;
		expect(hostsRecorded(instance)).not.toContain('k8smaster02');
		expect(state.startedReleases).not.toHaveProperty('k8smaster02');
		expect(state.restartTimes).not.toHaveProperty('k8smaster02');
		expect(state.masters).not.toHaveProperty('k8smaster02');
		expect(finished(events)).toMatchObject({outcome: 'done'});

		// The next plan and apply have nothing to decommission and change nothing.
		expect(planExitCode(await (await engine()).engine.plan())).toBe(0);
		const again = await engine();
		const uploads = cluster.uploads().length;
		await again.engine.apply({confirm: true});
		expect(cluster.uploads()).toHaveLength(uploads);
		expect(again.events).toContainEqual(expect.objectContaining({type: 'host-done', step: 'leave', outcome: 'skipped', detail: 'no master leaves'}));
	});

	test('a removed master that no longer answers fails the run naming --force-remove; with it, nothing is asked of it and the last line says what stayed there', async () => {
		const {cluster, objects, engine, setMasters, install} = setup();
		await install();
		cluster.hosts.get(ip3)!.reachable = false;
		setMasters([master(1, ip1), master(2, ip2)]);
		const {engine: blocked} = await engine();
		const failure = await blocked.apply({confirm: true}).catch((error: unknown) => error);
		expect(failure).toBeInstanceOf(ApplyFailed);
		expect((failure as ApplyFailed).failures[0]).toMatchObject({step: 'leave', host: 'k8smaster03', fix: expect.stringContaining('--force-remove k8smaster03')});
		expect(hostsRecorded(blocked)).toContain('k8smaster03');

		const calls = cluster.calls.length;
		const {engine: instance, events} = await engine({forceRemove: ['k8smaster03']});
		const plan = await instance.plan();
		expect(plan.masters![0]).toMatch(/^k8smaster03 \(172\.24\.8\.73\) leaves: .*--force-remove: nothing is asked of it/);
		await instance.apply({confirm: true});
		expect(cluster.calls.slice(calls).filter(call => call.command === 'ssh' && call.args.includes(ip3))).toEqual([]);
		expect(finished(events)!.message).toMatch(/^2 master\(s\) installed; k8smaster03 \(172\.24\.8\.73\) was not contacted: its units .* and \d+ file\(s\) this install wrote stay \(.*\/etc\/kubernetes\/cert\/kubernetes\.pem.*\); wipe or reinstall the machine/);
		for (const ip of [ip1, ip2]) {
			expect(upstreams(cluster, ip)).toEqual([ip1, ip2]);
		}

		expect([...objects.endpoints].sort()).toEqual([ip1, ip2]);
		expect(hostsRecorded(instance)).not.toContain('k8smaster03');
	});

	test('a master cannot leave while a master that stays is skipped: its kube-nginx would keep sending to it; nothing is stopped', async () => {
		const {cluster, engine, setMasters, install} = setup();
		await install();
		setMasters([master(1, ip1), master(2, ip2)]);
		const {engine: instance} = await engine();
		const failure = await instance.apply({confirm: true, skipHosts: ['k8smaster02']}).catch((error: unknown) => error);
		expect(failure).toBeInstanceOf(ApplyFailed);
		expect((failure as ApplyFailed).failures[0]).toMatchObject({step: 'leave', message: expect.stringContaining('k8smaster03 cannot leave while k8smaster02 is skipped')});
		expect(upstreams(cluster, ip2)).toEqual([ip1, ip2, ip3]);
		expect(cluster.calls.filter(call => call.command === 'ssh' && call.args.includes(ip3) && call.args.at(-1)!.includes('systemctl stop'))).toEqual([]);
	});

	test('removing every master the install runs on is refused, as is --force-remove of a master that stays; nothing is touched', async () => {
		const {cluster, engine, setMasters, install} = setup([master(1, ip1)]);
		await install();
		const calls = cluster.calls.length;
		setMasters([master(2, ip2)]);
		const {engine: instance} = await engine();
		const before = instance.state.snapshot;
		const refused = await instance.apply({confirm: true}).catch((error: unknown) => error);
		expect(refused).toBeInstanceOf(InputError);
		expect((refused as Error).message).toMatch(/masters.*removes every master this install runs on \(k8smaster01\)/);
		await expect(instance.plan()).rejects.toBeInstanceOf(InputError);

		setMasters([master(1, ip1), master(2, ip2)]);
		const forced = await (await engine({forceRemove: ['k8smaster01']})).engine.apply({confirm: true}).catch((error: unknown) => error);
		expect(forced).toBeInstanceOf(InputError);
		expect((forced as Error).message).toMatch(/^--force-remove: is still in masters: .*\(got k8smaster01\)/);
		expect(cluster.calls.length).toBe(calls);
		expect(instance.state.snapshot).toEqual(before);
	});

	test('a state from before addresses were recorded cannot reach a removed master: refused unless --force-remove', async () => {
		const {stateDir, engine, setMasters, install} = setup();
		await install();
		const stateFile = path.join(stateDir, 'kubernetes', 'state.json');
		const {masters: _masters, ...older} = JSON.parse(readFileSync(stateFile, 'utf8')) as Record<string, unknown>;
		const {writeFileSync} = await import('node:fs');
		writeFileSync(stateFile, JSON.stringify(older));
		setMasters([master(1, ip1), master(2, ip2)]);
		const refused = await (await engine()).engine.apply({confirm: true}).catch((error: unknown) => error);
		expect(refused).toBeInstanceOf(InputError);
		expect((refused as Error).message).toMatch(/^masters: leaves, .*its address is not known \(got k8smaster03\)\. Fix: .*--force-remove k8smaster03/);
	});
});

describe('a master that never got anything', () => {
	test('a first install that failed preflight on a wrong address: the address corrected, nothing is asked of the old one', async () => {
		const {cluster, engine, setMasters} = setup([master(1, ip1), master(2, ip2), {name: 'k8smaster03', ip: '172.24.8.79'}]);
		await expect((await engine()).engine.apply({confirm: true})).rejects.toBeInstanceOf(ApplyFailed);
		setMasters(three);
		const plan = await (await engine()).engine.plan();
		expect(plan.masters).toContainEqual(expect.stringMatching(/^the config gives k8smaster03 a new address: the machine at 172\.24\.8\.79 leaves: this install wrote nothing there, so it is only forgotten/));
		const calls = cluster.calls.length;
		const {engine: instance, events} = await engine();
		await instance.apply({confirm: true});
		expect(cluster.calls.slice(calls).filter(call => call.args.includes('172.24.8.79'))).toEqual([]);
		expect(cluster.running(ip3)).toEqual(['kube-apiserver', 'kube-controller-manager', 'kube-nginx', 'kube-scheduler']);
		expect(instance.state.snapshot.masters?.k8smaster03).toEqual({ip: ip3});
		expect(finished(events)).toMatchObject({outcome: 'done'});
	});
});

describe('a master replaced', () => {
	test('the same name at a new address: the old machine leaves, the new one joins under the name', async () => {
		const {cluster, engine, setMasters, install} = setup();
		await install();
		setMasters([master(1, ip1), master(2, ip4), master(3, ip3)]);
		const plan = await (await engine()).engine.plan();
		expect(plan.masters!.slice(0, 2)).toEqual([
			expect.stringMatching(/^k8smaster02 \(172\.24\.8\.74\) joins/),
			expect.stringMatching(/^the config gives k8smaster02 a new address: the machine at 172\.24\.8\.72 leaves/),
		]);
		const {engine: instance} = await engine();
		await instance.apply({confirm: true});
		expect(cluster.running(ip2)).toEqual([]);
		expect(cluster.running(ip4)).toEqual(['kube-apiserver', 'kube-controller-manager', 'kube-nginx', 'kube-scheduler']);
		for (const ip of [ip1, ip3, ip4]) {
			expect(upstreams(cluster, ip)).toEqual([ip1, ip4, ip3]);
			expect(certSans(cluster, ip)).not.toContain(ip2);
		}

		expect(instance.state.snapshot.masters?.k8smaster02).toEqual({ip: ip4});
		// The name's records are the new machine's: a second apply finds everything in place.
		const uploads = cluster.uploads().length;
		await (await engine()).engine.apply({confirm: true});
		expect(cluster.uploads()).toHaveLength(uploads);
	});

	test('a replacement reached under the old ssh name: the machine that answers does not have the old address, so it is not reset; the run names --force-remove', async () => {
		const {cluster, engine, setMasters} = setup([master(1, ip1), {...master(2, ip2), sshHost: 'cp2'}, master(3, ip3)]);
		cluster.sshHosts.set('cp2', ip2);
		await (await engine()).engine.apply({confirm: true});
		// The name now leads to the new machine, which the config gives its new address.
		cluster.sshHosts.set('cp2', ip4);
		setMasters([master(1, ip1), {...master(2, ip4), sshHost: 'cp2'}, master(3, ip3)]);
		const before = cluster.calls.length;
		const failure = await (await engine()).engine.apply({confirm: true}).catch((error: unknown) => error);
		expect(failure).toBeInstanceOf(ApplyFailed);
		expect((failure as ApplyFailed).failures[0]).toMatchObject({step: 'leave', host: 'k8smaster02'});
		expect((failure as ApplyFailed).failures[0]!.message).toContain('k8smaster02 was reached as cp2, but that machine');
		expect((failure as ApplyFailed).failures[0]!.message).toContain(`does not have ${ip2}: it is not the master that leaves`);
		expect((failure as ApplyFailed).failures[0]!.fix).toContain('--force-remove k8smaster02');
		// Nothing was stopped anywhere, and nothing was sent to the new machine.
		expect(cluster.calls.slice(before).filter(call => /systemctl (stop|disable)/.test(call.args.at(-1) ?? ''))).toEqual([]);
		expect(cluster.running(ip2)).toEqual(['kube-apiserver', 'kube-controller-manager', 'kube-nginx', 'kube-scheduler']);
		expect(cluster.uploads(ip4)).toEqual([]);
	});

	test('the first master replaced by a new one: the leaving one goes through a master that stays, the cluster steps and kubeconfig follow the new list', async () => {
		const {cluster, engine, setMasters, install, stateDir} = setup();
		await install();
		setMasters([master(4, ip4), master(2, ip2), master(3, ip3)]);
		const plan = await (await engine()).engine.plan();
		expect(plan.steps.find(step => step.id === 'leave')!.hosts[0]!.host).toBe('cluster (via k8smaster02)');
		const {engine: instance, events} = await engine();
		await instance.apply({confirm: true});
		expect(cluster.running(ip1)).toEqual([]);
		for (const ip of [ip2, ip3, ip4]) {
			expect(cluster.running(ip)).toEqual(['kube-apiserver', 'kube-controller-manager', 'kube-nginx', 'kube-scheduler']);
			expect(upstreams(cluster, ip)).toEqual([ip4, ip2, ip3]);
		}

		for (const step of ['etcd-check', 'rbac', 'verify-cluster']) {
			expect(events, step).toContainEqual(expect.objectContaining({type: 'host-done', step, outcome: expect.stringMatching(/^(done|skipped)$/)}));
		}

		const kubeconfig = readFileSync(path.join(stateDir, 'kubernetes', 'rendered', 'admin.kubeconfig'), 'utf8');
		expect(kubeconfig).toContain(`server: https://${ip4}:6443`);
		expect(kubeconfig).not.toContain(`server: https://${ip1}:6443`);
		expect(hostsRecorded(instance)).not.toContain('k8smaster01');
		expect(finished(events)).toMatchObject({outcome: 'done'});
	});
});
