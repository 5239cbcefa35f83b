// Runs a test suite with a temporary folder of its own, then fails if the suite left anything in it
// (or a shared-connection folder of a process that is gone in /tmp): some of what tests make holds keys.
import {spawnSync} from 'node:child_process';
import {mkdtempSync, readdirSync, rmSync} from 'node:fs';
import {tmpdir} from 'node:os';
import path from 'node:path';

const [command, ...args] = process.argv.slice(2);
const sshFolders = () => new Set(readdirSync('/tmp').filter(name => name.startsWith('k8smi-ssh-')));
const alive = pid => {
	try {
		process.kill(pid, 0);
		return true;
	} catch (error) {
		return error.code === 'EPERM';
	}
};

const own = mkdtempSync(path.join(tmpdir(), 'k8smi-suite-'));
const before = sshFolders();
const run = spawnSync(command, args, {stdio: 'inherit', env: {...process.env, TMPDIR: own}});
const left = readdirSync(own).map(name => path.join(own, name));
const sshLeft = [...sshFolders()].filter(name => !before.has(name) && !alive(Number(/^k8smi-ssh-(\d+)-/.exec(name)?.[1])));
rmSync(own, {recursive: true, force: true});
if (left.length > 0 || sshLeft.length > 0) {
	console.error(`the suite left ${left.length + sshLeft.length} folder(s) behind:\n${[...left, ...sshLeft.map(name => `/tmp/${name}`)].map(name => `  ${name}`).join('\n')}`);
	process.exit(run.status || 1);
}

process.exit(run.status ?? 1);
