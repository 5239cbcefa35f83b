import meow from 'meow';
import type {Output} from './commands.js';

const help = `
  Usage
    $ k8s-master-install <command> [options]

  Commands
    init --from-env FILE   Write a cluster config from the tutorial's environment.sh
    render                 Write every local artifact (certificates, configs, units) to --out
    preflight              Check every master (ssh, root, arch, ports, clock, etcd) and print a grid
    plan                   Print what apply would do, per step and per master; touches nothing
    apply                  Install on every master; resumes where an earlier apply stopped
    verify                 Check the installed control plane on every master and print a grid
    cis                    The CIS Kubernetes Benchmark's control-plane checks (1.1-1.4) on every master: PASS / FAIL / SKIP
    certs                  Every certificate on the workstation and each master: subject, SANs, not after,
                           days left, whether a master holds what this install wrote; exit 1 when one ends
                           within certificates.warnDays (default 30), is missing, or a master could not be read
    certs renew [NAME|all] Re-issue leaf certificates (kubernetes or apiserver, proxy-client, admin,
                           kube-controller-manager, kube-scheduler; default all) with the same keys and the
                           configured lifetime, then restart one master at a time exactly what reads them
    status                 Print the recorded progress and the etcd snapshots taken
    backup                 Take an etcd snapshot through the first reachable master into the state folder (0600, sha256 checked)
    reset                  Stop and remove what this install put on the masters (asks first); keeps the CA and keys
    rotate-encryption-key  A new encryption key: added, made the write key, every secret rewritten, the old key
                           dropped; one master at a time; resumes where an earlier run stopped

  Options
    --config, -c FILE      Cluster config (default: cluster.yaml)
    --state-dir DIR        Where state, key material and logs are kept (default: ${'$'}XDG_CONFIG_HOME/k8s-master-install-nodejs)
    --out DIR              render: target folder; init: config file to write (default: cluster.yaml);
                           backup, reset: the etcd snapshot's file (never replaced) instead of <state>/snapshots
    --yes, -y              apply, rotate-encryption-key: do not ask for confirmation
    --overwrite            apply: overwrite files on the masters that changed since this install wrote them (a backup is kept)
    --force-remove NAME    plan/apply: a master taken out of masters: that no longer answers (dead hardware): decommissioned
                           without contacting it; the rest proceeds and the last line says what stayed on it
    --rotate NAME          render/apply: issue a certificate again (kubernetes, proxy-client, admin, kube-controller-manager, kube-scheduler, or all); keeps the key pair
    --new-keys             certs renew (and apply --rotate): new key pairs for the certificates issued again
    --allow-downgrade      plan/apply: allow a release older than a master runs, within its minor
                           release (never across minor releases; see README, Upgrades)
    --exit-code            plan: exit 3 when apply would change something (a file differs, a service
                           would restart), 0 when nothing would, 1 when a master could not be read:
                           a pipeline can gate on drift
    --json                 Events or results as JSON lines
    --verbose              Every command as it runs
    --kube-version V      init: the Kubernetes release (default v1.14.2, the tutorial's)
    --tarball FILE         init: the server tarball (default ./kubernetes-server-linux-amd64.tar.gz)
    --force                init: replace an existing config file
    --remove-local         reset: also delete the state folder (CA, keys, encryption key, state, snapshots)
    --no-backup            apply (an upgrade), reset, rotate-encryption-key: take no etcd snapshot first (a warning says so)
    --remove-old-key       rotate-encryption-key: delete the old key's file from the state folder once the
                           rotation is done on every master
    --version              Print this tool's version

  Exit codes: 0 done, 1 failed (progress kept; plan --exit-code: a master could not be read), 2 bad input or a
  question that needs an option, 3 plan --exit-code: changes to apply, 130 stopped.
`;

const defaultOutput: Output = {
	out: line => process.stdout.write(`${line}\n`),
	err: line => process.stderr.write(`${line}\n`),
};

export async function main(argv: string[], output: Output = defaultOutput): Promise<number> {
	const cli = meow(help, {
		importMeta: import.meta,
		argv,
		autoHelp: false,
		autoVersion: false,
		allowUnknownFlags: false,
		flags: {
			config: {type: 'string', shortFlag: 'c', default: 'cluster.yaml'},
			stateDir: {type: 'string'},
			out: {type: 'string'},
			yes: {type: 'boolean', shortFlag: 'y', default: false},
			overwrite: {type: 'boolean', default: false},
			rotate: {type: 'string', isMultiple: true},
			forceRemove: {type: 'string', isMultiple: true},
			json: {type: 'boolean', default: false},
			verbose: {type: 'boolean', default: false},
			fromEnv: {type: 'string'},
			kubeVersion: {type: 'string', default: 'v1.14.2'},
			tarball: {type: 'string', default: './kubernetes-server-linux-amd64.tar.gz'},
			force: {type: 'boolean', default: false},
			removeLocal: {type: 'boolean', default: false},
			noBackup: {type: 'boolean', default: false},
			removeOldKey: {type: 'boolean', default: false},
			exitCode: {type: 'boolean', default: false},
			newKeys: {type: 'boolean', default: false},
			allowDowngrade: {type: 'boolean', default: false},
			help: {type: 'boolean', shortFlag: 'h', default: false},
			version: {type: 'boolean', default: false},
		},
	});
	const [command] = cli.input;
	const {flags} = cli;
	if (flags.version) {
		// meow read the package.json beside the bundle (or the checkout's).
		output.out(cli.pkg.version ?? 'unknown');
		return 0;
	}

	if (flags.help || command === undefined || command === 'help') {
		// No command, in a terminal: the guided UI. Pipes, CI, --yes and --json keep the plain behaviour.
		if (command === undefined && !flags.help && !flags.yes && !flags.json && process.stdin.isTTY && process.stdout.isTTY) {
			try {
				// Ink draws only a final frame when the environment says CI; a person is at this terminal,
				// so the live view is wanted. Ink reads the variables once, when it is first imported.
				delete process.env.CI;
				delete process.env.CONTINUOUS_INTEGRATION;
				// DEV=true would make Ink load React DevTools, which the bundle leaves out (build: --external:./devtools.js).
				delete process.env.DEV;
				const [{runInteractive}, {defaultStateDir}] = await Promise.all([import('./ui/index.js'), import('./state/store.js')]);
				return await runInteractive({configFile: flags.config, stateDir: flags.stateDir ?? defaultStateDir(), stateDirGiven: flags.stateDir !== undefined, rotate: flags.rotate});
			} catch (error) {
				const {reportError} = await import('./commands.js');
				return reportError(error, output);
			}
		}

		output.out(cli.help.trim());
		return command === undefined && !flags.help ? 2 : 0;
	}

	// The engine is loaded once a command is known: --help and --version answer without it.
	const {runCommand} = await import('./commands.js');
	return runCommand(command, {...flags, args: cli.input.slice(1)}, output);
}
