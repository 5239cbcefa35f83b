/**
 * What each Kubernetes release accepts and requires, as data. The unit template is rendered
 * from this table, so a release only ever sees flags it starts with.
 * Sources: ../shared/reference/flags-by-version.md (k/k PR numbers in comments).
 */

export type KubeVersion = {major: number; minor: number; patch: number; text: string};

/** Oldest and newest minor releases whose flags this table describes. */
export const supportedMinors = {oldest: 14, newest: 34} as const;

const versionPattern = /^v(\d+)\.(\d+)\.(\d+)$/;

export function parseVersion(text: string): KubeVersion | undefined {
	const match = versionPattern.exec(text);
	if (!match) {
		return undefined;
	}

	return {major: Number(match[1]), minor: Number(match[2]), patch: Number(match[3]), text};
}

/** True when the release is at least 1.<minor>. */
export function atLeast(version: KubeVersion, minor: number): boolean {
	return version.major > 1 || (version.major === 1 && version.minor >= minor);
}

export type FlagContext = {
	clusterName: string;
	masterIp: string;
	etcdServers: string;
	serviceCidr: string;
	nodePortRange: string;
	apiserverCount: number;
	certDir: string;
	configDir: string;
	k8sDir: string;
	etcdCaFile: string;
	etcdCertFile: string;
	etcdKeyFile: string;
	serviceAccountIssuer: string;
	/** sa.pub, or the CA certificate where the tutorial's CA-key signing is kept. */
	serviceAccountPublicFile: string;
	/** sa.key, or the CA key. */
	serviceAccountSigningFile: string;
	/** With an imported CA, tokens signed by its key before this install stay valid beside sa.pub. */
	acceptCaSignedTokens: boolean;
	/** The controller-manager signs kubelet certificates with the CA key on the masters. */
	clusterSigning: boolean;
	/** Hardened to the CIS Kubernetes Benchmark (profile: cis); false: the tutorial's own flags. */
	cis: boolean;
};

export type FlagRule = {
	name: string;
	/** undefined: a bare boolean flag, written without a value. */
	value?: (context: FlagContext) => string;
	/** First minor release that gets the flag. */
	since?: number;
	/** First minor release that no longer gets it (removed, or no longer useful). */
	until?: number;
	/** Only for clusters where this holds. */
	when?: (context: FlagContext) => boolean;
};

const k = (context: FlagContext, file: string) => `${context.certDir}/${file}`;
const cis = (context: FlagContext) => context.cis;
const tutorial = (context: FlagContext) => !context.cis;

/**
 * TLS 1.2 suites for the apiserver (CIS 1.2.29): ECDHE with AEAD only, the names every benchmark
 * release from cis-1.6 to cis-1.10 accepts and every supported apiserver knows. TLS 1.3 is not configurable, and stays on.
 */
export const cisCipherSuites = [
	'TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256', 'TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256', 'TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305',
	'TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384', 'TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305', 'TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384',
];

/** The kube-apiserver flags, in the tutorial's order, each with the releases it belongs to. */
export const apiserverFlags: FlagRule[] = [
	{name: 'advertise-address', value: c => c.masterIp},
	{name: 'default-not-ready-toleration-seconds', value: () => '360'},
	{name: 'default-unreachable-toleration-seconds', value: () => '360'},
	// DynamicAuditing and the auditregistration API were removed in 1.19 (k/k#91502).
	{name: 'feature-gates', value: () => 'DynamicAuditing=true', until: 19},
	{name: 'max-mutating-requests-inflight', value: () => '2000'},
	{name: 'max-requests-inflight', value: () => '4000'},
	{name: 'default-watch-cache-size', value: () => '200'},
	{name: 'delete-collection-workers', value: () => '2'},
	{name: 'encryption-provider-config', value: c => `${c.configDir}/encryption-config.yaml`},
	{name: 'etcd-cafile', value: c => c.etcdCaFile},
	{name: 'etcd-certfile', value: c => c.etcdCertFile},
	{name: 'etcd-keyfile', value: c => c.etcdKeyFile},
	{name: 'etcd-servers', value: c => c.etcdServers},
	{name: 'bind-address', value: c => c.masterIp},
	{name: 'secure-port', value: () => '6443'},
	{name: 'tls-cert-file', value: c => k(c, 'kubernetes.pem')},
	{name: 'tls-private-key-file', value: c => k(c, 'kubernetes-key.pem')},
	// Only 0 allowed and without effect from 1.20, removed in 1.24 (k/k#95856).
	{name: 'insecure-port', value: () => '0', until: 20},
	{name: 'audit-dynamic-configuration', until: 19},
	// CIS 1.2.17/1.2.18 ask at least 30 days and 10 files; the tutorial keeps 15 and 3.
	{name: 'audit-log-maxage', value: c => (c.cis ? '30' : '15')},
	{name: 'audit-log-maxbackup', value: c => (c.cis ? '10' : '3')},
	{name: 'audit-log-maxsize', value: () => '100'},
	{name: 'audit-log-mode', value: () => 'batch'},
	{name: 'audit-log-truncate-enabled'},
	{name: 'audit-log-batch-buffer-size', value: () => '20000'},
	{name: 'audit-log-batch-max-size', value: () => '2'},
	// Without a max wait the batch writer busy-loops a core on every master (seen on 1.28).
	{name: 'audit-log-batch-max-wait', value: () => '1s', since: 15},
	{name: 'audit-log-path', value: c => `${c.k8sDir}/kube-apiserver/audit.log`},
	{name: 'audit-policy-file', value: c => `${c.configDir}/audit-policy.yaml`},
	{name: 'profiling', when: tutorial},
	{name: 'profiling', value: () => 'false', when: cis},
	{name: 'anonymous-auth', value: () => 'false'},
	{name: 'client-ca-file', value: c => k(c, 'ca.pem')},
	{name: 'enable-bootstrap-token-auth'},
	{name: 'requestheader-allowed-names', value: () => 'aggregator'},
	{name: 'requestheader-client-ca-file', value: c => k(c, 'ca.pem')},
	{name: 'requestheader-extra-headers-prefix', value: () => 'X-Remote-Extra-'},
	{name: 'requestheader-group-headers', value: () => 'X-Remote-Group'},
	{name: 'requestheader-username-headers', value: () => 'X-Remote-User'},
	// The tutorial verifies tokens with the CA certificate; new clusters get a dedicated sa.pub.
	{name: 'service-account-key-file', value: c => c.serviceAccountPublicFile},
	{name: 'service-account-key-file', value: c => k(c, 'ca.pem'), when: c => c.acceptCaSignedTokens},
	// From 1.20 issuer and signing key are required (k/k#95896).
	{name: 'service-account-signing-key-file', value: c => c.serviceAccountSigningFile, since: 20},
	{name: 'service-account-issuer', value: c => c.serviceAccountIssuer, since: 20},
	{name: 'authorization-mode', value: () => 'Node,RBAC'},
	// Turns on every alpha API; kept only where the tutorial's exact flags are wanted.
	{name: 'runtime-config', value: () => 'api/all=true', until: 15},
	// DenyServiceExternalIPs (CIS 1.2.3, cis-1.7 on): closes CVE-2020-8554; the cis-1.23/1.24 benchmarks ask it off.
	{name: 'enable-admission-plugins', value: c => (c.cis ? 'NodeRestriction,DenyServiceExternalIPs' : 'NodeRestriction'), since: 25},
	{name: 'enable-admission-plugins', value: () => 'NodeRestriction', until: 25},
	{name: 'tls-cipher-suites', value: () => cisCipherSuites.join(','), when: cis},
	{name: 'allow-privileged', value: () => 'true'},
	// No effect under the lease endpoint reconciler, deprecated ~1.24 (k/k#108062).
	{name: 'apiserver-count', value: c => String(c.apiserverCount), until: 24},
	{name: 'event-ttl', value: () => '168h'},
	{name: 'kubelet-certificate-authority', value: c => k(c, 'ca.pem')},
	{name: 'kubelet-client-certificate', value: c => k(c, 'kubernetes.pem')},
	{name: 'kubelet-client-key', value: c => k(c, 'kubernetes-key.pem')},
	// Deprecated 1.19, removed 1.22 (k/k#91630, k/k#101178).
	{name: 'kubelet-https', value: () => 'true', until: 19},
	{name: 'kubelet-timeout', value: () => '10s'},
	{name: 'proxy-client-cert-file', value: c => k(c, 'proxy-client.pem')},
	{name: 'proxy-client-key-file', value: c => k(c, 'proxy-client-key.pem')},
	{name: 'service-cluster-ip-range', value: c => c.serviceCidr},
	{name: 'service-node-port-range', value: c => c.nodePortRange},
	// A stopping apiserver otherwise holds its exit while watches are open, up to --request-timeout (60 s), and
	// every rolling restart waits for it (see apiserverStop). 1.27+ closes the watches (k/k#114925); 1.23-1.26
	// keeps listening until in-flight requests drained, then gives the rest 2 s (k/k#101257).
	{name: 'shutdown-watch-termination-grace-period', value: () => `${watchTerminationGraceSeconds}s`, since: 27},
	{name: 'shutdown-send-retry-after', value: () => 'true', since: 23, until: 27},
	// Deprecated 1.23, removed 1.26 (KEP-2845); stderr is the default anyway.
	{name: 'logtostderr', value: () => 'true', until: 23},
	{name: 'v', value: () => '2'},
];

const watchTerminationGraceSeconds = 10;

/**
 * What a stopping kube-apiserver of this release waits for before it exits, and how long at most: net/http
 * (Go 1.16+, so 1.21+) waits for busy connections (the watches every controller keeps open) up to the request
 * timeout, unless the flags above shorten it. Older releases drop the watches and exit once requests drained.
 */
export function apiserverStop(version: KubeVersion, flags: readonly string[]): {seconds: number; waitsFor: string} {
	// pflag: the last occurrence wins; a bare boolean flag means true.
	const flag = (name: string) => flags.findLast(each => flagName(each) === name);
	const value = (name: string) => flag(name)?.split('=').slice(1).join('=');
	const requestTimeout = durationSeconds(value('request-timeout')) ?? 60;
	const grace = atLeast(version, 27) ? durationSeconds(value('shutdown-watch-termination-grace-period')) ?? 0 : 0;
	const retryAfter = atLeast(version, 23) && flag('shutdown-send-retry-after') !== undefined && ['', 'true', '1', 't', 'T', 'TRUE', 'True'].includes(value('shutdown-send-retry-after') ?? '');
	const delay = durationSeconds(value('shutdown-delay-duration')) ?? 0;
	if (grace > 0) {
		return {seconds: delay + grace + 1, waitsFor: `in-flight requests, then closes its watches (up to ${grace} s)`};
	}

	if (retryAfter) {
		return {seconds: delay + 2, waitsFor: 'in-flight requests, then 2 s for its watches'};
	}

	return atLeast(version, 21)
		? {seconds: delay + requestTimeout, waitsFor: `its open watches, up to the request timeout (${requestTimeout} s): this release cannot close them sooner`}
		: {seconds: delay + 1, waitsFor: 'in-flight requests'};
}

/** A Go duration (90s, 1m30s, 500ms) in seconds; undefined when absent or not one. */
export function durationSeconds(text: string | undefined): number | undefined {
	if (text === undefined || !/^(\d+(\.\d+)?(ms|s|m|h))+$/.test(text)) {
		return undefined;
	}

	const unit: Record<string, number> = {ms: 0.001, s: 1, m: 60, h: 3600};
	return [...text.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)].reduce((total, [, amount, suffix]) => total + (Number(amount) * unit[suffix!]!), 0);
}

const cmKubeconfig = (c: FlagContext) => `${c.configDir}/kube-controller-manager.kubeconfig`;
const schedulerKubeconfig = (c: FlagContext) => `${c.configDir}/kube-scheduler.kubeconfig`;

/** Front-proxy (aggregator) requests are trusted from the CA, as the apiserver is told. */
const requestHeaderFlags: FlagRule[] = [
	{name: 'requestheader-allowed-names', value: () => 'aggregator'},
	{name: 'requestheader-client-ca-file', value: c => k(c, 'ca.pem')},
	{name: 'requestheader-extra-headers-prefix', value: () => 'X-Remote-Extra-'},
	{name: 'requestheader-group-headers', value: () => 'X-Remote-Group'},
	{name: 'requestheader-username-headers', value: () => 'X-Remote-User'},
];

/** The kube-controller-manager flags of the tutorial's later chapter, made valid per release. */
export const controllerManagerFlags: FlagRule[] = [
	{name: 'profiling', when: tutorial},
	{name: 'profiling', value: () => 'false', when: cis},
	{name: 'cluster-name', value: c => c.clusterName},
	{name: 'controllers', value: () => '*,bootstrapsigner,tokencleaner'},
	{name: 'kube-api-qps', value: () => '1000'},
	{name: 'kube-api-burst', value: () => '2000'},
	{name: 'leader-elect'},
	{name: 'use-service-account-credentials'},
	{name: 'concurrent-service-syncs', value: () => '2'},
	// CIS 1.3.7/1.4.2: the secure port on loopback only (health is then checked on the master).
	{name: 'bind-address', value: c => (c.cis ? '127.0.0.1' : c.masterIp)},
	// The default secure port; the tutorial moved it to 10252, where older releases serve plain HTTP.
	{name: 'secure-port', value: () => '10257'},
	// The insecure port: off, until the flag was removed in 1.24.
	{name: 'port', value: () => '0', until: 24},
	{name: 'tls-cert-file', value: c => k(c, 'kube-controller-manager.pem')},
	{name: 'tls-private-key-file', value: c => k(c, 'kube-controller-manager-key.pem')},
	{name: 'authentication-kubeconfig', value: cmKubeconfig},
	{name: 'client-ca-file', value: c => k(c, 'ca.pem')},
	...requestHeaderFlags,
	{name: 'authorization-kubeconfig', value: cmKubeconfig},
	// Signs the kubelets' certificate requests: the CA key is on the masters for this.
	{name: 'cluster-signing-cert-file', value: c => k(c, 'ca.pem'), when: c => c.clusterSigning},
	{name: 'cluster-signing-key-file', value: c => k(c, 'ca-key.pem'), when: c => c.clusterSigning},
	// Renamed in 1.19, the old name removed in 1.25.
	{name: 'experimental-cluster-signing-duration', value: () => '876000h', until: 19, when: c => c.clusterSigning},
	{name: 'cluster-signing-duration', value: () => '876000h', since: 19, when: c => c.clusterSigning},
	{name: 'horizontal-pod-autoscaler-sync-period', value: () => '10s'},
	{name: 'concurrent-deployment-syncs', value: () => '10'},
	{name: 'concurrent-gc-syncs', value: () => '30'},
	{name: 'node-cidr-mask-size', value: () => '24'},
	{name: 'service-cluster-ip-range', value: c => c.serviceCidr},
	// Removed in 1.27 (taint-based eviction took over).
	{name: 'pod-eviction-timeout', value: () => '6m0s', until: 27},
	{name: 'terminated-pod-gc-threshold', value: () => '10000'},
	{name: 'root-ca-file', value: c => k(c, 'ca.pem')},
	{name: 'service-account-private-key-file', value: c => c.serviceAccountSigningFile},
	{name: 'kubeconfig', value: cmKubeconfig},
	{name: 'logtostderr', value: () => 'true', until: 23},
	{name: 'v', value: () => '2'},
];

/** The kube-scheduler flags; its kubeconfig and leader election are in its --config file. */
export const schedulerFlags: FlagRule[] = [
	{name: 'config', value: c => `${c.configDir}/kube-scheduler.yaml`},
	// Ignored beside --config (the file's enableProfiling rules), but what the benchmark reads (CIS 1.4.1).
	{name: 'profiling', value: () => 'false', when: cis},
	{name: 'bind-address', value: c => (c.cis ? '127.0.0.1' : c.masterIp)},
	{name: 'secure-port', value: () => '10259'},
	// Must be 0 in 1.22-1.23, removed in 1.24. Before 1.22 the --config file's healthzBindAddress rules.
	{name: 'port', value: () => '0', until: 24},
	{name: 'tls-cert-file', value: c => k(c, 'kube-scheduler.pem')},
	{name: 'tls-private-key-file', value: c => k(c, 'kube-scheduler-key.pem')},
	{name: 'authentication-kubeconfig', value: schedulerKubeconfig},
	{name: 'client-ca-file', value: c => k(c, 'ca.pem')},
	...requestHeaderFlags,
	{name: 'authorization-kubeconfig', value: schedulerKubeconfig},
	{name: 'logtostderr', value: () => 'true', until: 23},
	{name: 'v', value: () => '2'},
];

export type Component = 'kube-apiserver' | 'kube-controller-manager' | 'kube-scheduler';

const flagTables: Record<Component, FlagRule[]> = {
	'kube-apiserver': apiserverFlags,
	'kube-controller-manager': controllerManagerFlags,
	'kube-scheduler': schedulerFlags,
};

/** True when the release is within [since, until) (minor releases; either end may be open). */
export function inReleaseSpan(rule: {since?: number; until?: number}, version: KubeVersion): boolean {
	return (rule.since === undefined || atLeast(version, rule.since))
		&& (rule.until === undefined || !atLeast(version, rule.until));
}

/** A component's command-line flags for one master, for one release; extra flags replace same-named ones. */
export function componentFlagsFor(component: Component, version: KubeVersion, context: FlagContext, extra: readonly string[] = []): string[] {
	const extraNames = new Set(extra.map(flagName));
	const flags = flagTables[component]
		.filter(rule => inReleaseSpan(rule, version) && (rule.when?.(context) ?? true) && !extraNames.has(rule.name))
		.map(rule => (rule.value ? `--${rule.name}=${rule.value(context)}` : `--${rule.name}`));
	return [...flags, ...extra];
}

/** The kube-apiserver command-line flags for one master, for one release. */
export function apiserverFlagsFor(version: KubeVersion, context: FlagContext): string[] {
	return componentFlagsFor('kube-apiserver', version, context);
}

/** `--name=value` -> name (pflag also takes `_` for `-`). */
export function flagName(flag: string): string {
	return flag.replace(/^--?/, '').split('=')[0]!.replaceAll('_', '-');
}

/** The health endpoint that says the apiserver serves requests: /readyz exists from 1.16. */
export function readinessPath(version: KubeVersion): string {
	return atLeast(version, 16) ? '/readyz' : '/healthz';
}

/** The liveness endpoint: /livez exists from 1.16. */
export function livenessPath(version: KubeVersion): string {
	return atLeast(version, 16) ? '/livez' : '/healthz';
}

/** The KubeSchedulerConfiguration version a release reads: each is accepted only for a span of releases. */
export function schedulerConfigVersion(version: KubeVersion): string {
	if (!atLeast(version, 19)) {
		return 'v1alpha1';
	}

	if (!atLeast(version, 22)) {
		return 'v1beta1';
	}

	if (!atLeast(version, 23)) {
		return 'v1beta2';
	}

	return atLeast(version, 25) ? 'v1' : 'v1beta3';
}

/** Where the leaders of controller-manager and scheduler are recorded: Endpoints before 1.17, Leases after. */
export function leaderLockKind(version: KubeVersion): 'endpoints' | 'leases' {
	return atLeast(version, 17) ? 'leases' : 'endpoints';
}

/** Config file kinds: which apiVersion/kind each release reads (since/until as minor releases). */
export const configKinds: Array<{file: string; apiVersion: string; kind: string; since?: number; until?: number; fix: string}> = [
	{file: 'audit-policy.yaml', apiVersion: 'audit.k8s.io/v1', kind: 'Policy', since: 12, fix: 'use apiVersion audit.k8s.io/v1'},
	{file: 'audit-policy.yaml', apiVersion: 'audit.k8s.io/v1beta1', kind: 'Policy', until: 24, fix: 'use apiVersion audit.k8s.io/v1 (v1beta1 was removed in 1.24, k/k#108092)'},
	{file: 'encryption-config.yaml', apiVersion: 'apiserver.config.k8s.io/v1', kind: 'EncryptionConfiguration', since: 13, fix: 'use apiVersion apiserver.config.k8s.io/v1, kind EncryptionConfiguration'},
	// The pre-1.13 form survives as an alias only while the file is decoded leniently (k/k#124912).
	{file: 'encryption-config.yaml', apiVersion: 'v1', kind: 'EncryptionConfig', until: 31, fix: 'use apiVersion apiserver.config.k8s.io/v1, kind EncryptionConfiguration'},
	{file: 'kube-scheduler.yaml', apiVersion: 'kubescheduler.config.k8s.io/v1alpha1', kind: 'KubeSchedulerConfiguration', until: 19, fix: 'use the version this tool renders for the release'},
	{file: 'kube-scheduler.yaml', apiVersion: 'kubescheduler.config.k8s.io/v1alpha2', kind: 'KubeSchedulerConfiguration', since: 18, until: 19, fix: 'use the version this tool renders for the release'},
	{file: 'kube-scheduler.yaml', apiVersion: 'kubescheduler.config.k8s.io/v1beta1', kind: 'KubeSchedulerConfiguration', since: 19, until: 23, fix: 'use the version this tool renders for the release'},
	{file: 'kube-scheduler.yaml', apiVersion: 'kubescheduler.config.k8s.io/v1beta2', kind: 'KubeSchedulerConfiguration', since: 22, until: 28, fix: 'use the version this tool renders for the release'},
	{file: 'kube-scheduler.yaml', apiVersion: 'kubescheduler.config.k8s.io/v1beta3', kind: 'KubeSchedulerConfiguration', since: 23, until: 29, fix: 'use the version this tool renders for the release'},
	{file: 'kube-scheduler.yaml', apiVersion: 'kubescheduler.config.k8s.io/v1', kind: 'KubeSchedulerConfiguration', since: 25, fix: 'use the version this tool renders for the release'},
];

/** Flags a release refuses to start with ("unknown flag" or a rejected value), for the fit check. */
export const retiredFlags: Array<{component: Component; name: string; value?: RegExp; removedIn: number; fix: string}> = [
	{component: 'kube-apiserver', name: 'feature-gates', value: /DynamicAuditing/, removedIn: 19, fix: 'drop the DynamicAuditing gate (k/k#91502)'},
	{component: 'kube-apiserver', name: 'audit-dynamic-configuration', removedIn: 19, fix: 'drop it; dynamic audit backends were removed (k/k#91502)'},
	{component: 'kube-apiserver', name: 'kubelet-https', removedIn: 22, fix: 'drop it; the kubelet is always reached over https (k/k#101178)'},
	{component: 'kube-apiserver', name: 'insecure-port', removedIn: 24, fix: 'drop it; the insecure port is gone (k/k#95856)'},
	{component: 'kube-apiserver', name: 'experimental-encryption-provider-config', removedIn: 24, fix: 'write --encryption-provider-config (k/k#108423)'},
	{component: 'kube-controller-manager', name: 'port', removedIn: 24, fix: 'drop it; only the secure port remains'},
	{component: 'kube-controller-manager', name: 'address', removedIn: 24, fix: 'write --bind-address'},
	{component: 'kube-controller-manager', name: 'experimental-cluster-signing-duration', removedIn: 25, fix: 'write --cluster-signing-duration'},
	{component: 'kube-controller-manager', name: 'pod-eviction-timeout', removedIn: 27, fix: 'drop it; taint-based eviction replaced it'},
	{component: 'kube-controller-manager', name: 'enable-taint-manager', removedIn: 27, fix: 'drop it'},
	{component: 'kube-scheduler', name: 'port', removedIn: 24, fix: 'drop it; only the secure port remains'},
	{component: 'kube-scheduler', name: 'address', removedIn: 24, fix: 'write --bind-address'},
	{component: 'kube-scheduler', name: 'policy-config-file', removedIn: 23, fix: 'move the policy into a KubeSchedulerConfiguration profile'},
	{component: 'kube-scheduler', name: 'algorithm-provider', removedIn: 23, fix: 'move it into a KubeSchedulerConfiguration profile'},
	{component: 'kube-scheduler', name: 'use-legacy-policy-config', removedIn: 23, fix: 'drop it'},
	...(['kube-apiserver', 'kube-controller-manager', 'kube-scheduler'] as const).flatMap(component => ['logtostderr', 'alsologtostderr', 'log-dir', 'log-file', 'log-file-max-size', 'skip-headers', 'skip-log-headers', 'stderrthreshold', 'one-output', 'add-dir-header'].map(name => ({
		component, name, removedIn: 26, fix: 'drop it; klog flags were removed (KEP-2845), logs go to stderr',
	}))),
];

/** Flags a release does not know before a minor release (pflag: "unknown flag"). */
export const introducedFlags: Array<{component: Component; name: string; since: number; fix: string}> = [
	{component: 'kube-controller-manager', name: 'cluster-signing-duration', since: 19, fix: 'write --experimental-cluster-signing-duration before 1.19'},
	{component: 'kube-apiserver', name: 'audit-log-batch-max-wait', since: 11, fix: 'drop it'},
	{component: 'kube-apiserver', name: 'shutdown-send-retry-after', since: 23, fix: 'drop it; before 1.23 nothing shortens a stop with open watches'},
	{component: 'kube-apiserver', name: 'shutdown-watch-termination-grace-period', since: 27, fix: 'drop it, or use --shutdown-send-retry-after=true (1.23-1.26)'},
];

/** Flags a release requires. */
export const requiredFlags: Array<{component: Component; names: string[]; since: number; fix: string}> = [
	{component: 'kube-apiserver', names: ['service-account-issuer', 'service-account-signing-key-file'], since: 20, fix: 'add --service-account-issuer and --service-account-signing-key-file (k/k#95896)'},
];
