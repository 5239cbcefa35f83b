import {createHash} from 'node:crypto';
import {readFileSync} from 'node:fs';
import {execaExecutor, type CommandResult, type CommandSpec, type Executor} from '../../source/runner.js';
import type {HealthAnswer} from '../../source/remote/health.js';

type FakeFile = {content: Buffer; mode: number; owner: string};

export type FakeHost = {ip: string; files: Map<string, FakeFile>; active: boolean; reachable: boolean; restarts: number; clockOffsetMs: number; listening: Array<{port: number; process: string}>};

const ok = (stdout = ''): CommandResult => ({exitCode: 0, stdout, stderr: '', durationMs: 1, timedOut: false});
const fail = (exitCode: number, stderr: string): CommandResult => ({exitCode, stdout: '', stderr, durationMs: 1, timedOut: false});

/** Undoes shellQuote: the fake hosts read the same scripts a real sh would. */
function unquoteWords(text: string): string[] {
	const words: string[] = [];
	let current = '';
	let inWord = false;
	for (let index = 0; index < text.length; index++) {
		const char = text[index]!;
		if (char === '\'') {
			const end = text.indexOf('\'', index + 1);
			current += text.slice(index + 1, end);
			index = end;
			inWord = true;
		} else if (char === '\\' && text[index + 1] !== undefined) {
			current += text[++index];
			inWord = true;
		} else if (/\s/.test(char)) {
			if (inWord) {
				words.push(current);
				current = '';
				inWord = false;
			}
		} else {
			current += char;
			inWord = true;
		}
	}

	if (inWord) {
		words.push(current);
	}

	return words;
}

/**
 * A recording executor that plays three masters in memory: it understands the scripts the steps
 * send (read files, write a file, systemctl, etcdctl) and kubectl, and runs tar for real.
 */
export class FakeCluster {
	readonly hosts = new Map<string, FakeHost>();
	readonly calls: CommandSpec[] = [];
	readonly bindings = new Map<string, string>();
	/** Masters whose apiserver fails to start, and the order restarts happened in. */
	readonly failRestart = new Set<string>();
	readonly restartOrder: string[] = [];
	/** Uploads arrive empty, as when ssh dies mid-stream and cat sees the end of its input. */
	truncateUploads = false;
	/** Called before each command; a test throws or stops here to interrupt at a chosen point. */
	beforeCommand: (spec: CommandSpec, index: number) => void = () => undefined;

	constructor(ips: string[]) {
		for (const ip of ips) {
			this.hosts.set(ip, {ip, files: new Map(), active: false, reachable: true, restarts: 0, clockOffsetMs: 0, listening: []});
		}
	}

	readonly executor: Executor = async spec => {
		this.beforeCommand(spec, this.calls.length);
		this.calls.push(spec);
		if (spec.command === 'tar') {
			return execaExecutor(spec);
		}

		if (spec.command === 'ssh') {
			return this.ssh(spec);
		}

		if (spec.command.endsWith('kubectl')) {
			return this.kubectl(spec.args);
		}

		return fail(127, `${spec.command}: not faked`);
	};

	readonly probe = async (ip: string): Promise<HealthAnswer> => {
		const host = this.hosts.get(ip);
		return host?.active && host.reachable ? {ok: true, status: 200, body: 'ok'} : {ok: false, status: 0, body: '', error: 'connect ECONNREFUSED'};
	};

	/** Takes a master off the network from its first command of a step on (preflight passed); returns the repair. */
	cutDuring(step: string, ip: string): () => void {
		let cut = true;
		this.beforeCommand = spec => {
			if (cut && spec.step === step && spec.args.includes(ip)) {
				this.hosts.get(ip)!.reachable = false;
			}
		};

		return () => {
			cut = false;
			this.hosts.get(ip)!.reachable = true;
		};
	}

	/** Commands that wrote a file (the upload script), per host. */
	uploads(ip?: string): CommandSpec[] {
		return this.calls.filter(call => call.command === 'ssh' && (ip === undefined || call.args.includes(ip)) && /cat > /.test(call.args.at(-1) ?? ''));
	}

	private ssh(spec: CommandSpec): CommandResult {
		if (spec.args.includes('-O')) {
			return ok();
		}

		const ip = spec.args.at(-2)!;
		const host = this.hosts.get(ip);
		if (!host || !host.reachable) {
			return fail(255, `ssh: connect to host ${ip} port 22: No route to host`);
		}

		const [shell, flag, script] = unquoteWords(spec.args.at(-1)!);
		if (shell !== 'sh' || flag !== '-c' || script === undefined) {
			return fail(2, 'expected sh -c SCRIPT');
		}

		return this.script(host, script, spec);
	}

	private script(host: FakeHost, script: string, spec: CommandSpec): CommandResult {
		if (script.startsWith('echo "uid=$(id -u)"')) {
			const etcd = [...script.matchAll(/echo 'etcd=(\S+) open'/g)].map(match => `etcd=${match[1]} open`);
			return ok([
				'uid=0', 'arch=x86_64', 'os=Debian GNU/Linux 12 (bookworm)', 'systemd=systemd 252 (252.38-1~deb12u1)',
				`machine=${host.ip}/boot`, `time=${BigInt(Date.now() + host.clockOffsetMs) * 1_000_000n}`,
				...(host.active ? ['listen=172.24.8.71:6443 users:(("kube-apiserver",pid=1,fd=3))'] : []),
				...host.listening.map(entry => `listen=0.0.0.0:${entry.port} users:(("${entry.process}",pid=2,fd=3))`),
				...etcd,
			].join('\n'));
		}

		if (script.startsWith('for f in ')) {
			const paths = unquoteWords(script.slice('for f in '.length, script.indexOf('; do')));
			const lines = paths.flatMap(file => {
				const found = host.files.get(file);
				return found ? [`F ${found.mode.toString(8)}:${found.owner} ${file}`, `${createHash('sha256').update(found.content).digest('hex')}  ${file}`] : [];
			});
			return ok(lines.join('\n'));
		}

		if (script.includes('cat > ')) {
			const words = unquoteWords(script.replaceAll(';', ' ; '));
			const target = words[words.indexOf('mv') + 3]!;
			const mode = Number.parseInt(words[words.indexOf('chmod') + 1]!, 8);
			const content = this.truncateUploads ? Buffer.from('') : spec.inputFile ? readFileSync(spec.inputFile) : Buffer.from(spec.input ?? '');
			const expected = /printf '%s {2}%s\\n' ([a-f\d]{64})/.exec(script)?.[1];
			if (expected !== createHash('sha256').update(content).digest('hex')) {
				return fail(3, 'incomplete upload discarded');
			}

			host.files.set(target, {content, mode, owner: 'root'});
			return ok();
		}

		if (script.startsWith('mkdir -p') || script.startsWith('cp -p') || script.startsWith('cat -- ')) {
			return ok(script.startsWith('cat -- ') ? host.files.get(unquoteWords(script)[2]!)?.content.toString() ?? '' : '');
		}

		if (script.includes('systemctl restart kube-apiserver')) {
			this.restartOrder.push(host.ip);
			if (this.failRestart.has(host.ip)) {
				host.active = false;
				return fail(1, 'Job for kube-apiserver.service failed because the control process exited with error code.');
			}

			host.active = true;
			host.restarts++;
			return ok();
		}

		if (script.startsWith('systemctl is-active')) {
			return ok(`${host.active ? 'active' : 'inactive'}\nno\n`);
		}

		if (script.startsWith('journalctl')) {
			return ok('kube-apiserver: fake journal');
		}

		if (script.includes('etcdctl')) {
			const active = [...this.hosts.values()].some(each => each.active);
			return ok(active ? '/registry/namespaces/default\n\n/registry/ranges/serviceips\n' : '');
		}

		return fail(127, `fake host does not know: ${script}`);
	}

	private kubectl(args: readonly string[]): CommandResult {
		const verb = args.find(arg => arg === 'get' || arg === 'create');
		const name = 'kube-apiserver:kubelet-apis';
		if (verb === 'get') {
			return this.bindings.has(name) ? ok(this.bindings.get(name)) : fail(1, `Error from server (NotFound): clusterrolebindings.rbac.authorization.k8s.io "${name}" not found`);
		}

		if (this.bindings.has(name)) {
			return fail(1, `error: failed to create clusterrolebinding: clusterrolebindings.rbac.authorization.k8s.io "${name}" already exists`);
		}

		this.bindings.set(name, JSON.stringify({roleRef: {name: 'system:kubelet-api-admin'}, subjects: [{kind: 'User', name: 'kubernetes'}]}));
		return ok('clusterrolebinding.rbac.authorization.k8s.io/kube-apiserver:kubelet-apis created');
	}
}
