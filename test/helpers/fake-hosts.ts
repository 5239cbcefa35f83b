import {createHash} from 'node:crypto';
import {readFileSync, writeFileSync} from 'node:fs';
import {posix} from 'node:path';
import {gunzipSync} from 'node:zlib';
import {execaExecutor, type CommandResult, type CommandSpec, type Executor} from '../../source/runner.js';
import type {ApiRequest, HealthAnswer} from '../../source/remote/health.js';

/** link: a symbolic link's target (relative to its folder, as ln -s writes it). */
type FakeFile = {content: Buffer; mode: number; owner: string; link?: string};

/** What `stat` would tell of a file: any change of content, mode or owner changes it, as mtime/ctime would. */
function fakeIdentity(file: FakeFile): string {
	const digits = Number.parseInt(createHash('sha256').update(file.content).update(`${file.mode}:${file.owner}:${file.link ?? ''}`).digest('hex').slice(0, 12), 16);
	const nanoseconds = String((digits % 999_999_999) + 1).padStart(9, '0');
	return `2049:${digits % 1_000_000}:${file.content.length}:1764130000.${nanoseconds}:1764130000.${nanoseconds}`;
}

/** What `hostname` prints on a fake master. */
export const fakeHostname = (ip: string) => `host-${ip.replaceAll('.', '-')}`;

/** A folder's mode and owner. */
type FakeFolder = {mode: number; owner: string};

/** active/restarts: the apiserver; units: the other services that run (kube-nginx, controller-manager, scheduler); folders: the release folders. */
export type FakeHost = {ip: string; files: Map<string, FakeFile>; folders: Map<string, FakeFolder>; active: boolean; reachable: boolean; restarts: number; units: Set<string>; unitRestarts: Map<string, number>; clockOffsetMs: number; listening: Array<{port: number; process: string}>};

const ok = (stdout = ''): CommandResult => ({exitCode: 0, stdout, stderr: '', durationMs: 1, timedOut: false});
const fail = (exitCode: number, stderr: string): CommandResult => ({exitCode, stdout: '', stderr, durationMs: 1, timedOut: false});

/** What `mkdir -p` under umask 077 makes of a release folder (binDir/vX.Y.Z) a file is written in. */
function madeFolder(host: FakeHost, file: string): void {
	const folder = posix.dirname(file);
	if (/\/v\d+\.\d+\.\d+$/.test(folder) && !host.folders.has(folder)) {
		host.folders.set(folder, {mode: 0o700, owner: 'root'});
	}
}

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
	/** Secrets created through kubectl (verify's test secret). */
	readonly secrets = new Set<string>();
	/** Masters whose apiserver fails to start, and the order restarts happened in. */
	readonly failRestart = new Set<string>();
	readonly restartOrder: string[] = [];
	readonly clientStarts: Array<{ip: string; unit: string; apiserverUp: boolean}> = [];
	/** `IP UNIT`: the next restart of that unit fails once while systemd starts it again (Restart=). */
	readonly transientStartFailure = new Set<string>();
	private readonly autoRestarting = new Set<string>();
	/** `host unit` of every systemctl reload. */
	readonly reloads: string[] = [];
	/** In order: `IP nginx down=IPS` each time kube-nginx's config was rewritten (IPS: the upstreams down, `-` for none), and `IP restart kube-apiserver`. */
	readonly drainTimeline: string[] = [];
	/** Files whose content a read hashed (`IP PATH`): an unchanged identity spares the hash. */
	readonly hashedFiles: string[] = [];
	/** `IP FROM -> TO` of every binary copied on a master (the old layout's file, nothing sent). */
	readonly copies: string[] = [];
	/** Uploads arrive empty, as when ssh dies mid-stream and cat sees the end of its input. */
	truncateUploads = false;
	/** Names ssh is given instead of a master's IP (masters[].sshHost), each to that IP. */
	readonly sshHosts = new Map<string, string>();
	/** The forwarded socket each probe and API call went through (undefined: straight to the address). */
	readonly apiRoutes: Array<{ip: string; port: number; via: string | undefined}> = [];
	/** What etcdctl snapshot save writes on a master: not text (a snapshot is binary). */
	snapshotBytes = Buffer.from([0x00, 0xff, 0xfe, 0x80, ...Buffer.from('etcd snapshot\n'), 0xc3, 0x28]);
	/** When set, no etcd member gives a snapshot: the save script's own exit 4 with this error. */
	snapshotFailure: string | undefined;
	/** The copy of the snapshot arrives with a byte more than the master holds (its sha256 differs). */
	corruptSnapshotCopy = false;
	/** Secrets in etcd, by `NAMESPACE/NAME`: the key their raw value is under (`plain`: unencrypted) and their revision. */
	readonly etcdSecrets = new Map<string, {key: string; revision: number; object: Record<string, any>}>();
	private revision = 1000;
	/** Per master, the aescbc key names its apiserver read from the encryption config when it last started (the first encrypts). */
	readonly loadedKeys = new Map<string, string[]>();
	/** The next secret list with a continue token answers 410 Expired, as after an etcd compaction (once). */
	expireContinue = false;
	/** Called before each command; a test throws or stops here to interrupt at a chosen point. */
	beforeCommand: (spec: CommandSpec, index: number) => void = () => undefined;

	constructor(ips: string[]) {
		for (const ip of ips) {
			this.hosts.set(ip, {ip, files: new Map(), folders: new Map(), active: false, reachable: true, restarts: 0, units: new Set(), unitRestarts: new Map(), clockOffsetMs: 0, listening: []});
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

		return fail(127, `${spec.command}: not faked`);
	};

	/** What controlPlaneEndpoint names (HOST:PORT): answers while any apiserver does, as a load balancer would. */
	loadBalancer: string | undefined;

	readonly probe = async (ip: string, port: number, pathName: string, _tls?: unknown, _timeoutMs?: number, via?: string): Promise<HealthAnswer> => {
		this.apiRoutes.push({ip, port, via});
		if (`${ip}:${port}` === this.loadBalancer) {
			const serving = [...this.hosts.values()].find(each => each.active && each.reachable);
			return serving ? this.probe(serving.ip, 6443, pathName, undefined, undefined, via) : {ok: false, status: 0, body: '', error: `connect ECONNREFUSED ${ip}:${port}`};
		}

		const host = this.hosts.get(ip);
		const up = port === 6443 ? host?.active : host?.units.has(port === 10_257 ? 'kube-controller-manager' : 'kube-scheduler');
		const body = pathName.endsWith('?verbose') ? '[+]ping ok\n[+]etcd ok\nreadyz check passed' : 'ok';
		return up && host!.reachable ? {ok: true, status: 200, body} : {ok: false, status: 0, body: '', error: 'connect ECONNREFUSED'};
	};

	/** Secrets stored in etcd under one key, `perNamespace` in each namespace. */
	seedSecrets(namespaces: string[], perNamespace: number, key = 'key1'): void {
		for (const namespace of namespaces) {
			for (let index = 0; index < perNamespace; index++) {
				const name = `secret-${String(index).padStart(3, '0')}`;
				this.etcdSecrets.set(`${namespace}/${name}`, {key, revision: ++this.revision, object: {apiVersion: 'v1', kind: 'Secret', metadata: {name, namespace}, type: 'Opaque', data: {value: Buffer.from(`${namespace}-${index}`).toString('base64')}}});
			}
		}
	}

	/** Every unit a master runs, the apiserver included. */
	running(ip: string): string[] {
		const host = this.hosts.get(ip)!;
		return [...(host.active ? ['kube-apiserver'] : []), ...[...host.units].sort()];
	}

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
		return this.calls.filter(call => call.command === 'ssh' && (ip === undefined || call.args.includes(ip)) && /(cat|head -c \d+|gzip -dc) > /.test(call.args.at(-1) ?? ''));
	}

	private ssh(spec: CommandSpec): CommandResult {
		if (spec.args.includes('-O')) {
			return ok();
		}

		const destination = spec.args.at(-2)!;
		const ip = this.sshHosts.get(destination) ?? destination;
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
		// Sections `echo '##k8smi## NAME'` + `{ SCRIPT }` (a section may hold sections), each answered as if sent alone.
		if (script.startsWith('echo \'##k8smi## ')) {
			return ok(topSections(script).map(([name, part]) => `##k8smi## ${name}\n${this.script(host, part, spec).stdout}\n`).join(''));
		}

		// Probes started in the background first, then sections, the last of which waits for them and prints their answers.
		const sectionsAt = script.indexOf('\necho \'##k8smi## ');
		if (script.startsWith('t=$(mktemp -d)') && sectionsAt !== -1) {
			const started = script.slice(0, sectionsAt);
			return ok(topSections(script.slice(sectionsAt + 1)).map(([name, part]) => `##k8smi## ${name}\n${this.script(host, part.startsWith('wait;') ? `${started} ${part}` : part, spec).stdout}\n`).join(''));
		}

		if (script.startsWith('echo "uid=$(id -u)"')) {
			const etcd = [...script.matchAll(/echo 'etcd=(\S+) open'/g)].map(match => `etcd=${match[1]} open`);
			return ok([
				'uid=0', 'arch=x86_64', 'os=Debian GNU/Linux 12 (bookworm)', 'systemd=systemd 252 (252.38-1~deb12u1)',
				`machine=${host.ip}/boot`, `time=${BigInt(Date.now() + host.clockOffsetMs) * 1_000_000n}`,
				...(host.active ? ['listen=172.24.8.71:6443 users:(("kube-apiserver",pid=1,fd=3))'] : []),
				...host.listening.map(entry => `listen=0.0.0.0:${entry.port} users:(("${entry.process}",pid=2,fd=3))`),
				...etcd,
				'nginx=nginx version: nginx/1.22.1', 'nginxstream=module',
			].join('\n'));
		}

		if (script === 'hostname') {
			return ok(`${fakeHostname(host.ip)}\n`);
		}

		if (script.startsWith('hostname; if command -v ip')) {
			return ok(`${fakeHostname(host.ip)}\n127.0.0.1\n${host.ip}\n`);
		}

		if (script === 'ss -Hltn') {
			return ok([...host.listening.map(entry => `LISTEN 0 4096 0.0.0.0:${entry.port} 0.0.0.0:*`), ...(host.active ? [`LISTEN 0 4096 ${host.ip}:6443 0.0.0.0:*`] : [])].join('\n'));
		}

		if (script.startsWith('for u in ') && script.includes('systemctl stop')) {
			host.active = false;
			host.units.clear();
			return ok();
		}

		const removal = /^(?:rm -f -- (.*?); )?systemctl daemon-reload; systemctl reset-failed/.exec(script);
		if (removal) {
			for (const file of unquoteWords(removal[1] ?? '')) {
				host.files.delete(file);
			}

			const emptied = unquoteWords(/; for d in (.*?); do rmdir/.exec(script)?.[1] ?? '');
			for (const folder of emptied.filter(folder => ![...host.files.keys()].some(file => file.startsWith(`${folder}/`)))) {
				host.folders.delete(folder);
			}

			return ok();
		}

		if (script.includes('/proc/$p/cmdline')) {
			return ok(this.cisFacts(host, script));
		}

		if (script.startsWith('systemctl show -p Id -p ActiveState -p NeedDaemonReload ')) {
			const names = script.slice('systemctl show -p Id -p ActiveState -p NeedDaemonReload '.length, script.indexOf(' |')).split(' ');
			return ok(names.map(name => `${name} ${this.autoRestarting.delete(`${host.ip} ${name}`) ? 'activating' : (name === 'kube-apiserver' ? host.active : host.units.has(name)) ? 'active' : 'inactive'} no`).join('\n'));
		}

		// certs' read: per file its mtime, sha256, and the certificate (of a kubeconfig its client-certificate-data alone).
		if (script.startsWith('# k8s-master-install: certificates\n')) {
			const paths = unquoteWords(/^for f in (.*); do$/m.exec(script)?.[1] ?? '');
			return ok(paths.map(file => {
				const found = host.files.get(file);
				if (!found) {
					return `==> ${file}\nmissing\n`;
				}

				const text = found.content.toString();
				const shown = file.endsWith('.kubeconfig') ? `${/^ *client-certificate-data: *(.*)$/m.exec(text)?.[1] ?? ''}\n` : file.endsWith('.pem') ? text : '';
				return `==> ${file}\nmtime 1764130000\nsha256 ${createHash('sha256').update(found.content).digest('hex')}\n${shown}`;
			}).join(''));
		}

		if (script.startsWith('for f in ') && script.includes('echo "==> $f"')) {
			const paths = unquoteWords(script.slice('for f in '.length, script.indexOf('; do')));
			return ok(paths.map(file => `==> ${file}\n${host.files.get(file)?.content.toString() ?? 'missing\n'}`).join(''));
		}

		if (script.startsWith('k8smi_stats=$(stat ')) {
			// One stat of every path, then sha256sum of the files whose `identity path` is not among the known ones.
			const paths = unquoteWords(/ -- (.*?) 2>\/dev\/null\)\n/.exec(script)?.[1] ?? '');
			const known = new Set(unquoteWords((/case "\$identity \$path" in (.*?)\) ;;/.exec(script)?.[1] ?? '').replaceAll('|', ' ')));
			const lines = paths.flatMap(file => {
				const folder = host.folders.get(file);
				if (folder) {
					return [`D ${folder.mode.toString(8)}:${folder.owner} ${file}`];
				}

				const found = host.files.get(file);
				if (!found) {
					return [];
				}

				// A link: what it names, then its own identity with its target's hash, when the target is a regular file.
				const target = found.link === undefined ? found : host.files.get(`${file.slice(0, file.lastIndexOf('/'))}/${found.link}`);
				const named = found.link === undefined ? [] : [`L ${file}\t${found.link}`];
				if (!target || target.link !== undefined) {
					return named;
				}

				const identity = fakeIdentity(found);
				if (known.has(`${identity} ${file}`)) {
					return [...named, `F ${found.mode.toString(8)}:${found.owner} ${identity} ${file}`];
				}

				this.hashedFiles.push(`${host.ip} ${file}`);
				return [...named, `F ${found.mode.toString(8)}:${found.owner} ${identity} ${file}`, `${createHash('sha256').update(target.content).digest('hex')}  ${file}`];
			});
			return ok(lines.join('\n'));
		}

		if (script.startsWith('set -e; rm -f -- ') && script.includes('; ln -sfn -- ')) {
			// The release folder made 0755 root-owned, then binDir's links switched: `ln -sfn -- TARGET TMP; mv -T -f -- TMP LINK` each.
			const [folder] = unquoteWords(/; chmod 755 (\S+);/.exec(script)![1]!);
			host.folders.set(folder!, {mode: 0o755, owner: 'root'});
			const links = [...script.matchAll(/ln -sfn -- (\S+) \S+; mv -T -f -- \S+ (\S+?);/g)].map(match => unquoteWords(`${match[1]!} ${match[2]!}`) as [string, string]);
			for (const [target, link] of links) {
				host.files.set(link, {content: Buffer.from(''), mode: 0o777, owner: 'root', link: target});
			}

			return ok(links.map(([, link]) => `S ${fakeIdentity(host.files.get(link)!)} ${link}`).join('\n'));
		}

		if (script.includes('; cp -- ')) {
			// The old layout's binaries copied into the release folder: `cp -- FROM TMP` each, checked, `mv -f TMP TARGET`.
			const copied = new Map([...script.matchAll(/; cp -- (\S+) (\S+?)(?=;)/g)].map(match => unquoteWords(`${match[2]!} ${match[1]!}`) as [string, string]));
			const landed: string[] = [];
			for (const move of script.matchAll(/; mv -f (\S+) (\S+?)(?=;)/g)) {
				const [temporary, file] = unquoteWords(`${move[1]!} ${move[2]!}`) as [string, string];
				const from = copied.get(temporary)!;
				const source = host.files.get(from);
				if (!source || source.link !== undefined) {
					return fail(1, `cp: cannot stat '${from}': No such file or directory`);
				}

				madeFolder(host, file);
				host.files.set(file, {content: source.content, mode: 0o755, owner: 'root'});
				this.copies.push(`${host.ip} ${from} -> ${file}`);
				landed.push(`S ${fakeIdentity(host.files.get(file)!)} ${file}`);
			}

			return ok(landed.join('\n'));
		}

		if (script.includes('rmdir -- "$d" 2>/dev/null || echo "K $d"')) {
			// Old releases removed: the files named, then each folder unless something is left in it.
			for (const file of unquoteWords(/^rm -f -- (.*?); for d in/.exec(script)?.[1] ?? '')) {
				host.files.delete(file);
			}

			const folders = unquoteWords(/for d in (.*?); do if \[ -d "\$d" \]; then rmdir/.exec(script)![1]!).filter(folder => host.folders.has(folder));
			const kept = folders.filter(folder => [...host.files.keys()].some(file => file.startsWith(`${folder}/`)));
			for (const folder of folders.filter(folder => !kept.includes(folder))) {
				host.folders.delete(folder);
			}

			return ok(kept.map(folder => `K ${folder}`).join('\n'));
		}

		if (/(cat|head -c \d+|gzip -dc) > /.test(script)) {
			// A batch: `if ! READ > TMP; ...` per file from stdin in turn, one sha256sum -c over all, chmod MODE TMP..., mv -f TMP TARGET.
			const input = this.truncateUploads ? Buffer.from('') : Buffer.concat((spec.inputParts ?? []).map(part => ('file' in part ? readFileSync(part.file) : part.bytes)));
			const received = new Map<string, Buffer>();
			let offset = 0;
			for (const read of script.matchAll(/if ! (?:cat|head -c (\d+))?(?: \| )?(gzip -dc)? > ('[^']*'|\S+); then/g)) {
				const size = read[1] === undefined ? input.length - offset : Number(read[1]);
				const bytes = Buffer.from(input.subarray(offset, offset + size));
				offset += size;
				try {
					received.set(unquoteWords(read[3]!)[0]!, read[2] ? gunzipSync(bytes) : bytes);
				} catch {
					return fail(4, 'gzip: stdin: unexpected end of file');
				}
			}

			const temporaries = unquoteWords(/openssl dgst -sha256 -r (.*?)\); else/.exec(script)?.[1] ?? '');
			const expected = unquoteWords(/ != ('[^']*') \]; then/.exec(script)?.[1] ?? '')[0]!.trim().split(' ');
			if (temporaries.some((temporary, index) => expected[index] !== createHash('sha256').update(received.get(temporary) ?? '').digest('hex'))) {
				return fail(3, 'incomplete upload discarded');
			}

			const modes = new Map<string, number>();
			for (const chmod of script.matchAll(/; chmod (\d+) ([^;]+)/g)) {
				for (const file of unquoteWords(chmod[2]!)) {
					modes.set(file, Number.parseInt(chmod[1]!, 8));
				}
			}

			const landed: string[] = [];
			for (const move of script.matchAll(/; mv -f ('[^']*'|\S+) ('[^']*'|[^\s;]+)/g)) {
				const [temporary, file] = unquoteWords(`${move[1]!} ${move[2]!}`) as [string, string];
				madeFolder(host, file);
				host.files.set(file, {content: received.get(temporary)!, mode: modes.get(temporary)!, owner: 'root'});
				landed.push(`S ${fakeIdentity(host.files.get(file)!)} ${file}`);
			}

			return ok(landed.join('\n'));
		}

		// plan's read of the files it shows as a diff: `C BASE64 PATH` per regular file.
		if (script.startsWith('for k8smi_file in ')) {
			const files = unquoteWords(script.slice('for k8smi_file in '.length, script.indexOf('; do ')));
			return ok(files.flatMap(file => (host.files.has(file) ? [`C ${host.files.get(file)!.content.toString('base64')} ${file}`] : [])).join('\n'));
		}

		const backup = /^cp (-P )?-p -- (\S+) (\S+)$/.exec(script);
		if (backup) {
			// Without -P, cp copies what a link names (and fails when that is missing).
			const [from, to] = unquoteWords(`${backup[2]!} ${backup[3]!}`) as [string, string];
			const found = host.files.get(from);
			const copied = backup[1] || found?.link === undefined ? found : host.files.get(posix.resolve(posix.dirname(from), found.link));
			if (!copied) {
				return fail(1, `cp: cannot stat '${from}': No such file or directory`);
			}

			host.files.set(to, {...copied});
			return ok();
		}

		if (script.includes(' snapshot save ')) {
			// etcdctl snapshot save into a new 0700 folder under umask 077, then its status and sha256.
			const folder = unquoteWords(/^mkdir -m 700 -- (\S+) \|\| exit 1$/m.exec(script)![1]!)[0]!;
			if (this.snapshotFailure) {
				return fail(4, this.snapshotFailure);
			}

			const content = this.snapshotBytes;
			host.folders.set(folder, {mode: 0o700, owner: 'root'});
			host.files.set(`${folder}/etcd.db`, {content, mode: script.startsWith('umask 077\n') ? 0o600 : 0o644, owner: 'root'});
			return ok(`status={"hash":3925837040,"revision":42,"totalKey":7,"totalSize":${content.length}}\nsha256=${createHash('sha256').update(content).digest('hex')}\n`);
		}

		if (spec.outputFile && script.startsWith('cat -- ')) {
			const found = host.files.get(unquoteWords(script)[2]!);
			if (!found) {
				return fail(1, `cat: ${unquoteWords(script)[2]}: No such file or directory`);
			}

			writeFileSync(spec.outputFile, this.corruptSnapshotCopy ? Buffer.concat([found.content, Buffer.from('!')]) : found.content, {flag: 'wx', mode: 0o600});
			return ok();
		}

		const removeFolder = /^rm -rf -- (\S+)$/.exec(script);
		if (removeFolder) {
			const [folder] = unquoteWords(removeFolder[1]!);
			host.folders.delete(folder!);
			for (const file of [...host.files.keys()].filter(file => file.startsWith(`${folder}/`))) {
				host.files.delete(file);
			}

			return ok();
		}

		if (script.startsWith('umask 077; mkdir -p') || script.startsWith('cat -- ')) {
			return ok(script.startsWith('cat -- ') ? host.files.get(unquoteWords(script)[2]!)?.content.toString() ?? '' : '');
		}

		// kube-nginx's config rewritten with one upstream down (or back), then reloaded when it runs.
		const drain = /^set -e; conf=('[^']*'|\S+); tmp="\$conf\.k8smi-drain-\$\$".*\nprintf '%s' ('(?:[^']|'\\'')*') > "\$tmp"; chmod (\d+)/s.exec(script);
		if (drain) {
			const content = unquoteWords(drain[2]!)[0]!;
			host.files.set(unquoteWords(drain[1]!)[0]!, {content: Buffer.from(content), mode: Number.parseInt(drain[3]!, 8), owner: 'root'});
			this.drainTimeline.push(`${host.ip} nginx down=${[...content.matchAll(/server (\S+):6443 down;/g)].map(match => match[1]).join(',') || '-'}`);
			if (host.units.has('kube-nginx')) {
				this.reloads.push(`${host.ip} kube-nginx`);
			}

			return ok();
		}

		const reload = /^systemctl reload ([\w-]+)$/.exec(script);
		if (reload) {
			this.reloads.push(`${host.ip} ${reload[1]}`);
			return host.units.has(reload[1]!) ? ok() : fail(1, `${reload[1]}.service is not active, cannot reload.`);
		}

		const restart = /systemctl restart ([\w -]+)$/.exec(script);
		if (restart) {
			const names = restart[1]!.trim().split(' ');
			const missing = names.find(unit => !host.files.has(`/etc/systemd/system/${unit}.service`));
			if (missing) {
				return fail(5, `Failed to restart ${missing}.service: Unit ${missing}.service not found.`);
			}

			for (const unit of names.filter(name => name !== 'kube-apiserver')) {
				host.units.add(unit);
				host.unitRestarts.set(unit, (host.unitRestarts.get(unit) ?? 0) + 1);
				if (unit === 'kube-controller-manager' || unit === 'kube-scheduler') {
					// Whether its first leader election can reach an apiserver (through kube-nginx): one on this master answers.
					this.clientStarts.push({ip: host.ip, unit, apiserverUp: host.active && !names.includes('kube-apiserver')});
				}
			}

			const transient = names.find(name => this.transientStartFailure.delete(`${host.ip} ${name}`));
			if (transient) {
				this.autoRestarting.add(`${host.ip} ${transient}`);
			}

			if (names.includes('kube-apiserver')) {
				this.restartOrder.push(host.ip);
				this.drainTimeline.push(`${host.ip} restart kube-apiserver`);
				if (this.failRestart.has(host.ip)) {
					host.active = false;
					return fail(1, 'Job for kube-apiserver.service failed because the control process exited with error code.');
				}

				host.active = true;
				host.restarts++;
				const config = [...host.files].find(([file]) => file.endsWith('/encryption-config.yaml'))?.[1].content.toString() ?? '';
				this.loadedKeys.set(host.ip, [...config.matchAll(/- name: (\S+)/g)].map(match => match[1]!));
			}

			return transient ? fail(1, `Job for ${transient}.service failed because the control process exited with error code.`) : ok();
		}

		if (script.startsWith('t=$(mktemp -d)') && script.includes('==> $i')) {
			// GETs on the master's loopback, side by side: kube-nginx (an apiserver behind it), the controller-manager, the scheduler.
			const apiserverUp = [...this.hosts.values()].some(each => each.active && each.reachable);
			const urls = [...script.matchAll(/-w '\\n%\{http_code\}' (?:'([^']+)'|(\S+));/g)].map(match => match[1] ?? match[2]!);
			return ok(urls.map((url, index) => {
				const [, port, pathName] = /^https:\/\/127\.0\.0\.1:(\d+)(\S*)$/.exec(url)!;
				const up = port === '8443' ? host.units.has('kube-nginx') && apiserverUp : host.units.has(port === '10257' ? 'kube-controller-manager' : 'kube-scheduler');
				const body = pathName!.includes('verbose') ? '[+]ping ok\nreadyz check passed' : 'ok';
				return `==> ${index}\n${up ? `${body}\n200` : `curl: (7) Failed to connect to 127.0.0.1 port ${port}: Connection refused\n000`}\n`;
			}).join(''));
		}

		if (script.startsWith('journalctl')) {
			return ok('kube-apiserver: fake journal');
		}

		if (script.includes('etcdctl') && script.includes('/registry/secrets/') && script.includes('fields')) {
			// What the awk after `etcdctl get -w fields` prints: each value's key prefix (or plain) and its etcd key.
			return ok([...this.etcdSecrets].map(([id, stored]) => `${stored.key === 'plain' ? 'plain' : `k8s:enc:aescbc:v1:${stored.key}:`} /registry/secrets/${id}`).join('\n'));
		}

		if (script.includes('etcdctl') && script.includes('--print-value-only')) {
			const name = /\/registry\/secrets\/default\/([\w-]+)/.exec(script)?.[1] ?? '';
			if (!this.secrets.has(name)) {
				return ok('prefix=\nplain=0\n');
			}

			return ok(host.files.has('/etc/kubernetes/encryption-config.yaml') ? `prefix=k8s:enc:aescbc:v1:${this.loadedKeys.get(host.ip)?.[0] ?? 'key1'}:\nplain=0\n` : 'prefix=k8s..v1..Secret..\nplain=1\n');
		}

		if (script.includes('etcdctl')) {
			const active = [...this.hosts.values()].some(each => each.active);
			return ok(active ? '/registry/namespaces/default\n\n/registry/ranges/serviceips\n' : '');
		}

		return fail(127, `fake host does not know: ${script}`);
	}

	/** What the CIS read finds: the running units' command lines (from their unit files), modes and owners, the encryption provider. */
	private cisFacts(host: FakeHost, script: string): string {
		const lines: string[] = [];
		for (const unit of ['kube-apiserver', 'kube-controller-manager', 'kube-scheduler']) {
			const file = host.files.get(`/etc/systemd/system/${unit}.service`);
			if (!file || !(unit === 'kube-apiserver' ? host.active : host.units.has(unit))) {
				continue;
			}

			const exec = /^ExecStart=([\s\S]*?[^\\])$/m.exec(file.content.toString().replaceAll(' \\\n', ' '))?.[1] ?? '';
			lines.push(`R ${unit}`, ...exec.trim().split(/\s+/).map(arg => `A ${unit} ${arg}`));
		}

		const listed = unquoteWords(/stat -c 'S %a %U:%G %n' -- (.*?) 2>\/dev\/null/.exec(script)?.[1] ?? '');
		for (const path of listed) {
			const found = host.files.get(path);
			if (found) {
				lines.push(`S ${found.mode.toString(8)} ${found.owner}:${found.owner} ${path}`);
			}
		}

		const certDir = unquoteWords(/if \[ -d (\S+) \]; then find/.exec(script)?.[1] ?? '')[0]!;
		const certs = [...host.files].filter(([path]) => path.startsWith(`${certDir}/`));
		if (certs.length > 0) {
			lines.push(`D 700 root:root ${certDir}`, ...certs.map(([path, found]) => `D ${found.mode.toString(8)} ${found.owner}:${found.owner} ${path}`));
		}

		const encryption = [...host.files].find(([path]) => path.endsWith('/encryption-config.yaml'))?.[1].content.toString().split('\n') ?? [];
		const last = encryption.findLastIndex(line => line.includes('providers:'));
		if (last >= 0) {
			lines.push(...(encryption[last + 1]?.match(/[A-Za-z]+/g) ?? []).map(word => `P ${word}`));
		}

		const profiling = /^enableProfiling: *(\S+)$/m.exec(host.files.get('/etc/kubernetes/kube-scheduler.yaml')?.content.toString() ?? '');
		if (profiling) {
			lines.push(`E ${profiling[1]}`);
		}

		return lines.join('\n');
	}

	/** The apiserver's API as the engine calls it (callApi): RBAC, access reviews, secrets, leader records. */
	readonly api = async (ip: string, port: number, request: ApiRequest, _tls?: unknown, _timeoutMs?: number, via?: string): Promise<HealthAnswer> => {
		this.apiRoutes.push({ip, port, via});
		// Counted and hooked like the commands, so a test can stop a run at an API call; the step is told by the path.
		const rewriting = request.path.startsWith('/api/v1/secrets?') || request.method === 'PUT';
		const spec: CommandSpec = {command: 'https', args: [request.method, `https://${ip}:6443${request.path}`], host: ip, step: request.path.includes('clusterrolebindings') ? 'rbac' : rewriting ? 'rewrite' : 'verify'};
		this.beforeCommand(spec, this.calls.length);
		this.calls.push(spec);
		const host = this.hosts.get(ip);
		if (!host?.active || !host.reachable) {
			return {ok: false, status: 0, body: '', error: 'connect ECONNREFUSED'};
		}

		const answer = (status: number, object: unknown): HealthAnswer => ({ok: status >= 200 && status < 300, status, body: JSON.stringify(object)});
		const status = (code: number, reason: string, message: string) => answer(code, {kind: 'Status', status: 'Failure', reason, message, code});
		const body = request.body as Record<string, any> | undefined;
		if (request.path === '/apis/authorization.k8s.io/v1/selfsubjectaccessreviews') {
			const allowed = request.headers?.['Impersonate-User'] === 'kubernetes' && body?.spec?.resourceAttributes?.subresource === 'proxy' && this.bindings.has('kube-apiserver:kubelet-apis');
			return answer(201, {...body, status: {allowed}});
		}

		const loaded = this.loadedKeys.get(ip) ?? [];
		const readable = (key: string) => key === 'plain' || loaded.includes(key);
		const listing = /^\/api\/v1\/secrets\?limit=(\d+)(?:&continue=([^&]+))?$/.exec(request.path);
		if (listing) {
			const token = listing[2] === undefined ? undefined : decodeURIComponent(listing[2]);
			if (token !== undefined && this.expireContinue) {
				this.expireContinue = false;
				return status(410, 'Expired', 'The provided continue parameter is too old to display a consistent list result.');
			}

			const ids = [...this.etcdSecrets.keys()].sort();
			const from = token === undefined ? 0 : ids.findIndex(id => id >= Buffer.from(token, 'base64').toString());
			const start = from < 0 ? ids.length : from;
			const limit = Number(listing[1]);
			const page = ids.slice(start, start + limit);
			const next = ids[start + limit];
			if (page.some(id => !readable(this.etcdSecrets.get(id)!.key))) {
				return status(500, 'InternalError', 'Internal error occurred: no matching key was found for the provided AES transformer');
			}

			const items = page.map(id => {
				const stored = this.etcdSecrets.get(id)!;
				return {...stored.object, metadata: {...stored.object.metadata, resourceVersion: String(stored.revision)}};
			});
			return answer(200, {kind: 'SecretList', apiVersion: 'v1', metadata: next === undefined ? {} : {continue: Buffer.from(next).toString('base64'), remainingItemCount: ids.length - start - limit}, items});
		}

		const replace = /^\/api\/v1\/namespaces\/([\w-]+)\/secrets\/([\w.-]+)$/.exec(request.path);
		if (replace && request.method === 'PUT') {
			const id = `${replace[1]}/${replace[2]}`;
			const stored = this.etcdSecrets.get(id);
			if (!stored) {
				return status(404, 'NotFound', `secrets "${replace[2]}" not found`);
			}

			if (body?.metadata?.resourceVersion !== String(stored.revision)) {
				return status(409, 'Conflict', `Operation cannot be fulfilled on secrets "${replace[2]}": the object has been modified`);
			}

			if (!readable(stored.key)) {
				return status(500, 'InternalError', 'Internal error occurred: no matching key was found for the provided AES transformer');
			}

			const {resourceVersion: _, ...metadata} = body.metadata as Record<string, unknown>;
			this.etcdSecrets.set(id, {key: loaded[0] ?? 'plain', revision: ++this.revision, object: {...body, metadata}});
			return answer(200, {...body, metadata: {...metadata, resourceVersion: String(this.revision)}});
		}

		const secret = /^\/api\/v1\/namespaces\/default\/secrets(?:\/([\w-]+))?$/.exec(request.path);
		if (secret) {
			if (request.method === 'POST') {
				this.secrets.add(body?.metadata?.name as string);
				return answer(201, body);
			}

			this.secrets.delete(secret[1]!);
			return answer(200, {kind: 'Status', status: 'Success'});
		}

		const leader = /\/namespaces\/kube-system\/(leases|endpoints)\/([\w-]+)$/.exec(request.path);
		if (leader) {
			const component = leader[2]!;
			const holder = [...this.hosts.values()].find(each => each.units.has(component));
			if (!holder) {
				return status(404, 'NotFound', `${leader[1] === 'leases' ? 'leases.coordination.k8s.io' : 'endpoints'} "${component}" not found`);
			}

			const record = {holderIdentity: `${holder.ip}_0f0e`, leaseDurationSeconds: 15, renewTime: new Date().toISOString()};
			return answer(200, leader[1] === 'leases' ? {spec: record} : {metadata: {annotations: {'control-plane.alpha.kubernetes.io/leader': JSON.stringify(record)}}});
		}

		const name = 'kube-apiserver:kubelet-apis';
		if (request.path === `/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/${name}`) {
			return this.bindings.has(name) ? answer(200, JSON.parse(this.bindings.get(name)!)) : status(404, 'NotFound', `clusterrolebindings.rbac.authorization.k8s.io "${name}" not found`);
		}

		if (request.path === '/apis/rbac.authorization.k8s.io/v1/clusterrolebindings' && request.method === 'POST') {
			if (this.bindings.has(name)) {
				return status(409, 'AlreadyExists', `clusterrolebindings.rbac.authorization.k8s.io "${name}" already exists`);
			}

			this.bindings.set(name, JSON.stringify(body));
			return answer(201, body);
		}

		return status(404, 'NotFound', `the server could not find the requested resource (${request.method} ${request.path})`);
	};
}

/** The outermost sections of a sectionsScript: a `{` or `}` line alone opens or closes a group. */
function topSections(script: string): Array<[string, string]> {
	const sections: Array<[string, string]> = [];
	let depth = 0;
	let name = '';
	let body: string[] = [];
	for (const line of script.split('\n')) {
		if (depth === 0) {
			name = /^echo '##k8smi## (\w+)'$/.exec(line)?.[1] ?? name;
			depth += line === '{' ? 1 : 0;
			continue;
		}

		depth += line === '{' ? 1 : line === '}' ? -1 : 0;
		if (depth === 0) {
			sections.push([name, body.join('\n')]);
			body = [];
		} else {
			body.push(line);
		}
	}

	return sections;
}
