import {execFileSync, spawnSync} from 'node:child_process';
import {mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync} from 'node:fs';
import {tmpdir} from 'node:os';
import path from 'node:path';
import {fileURLToPath} from 'node:url';
import {afterAll, describe, expect, test} from 'vitest';

const root = fileURLToPath(new URL('../..', import.meta.url));
const {version} = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as {version: string};
const work = mkdtempSync(path.join(tmpdir(), 'k8smi-pack-'));

afterAll(() => {
	rmSync(work, {recursive: true, force: true});
});

// npm run sets npm_* variables (the checkout as local prefix, its config): npx must see a fresh machine.
const cleanEnvironment = Object.fromEntries(Object.entries(process.env).filter(([name]) => !/^npm_/i.test(name)));

/** npx with an empty cache of its own and no network: what an operator on an air-gapped workstation runs beside the tarball. */
function coldNpx(tarball: string, args: string[]) {
	const cache = mkdtempSync(path.join(work, 'cache-'));
	// `./` makes it a package spec; an absolute path would be run as a command.
	const result = spawnSync('npx', ['--yes', '--offline', '--cache', cache, `./${path.basename(tarball)}`, ...args], {cwd: path.dirname(tarball), env: cleanEnvironment, encoding: 'utf8', timeout: 60_000});
	const installed = readdirSync(path.join(cache, '_npx')).flatMap(folder => readdirSync(path.join(cache, '_npx', folder, 'node_modules')).filter(name => !name.startsWith('.')));
	return {...result, installed};
}

describe('the packed package', () => {
	// How fast a cold start is (≤ 2 s) is measured by the bench, on a quiet machine: here other tests share the cores.
	test('installs nothing else and runs offline from an empty npm cache', () => {
		// npm pack runs prepare (the build), as npm publish does.
		const packed = path.join(work, 'packed');
		mkdirSync(packed);
		execFileSync('npm', ['pack', '--pack-destination', packed, '--silent'], {cwd: root, env: cleanEnvironment, stdio: ['ignore', 'ignore', 'pipe']});
		const tarball = path.join(packed, `k8s-master-install-${version}.tgz`);
		const contents = execFileSync('tar', ['-tzf', tarball], {encoding: 'utf8'}).split('\n').filter(Boolean);
		expect(contents).toContain('package/bin/k8s-master-install.js');
		expect(contents).toContain('package/dist/cli.js');
		expect(contents).toContain('package/templates/kubeconfig');
		expect(contents.filter(file => /^package\/(source|test|bench)\//.test(file))).toEqual([]);

		const shown = coldNpx(tarball, ['--version']);
		expect(shown.status, shown.stderr).toBe(0);
		expect(shown.stdout.trim()).toBe(version);
		// The bundle holds every runtime dependency: the tarball is the one package installed.
		expect(shown.installed).toEqual(['k8s-master-install']);

		const help = coldNpx(tarball, ['--help']);
		expect(help.status, help.stderr).toBe(0);
		expect(help.stdout).toContain('Usage');
		expect(help.stdout).toContain('--version');
	}, 240_000);
});
