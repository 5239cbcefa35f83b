import {existsSync, readdirSync, readFileSync, statSync} from 'node:fs';
import path from 'node:path';
import {describe, expect, test} from 'vitest';
import {StateStore} from '../../source/state/store.js';
import {install} from '../../source/operations/install.js';
import {main} from '../../source/cli.js';
import {baseConfig, makeFixture, writeConfig} from '../helpers/fixture.js';

async function run(args: string[]) {
	const out: string[] = [];
	const err: string[] = [];
	const code = await main(args, {out: line => out.push(line), err: line => err.push(line)});
	return {code, out: out.join('\n'), err: err.join('\n')};
}

describe('command line', () => {
	test('bad input exits 2 with one line per problem, no stack trace, and no state', async () => {
		const {dir, tarball, stateDir} = makeFixture();
		const config = baseConfig(tarball);
		config.masters[0].ip = '999.1.1.1';
		config.network.serviceCidr = 'ten';
		const result = await run(['plan', '--config', writeConfig(dir, config), '--state-dir', stateDir]);
		expect(result.code).toBe(2);
		expect(result.err).toMatch(/^error: masters\[0\]\.ip: is not an IPv4 address \(got 999\.1\.1\.1\)\. Fix: /m);
		expect(result.err).toMatch(/^network\.serviceCidr: is not an IPv4 CIDR \(got ten\)/m);
		expect(result.err).not.toMatch(/at .*\.ts:\d+/);
		expect(existsSync(stateDir)).toBe(false);
	});

	test('a missing config file names --config and the fix', async () => {
		const result = await run(['plan', '--config', '/nonexistent/cluster.yaml']);
		expect(result.code).toBe(2);
		expect(result.err).toMatch(/--config: does not exist.*Fix: .*init/);
	});

	test('--version prints the package version', async () => {
		const {version} = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {version: string};
		expect(await run(['--version'])).toEqual({code: 0, out: version, err: ''});
	});

	test('an unknown command exits 2', async () => {
		expect((await run(['aply'])).code).toBe(2);
	});

	test('render writes every artifact with its mode; render again changes no key', async () => {
		const {dir, tarball, stateDir} = makeFixture('v1.14.2');
		const configFile = writeConfig(dir, baseConfig(tarball, 'v1.14.2'));
		const out = path.join(dir, 'out');
		expect((await run(['render', '--config', configFile, '--state-dir', stateDir, '--out', out])).code).toBe(0);
		const files = readdirSync(out).sort();
		expect(files).toContain('kube-apiserver-172.24.8.73.service');
		// New clusters get a dedicated service-account key on every release (the tutorial reused the CA key).
		expect(files).toContain('sa.key');
		expect(files).toContain('kube-scheduler-172.24.8.71.service');
		const modes = Object.fromEntries(files.map(file => [file, statSync(path.join(out, file)).mode & 0o777]));
		expect(modes['ca-key.pem']).toBe(0o600);
		expect(modes['encryption-config.yaml']).toBe(0o600);
		expect(modes['ca.pem']).toBe(0o600);
		const again = await run(['render', '--config', configFile, '--state-dir', stateDir, '--out', out]);
		expect(again.code).toBe(0);
		expect(again.out).not.toMatch(/made|issued/);
	});

	test('a downgrade is bad input (exit 2) naming version and --allow-downgrade; with the flag plan goes on', async () => {
		const {dir, tarball, stateDir} = makeFixture();
		const configFile = writeConfig(dir, baseConfig(tarball));
		new StateStore(path.join(stateDir, 'kubernetes'), 'kubernetes').update(state => {
			state.version = 'v1.28.9';
			state.startedReleases = {k8smaster01: ['v1.28.9']};
		});
		const refused = await run(['plan', '--config', configFile, '--state-dir', stateDir]);
		expect(refused.code).toBe(2);
		expect(refused.err).toContain('error: version: is older than the release k8smaster01 runs v1.28.9: a downgrade (got v1.28.7). Fix: pass --allow-downgrade');
		expect((await run(['plan', '--allow-downgrade', '--config', configFile, '--state-dir', stateDir])).code).toBe(0);
	});

	test('plan --json is machine-readable; status reads the state', async () => {
		const {dir, tarball, stateDir} = makeFixture();
		const configFile = writeConfig(dir, baseConfig(tarball));
		const plan = await run(['plan', '--config', configFile, '--state-dir', stateDir, '--json']);
		expect(JSON.parse(plan.out).steps).toHaveLength(install.steps.length);
		const status = await run(['status', '--config', configFile, '--state-dir', stateDir]);
		expect(status.code).toBe(0);
		expect(status.out).toContain('No apply has run yet.');
		expect(status.out).toContain('No etcd snapshot taken yet (k8s-master-install backup).');
		await run(['render', '--config', configFile, '--state-dir', stateDir, '--out', path.join(dir, 'out')]);
		const later = await run(['status', '--config', configFile, '--state-dir', stateDir]);
		expect(later.out).toMatch(/certificate kubernetes +valid until \d{4}-\d\d-\d\d \(36[45] days\)/);
		expect(later.out).toMatch(/certificate ca +valid until/);
	});

	test('apply without a terminal and without --yes refuses, naming --yes', async () => {
		const {dir, tarball, stateDir} = makeFixture();
		const result = await run(['apply', '--config', writeConfig(dir, baseConfig(tarball)), '--state-dir', stateDir]);
		expect(result.code).toBe(2);
		expect(result.err).toMatch(/Pass --yes to answer it/);
	});

	test('--force-remove refuses a master that does not leave, before anything is touched', async () => {
		const {dir, tarball, stateDir} = makeFixture();
		const result = await run(['plan', '--config', writeConfig(dir, baseConfig(tarball)), '--state-dir', stateDir, '--force-remove', 'k8smaster02']);
		expect(result.code).toBe(2);
		expect(result.err).toMatch(/--force-remove: is still in masters: .*\(got k8smaster02\)/);
	});

	test('--rotate refuses a name that is no certificate', async () => {
		const {dir, tarball, stateDir} = makeFixture();
		const result = await run(['render', '--config', writeConfig(dir, baseConfig(tarball)), '--state-dir', stateDir, '--out', path.join(dir, 'o'), '--rotate', 'etcd']);
		expect(result.code).toBe(2);
		expect(result.err).toMatch(/--rotate: names no certificate/);
	});
});
