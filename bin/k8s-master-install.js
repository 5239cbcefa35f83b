#!/usr/bin/env node
const args = process.argv.slice(2);

/** Options that take a value (meow's flags in source/cli.ts): their value is not a command. */
const valueOptions = new Set(['--config', '-c', '--state-dir', '--out', '--rotate', '--from-env', '--kube-version', '--tarball']);

function opensTheUi() {
	for (let index = 0; index < args.length; index++) {
		const arg = args[index];
		if (valueOptions.has(arg)) {
			index++;
		} else if (['--help', '-h', '--version', '--yes', '-y', '--json'].includes(arg) || !arg.startsWith('-')) {
			return false;
		}
	}

	return process.stdin.isTTY === true && process.stdout.isTTY === true;
}

// Loading the modules takes about half a second on a small machine: the terminal UI's first screen is
// drawn at once, and the UI clears it when Ink draws (source/ui/index.tsx).
if (opensTheUi()) {
	const spinner = process.env.NO_COLOR ? '⠋' : '\u001B[36m⠋\u001B[39m';
	process.stdout.write(`${spinner} Reading the config…\r`);
	globalThis[Symbol.for('k8s-master-install.first-frame')] = true;
}

const {main} = await import('../dist/cli.js');
process.exitCode = await main(args);
