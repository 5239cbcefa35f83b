import {PerMasterReads} from './per-master-reads.js';
import type {Master} from '../config/schema.js';
import {unitPath} from '../render/artifacts.js';
import {shellQuote, shellWords} from '../remote/quote.js';
import {atLeast, type Component} from '../versions.js';
import type {StepContext, StepDefinition, StepId} from './types.js';

/**
 * The CIS Kubernetes Benchmark's control-plane checks (sections 1.1-1.4, ids and tests of kube-bench's
 * cfg/cis-1.10/master.yaml), read from each master itself: the running processes' command lines and
 * the files' modes and owners. etcd is external here: its checks are skipped with the reason.
 */
export type CisLevel = 'pass' | 'fail' | 'skip';

export type CisResult = {id: string; text: string; automated: boolean; level: CisLevel; detail: string};

/** What one round trip reads from a master. */
export type CisFacts = {
	/** Each component's running command line (its arguments), or undefined when it does not run. */
	commandLines: Map<Component, string[] | undefined>;
	/** Path -> mode and owner:group, or undefined when absent. */
	files: Map<string, {mode: number; owner: string} | undefined>;
	/** Every path under the certificate folder (the folder included). */
	certDirEntries: Array<{path: string; mode: number; owner: string}>;
	/** The words of the line after the last `providers:` of the encryption config (what the benchmark reads). */
	encryptionProviderWords: string[];
	/** `enableProfiling` in the scheduler's config file: beside --config the flag alone is ignored. */
	schedulerConfigProfiling: string | undefined;
};

/** The cis-1.10 cipher list (1.2.29): a suite outside it fails the check. */
const benchmarkCiphers = new Set([
	'TLS_AES_128_GCM_SHA256', 'TLS_AES_256_GCM_SHA384', 'TLS_CHACHA20_POLY1305_SHA256', 'TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA',
	'TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256', 'TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA', 'TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384',
	'TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305', 'TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256', 'TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA',
	'TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256', 'TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA', 'TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384',
	'TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305', 'TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256',
]);

/** As kube-bench reads a flag: the first occurrence; a bare flag is "true". */
function flagValue(args: string[], name: string): string | undefined {
	for (const arg of args) {
		if (arg === `--${name}`) {
			return 'true';
		}

		if (arg.startsWith(`--${name}=`)) {
			return arg.slice(name.length + 3);
		}
	}

	return undefined;
}

type Outcome = {ok: boolean; detail: string};

type Check = {
	id: string;
	text: string;
	/** Automated (scored) checks must pass; a manual one that is not met is skipped with its documented reason. */
	automated: boolean;
	evaluate: (facts: CisFacts, context: StepContext) => Outcome | {skip: string};
	/** For a manual check this install does not meet on purpose: why (also in the README's CIS section). */
	deviation?: (context: StepContext) => string | undefined;
};

type FlagTest = (value: string | undefined) => boolean;

const present: FlagTest = value => value !== undefined;
const absent: FlagTest = value => value === undefined;
const equals = (wanted: string): FlagTest => value => value === wanted;
const contains = (part: string): FlagTest => value => value?.includes(part) === true;
const lacks = (part: string): FlagTest => value => value === undefined || !value.includes(part);
const atLeastNumber = (minimum: number): FlagTest => value => value !== undefined && Number(value) >= minimum;
const unsetOr = (wanted: string): FlagTest => value => value === undefined || value === wanted;

/** One check of a component's flags; every named flag's test must hold. */
function flags(component: Component, tests: Array<[flag: string, test: FlagTest, wanted: string]>) {
	return (facts: CisFacts): Outcome | {skip: string} => {
		const args = facts.commandLines.get(component);
		if (!args) {
			return {ok: false, detail: `${component} is not running`};
		}

		const failing = tests.filter(([flag, test]) => !test(flagValue(args, flag)));
		const shown = (flag: string) => {
			const value = flagValue(args, flag);
			return value === undefined ? `--${flag} not set` : `--${flag}=${value}`;
		};

		return failing.length === 0
			? {ok: true, detail: tests.map(([flag]) => shown(flag)).join(', ')}
			: {ok: false, detail: failing.map(([flag, , wanted]) => `${shown(flag)} (wanted: ${wanted})`).join(', ')};
	};
}

/** Files must exist with at most these permission bits (kube-bench's bitmask test), or this owner. */
function fileCheck(paths: (context: StepContext) => string[], want: {mode?: number; owner?: string}) {
	return (facts: CisFacts, context: StepContext): Outcome => {
		const problems: string[] = [];
		const files = paths(context);
		for (const file of files) {
			const found = facts.files.get(file);
			if (!found) {
				problems.push(`${file} is missing`);
			} else if (want.mode !== undefined && (found.mode & ~want.mode) !== 0) {
				problems.push(`${file} is ${found.mode.toString(8)}`);
			} else if (want.owner !== undefined && found.owner !== want.owner) {
				problems.push(`${file} is owned by ${found.owner}`);
			}
		}

		const wanted = want.mode === undefined ? want.owner! : want.mode.toString(8);
		return problems.length === 0 ? {ok: true, detail: `${files.length} file(s) ${wanted}`} : {ok: false, detail: problems.join('; ')};
	};
}

const isKeyFile = (file: string) => /-key\.pem$|\.key$/.test(file);

/** Entries under certDir that `select` keeps; the folder itself only where `folderToo` (1.1.19: "directory and file ownership"). */
function certDirCheck(select: (path: string) => boolean, want: {mode?: number; owner?: string}, folderToo = false) {
	return (facts: CisFacts, context: StepContext): Outcome => {
		const entries = facts.certDirEntries.filter(entry => (entry.path === context.config.paths.certDir ? folderToo : select(entry.path)));
		if (facts.certDirEntries.length === 0) {
			return {ok: false, detail: `${context.config.paths.certDir} is missing`};
		}

		const bad = entries.filter(entry => (want.mode !== undefined && (entry.mode & ~want.mode) !== 0) || (want.owner !== undefined && entry.owner !== want.owner));
		const wanted = want.mode === undefined ? want.owner! : want.mode.toString(8);
		return bad.length === 0
			? {ok: true, detail: `${entries.length} entries under ${context.config.paths.certDir} ${wanted}`}
			: {ok: false, detail: bad.map(entry => `${entry.path} is ${want.mode === undefined ? `owned by ${entry.owner}` : entry.mode.toString(8)}`).join('; ')};
	};
}

const configFile = (context: StepContext, name: string) => `${context.config.paths.configDir}/${name}`;
/** The apiserver's own files beside its unit (the benchmark's pod specification). */
const apiserverFiles = (context: StepContext) => [unitPath('kube-apiserver'), configFile(context, 'encryption-config.yaml'), configFile(context, 'audit-policy.yaml')];
const schedulerFiles = (context: StepContext) => [unitPath('kube-scheduler'), configFile(context, 'kube-scheduler.yaml')];
const etcdExternal = () => ({skip: 'etcd is external: not installed or configured by this tool'});

const checks: Check[] = [
	{id: '1.1.1', text: 'API server unit (and its encryption and audit configs) 600 or stricter', automated: true, evaluate: fileCheck(apiserverFiles, {mode: 0o600})},
	{id: '1.1.2', text: 'API server unit (and its configs) owned by root:root', automated: true, evaluate: fileCheck(apiserverFiles, {owner: 'root:root'})},
	{id: '1.1.3', text: 'controller-manager unit 600 or stricter', automated: true, evaluate: fileCheck(() => [unitPath('kube-controller-manager')], {mode: 0o600})},
	{id: '1.1.4', text: 'controller-manager unit owned by root:root', automated: true, evaluate: fileCheck(() => [unitPath('kube-controller-manager')], {owner: 'root:root'})},
	{id: '1.1.5', text: 'scheduler unit (and its config) 600 or stricter', automated: true, evaluate: fileCheck(schedulerFiles, {mode: 0o600})},
	{id: '1.1.6', text: 'scheduler unit (and its config) owned by root:root', automated: true, evaluate: fileCheck(schedulerFiles, {owner: 'root:root'})},
	{id: '1.1.7', text: 'etcd pod specification 600 or stricter', automated: true, evaluate: etcdExternal},
	{id: '1.1.8', text: 'etcd pod specification owned by root:root', automated: true, evaluate: etcdExternal},
	{id: '1.1.9', text: 'CNI files 600 or stricter', automated: false, evaluate: () => ({skip: 'no CNI on the masters from this install'})},
	{id: '1.1.10', text: 'CNI files owned by root:root', automated: false, evaluate: () => ({skip: 'no CNI on the masters from this install'})},
	{id: '1.1.11', text: 'etcd data directory 700 or stricter', automated: true, evaluate: etcdExternal},
	{id: '1.1.12', text: 'etcd data directory owned by etcd:etcd', automated: true, evaluate: etcdExternal},
	{id: '1.1.13', text: 'admin kubeconfig 600 or stricter', automated: true, evaluate: () => ({skip: 'no admin kubeconfig on the masters: it stays on the workstation (0600)'})},
	{id: '1.1.14', text: 'admin kubeconfig owned by root:root', automated: true, evaluate: () => ({skip: 'no admin kubeconfig on the masters: it stays on the workstation (0600)'})},
	{id: '1.1.15', text: 'scheduler kubeconfig 600 or stricter', automated: true, evaluate: fileCheck(context => [configFile(context, 'kube-scheduler.kubeconfig')], {mode: 0o600})},
	{id: '1.1.16', text: 'scheduler kubeconfig owned by root:root', automated: true, evaluate: fileCheck(context => [configFile(context, 'kube-scheduler.kubeconfig')], {owner: 'root:root'})},
	{id: '1.1.17', text: 'controller-manager kubeconfig 600 or stricter', automated: true, evaluate: fileCheck(context => [configFile(context, 'kube-controller-manager.kubeconfig')], {mode: 0o600})},
	{id: '1.1.18', text: 'controller-manager kubeconfig owned by root:root', automated: true, evaluate: fileCheck(context => [configFile(context, 'kube-controller-manager.kubeconfig')], {owner: 'root:root'})},
	{id: '1.1.19', text: 'certificate folder and files owned by root:root', automated: true, evaluate: certDirCheck(() => true, {owner: 'root:root'}, true)},
	{id: '1.1.20', text: 'certificate files 600 or stricter', automated: false, evaluate: certDirCheck(file => !isKeyFile(file), {mode: 0o600})},
	{id: '1.1.21', text: 'key files 600', automated: false, evaluate: certDirCheck(isKeyFile, {mode: 0o600})},
	{id: '1.2.1', text: '--anonymous-auth=false', automated: false, evaluate: flags('kube-apiserver', [['anonymous-auth', equals('false'), 'false']])},
	{id: '1.2.2', text: '--token-auth-file not set', automated: true, evaluate: flags('kube-apiserver', [['token-auth-file', absent, 'not set']])},
	{
		id: '1.2.3', text: 'DenyServiceExternalIPs admission plugin', automated: false,
		evaluate: flags('kube-apiserver', [['enable-admission-plugins', contains('DenyServiceExternalIPs'), 'has DenyServiceExternalIPs']]),
		deviation: context => (atLeast(context.config.kubeVersion, 25) ? undefined : 'on from 1.25 only: the benchmarks for 1.22-1.24 (cis-1.23, cis-1.24) ask it off'),
	},
	{id: '1.2.4', text: '--kubelet-client-certificate and --kubelet-client-key', automated: true, evaluate: flags('kube-apiserver', [['kubelet-client-certificate', present, 'a file'], ['kubelet-client-key', present, 'a file']])},
	{id: '1.2.5', text: '--kubelet-certificate-authority', automated: true, evaluate: flags('kube-apiserver', [['kubelet-certificate-authority', present, 'a file']])},
	{id: '1.2.6', text: '--authorization-mode not AlwaysAllow', automated: true, evaluate: flags('kube-apiserver', [['authorization-mode', value => present(value) && lacks('AlwaysAllow')(value), 'set, without AlwaysAllow']])},
	{id: '1.2.7', text: '--authorization-mode includes Node', automated: true, evaluate: flags('kube-apiserver', [['authorization-mode', contains('Node'), 'has Node']])},
	{id: '1.2.8', text: '--authorization-mode includes RBAC', automated: true, evaluate: flags('kube-apiserver', [['authorization-mode', contains('RBAC'), 'has RBAC']])},
	{
		id: '1.2.9', text: 'EventRateLimit admission plugin', automated: false,
		evaluate: flags('kube-apiserver', [['enable-admission-plugins', contains('EventRateLimit'), 'has EventRateLimit']]),
		deviation: () => 'not enabled: an alpha plugin whose limits need an admission configuration sized to the cluster (extraFlags.kube-apiserver can add it)',
	},
	{id: '1.2.10', text: 'AlwaysAdmit admission plugin not set', automated: true, evaluate: flags('kube-apiserver', [['enable-admission-plugins', lacks('AlwaysAdmit'), 'no AlwaysAdmit']])},
	{
		id: '1.2.11', text: 'AlwaysPullImages admission plugin', automated: false,
		evaluate: flags('kube-apiserver', [['enable-admission-plugins', contains('AlwaysPullImages'), 'has AlwaysPullImages']]),
		deviation: () => 'not enabled: every pod start would need the registry, which breaks air-gapped nodes and pre-loaded images; a per-cluster choice (extraFlags.kube-apiserver)',
	},
	{id: '1.2.12', text: 'ServiceAccount admission plugin not disabled', automated: true, evaluate: flags('kube-apiserver', [['disable-admission-plugins', lacks('ServiceAccount'), 'no ServiceAccount']])},
	{id: '1.2.13', text: 'NamespaceLifecycle admission plugin not disabled', automated: true, evaluate: flags('kube-apiserver', [['disable-admission-plugins', lacks('NamespaceLifecycle'), 'no NamespaceLifecycle']])},
	{id: '1.2.14', text: 'NodeRestriction admission plugin', automated: true, evaluate: flags('kube-apiserver', [['enable-admission-plugins', contains('NodeRestriction'), 'has NodeRestriction']])},
	{id: '1.2.15', text: '--profiling=false', automated: true, evaluate: flags('kube-apiserver', [['profiling', equals('false'), 'false']])},
	{id: '1.2.16', text: '--audit-log-path', automated: true, evaluate: flags('kube-apiserver', [['audit-log-path', present, 'a file']])},
	{id: '1.2.17', text: '--audit-log-maxage 30 or more', automated: true, evaluate: flags('kube-apiserver', [['audit-log-maxage', atLeastNumber(30), '>= 30']])},
	{id: '1.2.18', text: '--audit-log-maxbackup 10 or more', automated: true, evaluate: flags('kube-apiserver', [['audit-log-maxbackup', atLeastNumber(10), '>= 10']])},
	{id: '1.2.19', text: '--audit-log-maxsize 100 or more', automated: true, evaluate: flags('kube-apiserver', [['audit-log-maxsize', atLeastNumber(100), '>= 100']])},
	{id: '1.2.20', text: '--request-timeout as appropriate', automated: false, evaluate: () => ({skip: 'manual in the benchmark: the apiserver default (60s) is kept'})},
	{id: '1.2.21', text: '--service-account-lookup not false', automated: true, evaluate: flags('kube-apiserver', [['service-account-lookup', unsetOr('true'), 'true or not set']])},
	{id: '1.2.22', text: '--service-account-key-file', automated: true, evaluate: flags('kube-apiserver', [['service-account-key-file', present, 'a file']])},
	{id: '1.2.23', text: '--etcd-certfile and --etcd-keyfile', automated: true, evaluate: flags('kube-apiserver', [['etcd-certfile', present, 'a file'], ['etcd-keyfile', present, 'a file']])},
	{id: '1.2.24', text: '--tls-cert-file and --tls-private-key-file', automated: true, evaluate: flags('kube-apiserver', [['tls-cert-file', present, 'a file'], ['tls-private-key-file', present, 'a file']])},
	{id: '1.2.25', text: '--client-ca-file', automated: true, evaluate: flags('kube-apiserver', [['client-ca-file', present, 'a file']])},
	{id: '1.2.26', text: '--etcd-cafile', automated: true, evaluate: flags('kube-apiserver', [['etcd-cafile', present, 'a file']])},
	{id: '1.2.27', text: '--encryption-provider-config', automated: false, evaluate: flags('kube-apiserver', [['encryption-provider-config', present, 'a file']])},
	{
		id: '1.2.28', text: 'encryption provider aescbc, kms or secretbox', automated: false,
		evaluate(facts) {
			const words = facts.encryptionProviderWords;
			return words.length > 0 && words.every(word => ['aescbc', 'kms', 'secretbox'].includes(word))
				? {ok: true, detail: `provider ${words.join(' ')}`}
				: {ok: false, detail: words.length > 0 ? `provider ${words.join(' ')}` : 'no provider found'};
		},
	},
	{
		id: '1.2.29', text: 'strong TLS cipher suites only', automated: false,
		evaluate(facts) {
			const args = facts.commandLines.get('kube-apiserver');
			const suites = args ? flagValue(args, 'tls-cipher-suites')?.split(',') ?? [] : [];
			const weak = suites.filter(suite => !benchmarkCiphers.has(suite));
			return suites.length > 0 && weak.length === 0
				? {ok: true, detail: `${suites.length} suites, all on the benchmark's list`}
				: {ok: false, detail: suites.length === 0 ? '--tls-cipher-suites not set' : `not on the benchmark's list: ${weak.join(', ')}`};
		},
	},
	{id: '1.3.1', text: '--terminated-pod-gc-threshold', automated: false, evaluate: flags('kube-controller-manager', [['terminated-pod-gc-threshold', present, 'a number']])},
	{id: '1.3.2', text: '--profiling=false', automated: true, evaluate: flags('kube-controller-manager', [['profiling', equals('false'), 'false']])},
	{id: '1.3.3', text: '--use-service-account-credentials', automated: true, evaluate: flags('kube-controller-manager', [['use-service-account-credentials', value => present(value) && value !== 'false', 'true']])},
	{id: '1.3.4', text: '--service-account-private-key-file', automated: true, evaluate: flags('kube-controller-manager', [['service-account-private-key-file', present, 'a file']])},
	{id: '1.3.5', text: '--root-ca-file', automated: true, evaluate: flags('kube-controller-manager', [['root-ca-file', present, 'a file']])},
	{id: '1.3.6', text: 'RotateKubeletServerCertificate not turned off', automated: true, evaluate: flags('kube-controller-manager', [['feature-gates', lacks('RotateKubeletServerCertificate=false'), 'no RotateKubeletServerCertificate=false']])},
	{id: '1.3.7', text: '--bind-address=127.0.0.1', automated: true, evaluate: flags('kube-controller-manager', [['bind-address', unsetOr('127.0.0.1'), '127.0.0.1']])},
	{
		id: '1.4.1', text: '--profiling=false (and enableProfiling: false in its config)', automated: true,
		evaluate(facts, context) {
			const flag = flags('kube-scheduler', [['profiling', equals('false'), 'false']])(facts);
			if ('skip' in flag || !flag.ok) {
				return flag;
			}

			// The flag is what the benchmark reads; beside --config only the file's setting takes effect.
			return facts.schedulerConfigProfiling === 'false'
				? {ok: true, detail: `${flag.detail}, enableProfiling: false`}
				: {ok: false, detail: `${flag.detail}, but ${configFile(context, 'kube-scheduler.yaml')} has ${facts.schedulerConfigProfiling === undefined ? 'no enableProfiling (on by default)' : `enableProfiling: ${facts.schedulerConfigProfiling}`}`};
		},
	},
	{id: '1.4.2', text: '--bind-address=127.0.0.1', automated: true, evaluate: flags('kube-scheduler', [['bind-address', unsetOr('127.0.0.1'), '127.0.0.1']])},
];

/** The files and folders the checks look at, as paths on the master. */
function filesToRead(context: StepContext): string[] {
	return [...new Set([
		...apiserverFiles(context), ...schedulerFiles(context), unitPath('kube-controller-manager'),
		configFile(context, 'kube-scheduler.kubeconfig'), configFile(context, 'kube-controller-manager.kubeconfig'),
	])];
}

const cisComponents: Component[] = ['kube-apiserver', 'kube-controller-manager', 'kube-scheduler'];

/**
 * "R UNIT" and "A UNIT ARG" lines for each running component: one systemctl for the three (each one
 * costs a master about 10 ms), its answer read as "UNIT PID" lines whatever order it prints them in.
 */
export const commandLinesScript = `systemctl show -p Id -p MainPID ${cisComponents.join(' ')} 2>/dev/null | awk -F= '$1 == "Id" {sub(/\\.service$/, "", $2); u = $2} $1 == "MainPID" {p = $2} /^$/ {if (u != "") print u, p; u = ""; p = ""} END {if (u != "") print u, p}' | while read -r u p; do if [ -n "$p" ] && [ "$p" != 0 ] && [ -r "/proc/$p/cmdline" ]; then echo "R $u"; tr '\\0' '\\n' < "/proc/$p/cmdline" | while IFS= read -r a; do printf 'A %s %s\\n' "$u" "$a"; done; fi; done`;

/** One round trip: command lines of the running components, modes and owners, the encryption provider line. */
export function cisFactsScript(context: StepContext): string {
	const encryption = shellQuote(configFile(context, 'encryption-config.yaml'));
	return [
		commandLinesScript,
		// One stat for all: an absent file prints nothing (its complaint goes to /dev/null).
		`stat -c 'S %a %U:%G %n' -- ${shellWords(filesToRead(context))} 2>/dev/null`,
		`if [ -d ${shellQuote(context.config.paths.certDir)} ]; then find -H ${shellQuote(context.config.paths.certDir)} -exec stat -c 'D %a %U:%G %n' -- {} +; fi`,
		providerWordsScript(encryption),
		schedulerProfilingScript(shellQuote(configFile(context, 'kube-scheduler.yaml'))),
	].join('\n');
}

/**
 * The benchmark's own reading (1.2.28), `grep -A1 'providers:' | tail -n 1 | grep -o '[A-Za-z]*'`:
 * the words of the line after the last `providers:` (that line itself when it is the last), as "P WORD"
 * lines; the key is never printed. One awk instead of four processes (each costs a master milliseconds).
 */
export const providerWordsScript = (file: string) => `if [ -f ${file} ]; then awk 'after {last = $0; after = 0} /providers:/ {last = $0; after = 1} END {s = last; while (match(s, /[A-Za-z]+/)) {print "P " substr(s, RSTART, RLENGTH); s = substr(s, RSTART + RLENGTH)}}' ${file}; fi`;

/** The scheduler config's enableProfiling line, as "E VALUE". */
export const schedulerProfilingScript = (file: string) => `if [ -f ${file} ]; then awk '/^enableProfiling:/ {sub(/^enableProfiling: */, "E "); print}' ${file}; fi`;

export function parseCisFacts(output: string): CisFacts {
	const facts: CisFacts = {commandLines: new Map(), files: new Map(), certDirEntries: [], encryptionProviderWords: [], schedulerConfigProfiling: undefined};
	for (const line of output.split('\n')) {
		const [kind, ...rest] = line.split(' ');
		if (kind === 'R') {
			facts.commandLines.set(rest[0] as Component, []);
		} else if (kind === 'A') {
			facts.commandLines.get(rest[0] as Component)?.push(rest.slice(1).join(' '));
		} else if ((kind === 'S' || kind === 'D') && rest.length >= 3) {
			const entry = {mode: Number.parseInt(rest[0]!, 8), owner: rest[1]!, path: rest.slice(2).join(' ')};
			if (kind === 'S') {
				facts.files.set(entry.path, entry);
			} else {
				facts.certDirEntries.push(entry);
			}
		} else if (kind === 'P' && rest[0]) {
			facts.encryptionProviderWords.push(rest[0]);
		} else if (kind === 'E') {
			facts.schedulerConfigProfiling = rest.join(' ').trim();
		}
	}

	return facts;
}

export function evaluateCis(facts: CisFacts, context: StepContext): CisResult[] {
	return checks.map(check => {
		const outcome = check.evaluate(facts, context);
		if ('skip' in outcome) {
			return {id: check.id, text: check.text, automated: check.automated, level: 'skip', detail: outcome.skip};
		}

		if (outcome.ok) {
			return {id: check.id, text: check.text, automated: check.automated, level: 'pass', detail: outcome.detail};
		}

		// A manual check this install leaves unmet on purpose says why; anything else that is not met fails.
		const deviation = check.deviation?.(context);
		return deviation && context.config.profile === 'cis'
			? {id: check.id, text: check.text, automated: check.automated, level: 'skip', detail: `${deviation} (${outcome.detail})`}
			: {id: check.id, text: check.text, automated: check.automated, level: 'fail', detail: outcome.detail};
	});
}

/** Reads one master and judges every check. */
export async function cisResults(context: StepContext, master: Master, step: StepId): Promise<CisResult[]> {
	const result = await context.remote.check(master, cisFactsScript(context), {step, display: 'read the components\' command lines, file modes and owners (CIS benchmark)'});
	return evaluateCis(parseCisFacts(result.stdout), context);
}

/** The ids and count per level, for a one-line summary. */
export function cisSummary(results: CisResult[]): {failed: string[]; text: string} {
	const count = (level: CisLevel) => results.filter(result => result.level === level).length;
	const failed = results.filter(result => result.level === 'fail').map(result => result.id);
	return {failed, text: `CIS 1.10 control plane: ${count('pass')} pass, ${count('fail')} fail${failed.length > 0 ? ` (${failed.join(', ')})` : ''}, ${count('skip')} skip`};
}

/** Per run, each master's results: the cis command prints them whole, not only the step's note. */
export const cisResultsRead = new PerMasterReads<CisResult[]>();

/** The benchmark as a step: read-only and done again every time; the command judges the results. */
export const cisStep: StepDefinition = {
	id: 'cis',
	title: 'Read the CIS benchmark checks',
	needs: [],
	scope: 'each-master',
	plan: () => [{kind: 'check', description: 'read the components\' command lines, file modes and owners (CIS benchmark)'}],
	verify: async () => ({done: false}),
	async run(context, master) {
		const results = await cisResults(context, master, 'cis');
		cisResultsRead.record(context, master.name, results);
		return cisSummary(results).text;
	},
};
