import path from 'node:path';
import type {Master} from '../config/schema.js';
import {flagContext} from '../render/artifacts.js';
import {shellQuote, shellWords} from '../remote/quote.js';
import type {CommandResult} from '../runner.js';
import type {StepId} from '../state/store.js';
import type {StepContext} from './types.js';

/** The kubectl this workstation runs: the configured one, the release's own on linux/amd64, else PATH. */
export function kubectlCommand(context: StepContext): string {
	if (context.config.kubectl) {
		return context.config.kubectl;
	}

	const bundled = context.binaries?.find(binary => binary.name === 'kubectl');
	return bundled && process.platform === 'linux' && process.arch === 'x64' ? bundled.file : 'kubectl';
}

/** Local kubectl as admin, straight to one master's apiserver (the workstation has no kube-nginx). */
export function kubectlArgs(context: StepContext, master: Master, args: string[]): string[] {
	return ['--kubeconfig', path.join(context.workspace.renderedDir, 'admin.kubeconfig'), `--server=https://${master.ip}:6443`, '--request-timeout=20s', ...args];
}

export async function kubectl(context: StepContext, master: Master, step: StepId, args: string[]): Promise<CommandResult> {
	return context.runner.run({command: kubectlCommand(context), args: kubectlArgs(context, master, args), step, host: master.name});
}

/** etcdctl on a master, with the certificates the apiserver uses for etcd. */
export function etcdctlScript(context: StepContext, master: Master, args: string[]): string {
	const files = flagContext(context.config, master.ip);
	const binDir = context.config.paths.binDir;
	const searchPath = [...new Set([binDir, '/opt/k8s/bin'])].join(':');
	return `ETCDCTL_API=3 PATH="$PATH":${shellQuote(searchPath)} etcdctl ${shellWords([
		`--endpoints=${context.config.etcd.endpoints.join(',')}`,
		`--cacert=${files.etcdCaFile}`,
		`--cert=${files.etcdCertFile}`,
		`--key=${files.etcdKeyFile}`,
		...args,
	])}`;
}
