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
};

type FlagRule = {
	name: string;
	/** undefined: a bare boolean flag, written without a value. */
	value?: (context: FlagContext) => string;
	/** First minor release that gets the flag. */
	since?: number;
	/** First minor release that no longer gets it (removed, or no longer useful). */
	until?: number;
};

const k = (context: FlagContext, file: string) => `${context.certDir}/${file}`;

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
	{name: 'audit-log-maxage', value: () => '15'},
	{name: 'audit-log-maxbackup', value: () => '3'},
	{name: 'audit-log-maxsize', value: () => '100'},
	{name: 'audit-log-mode', value: () => 'batch'},
	{name: 'audit-log-truncate-enabled'},
	{name: 'audit-log-batch-buffer-size', value: () => '20000'},
	{name: 'audit-log-batch-max-size', value: () => '2'},
	// Without a max wait the batch writer busy-loops a core on every master (seen on 1.28).
	{name: 'audit-log-batch-max-wait', value: () => '1s', since: 15},
	{name: 'audit-log-path', value: c => `${c.k8sDir}/kube-apiserver/audit.log`},
	{name: 'audit-policy-file', value: c => `${c.configDir}/audit-policy.yaml`},
	{name: 'profiling'},
	{name: 'anonymous-auth', value: () => 'false'},
	{name: 'client-ca-file', value: c => k(c, 'ca.pem')},
	{name: 'enable-bootstrap-token-auth'},
	{name: 'requestheader-allowed-names', value: () => 'aggregator'},
	{name: 'requestheader-client-ca-file', value: c => k(c, 'ca.pem')},
	{name: 'requestheader-extra-headers-prefix', value: () => 'X-Remote-Extra-'},
	{name: 'requestheader-group-headers', value: () => 'X-Remote-Group'},
	{name: 'requestheader-username-headers', value: () => 'X-Remote-User'},
	// Up to 1.19 the tutorial verifies service-account tokens with the CA certificate.
	{name: 'service-account-key-file', value: c => k(c, 'ca.pem'), until: 20},
	// From 1.20 issuer and signing key are required (k/k#95896): a dedicated key pair.
	{name: 'service-account-key-file', value: c => k(c, 'sa.pub'), since: 20},
	{name: 'service-account-signing-key-file', value: c => k(c, 'sa.key'), since: 20},
	{name: 'service-account-issuer', value: c => c.serviceAccountIssuer, since: 20},
	{name: 'authorization-mode', value: () => 'Node,RBAC'},
	// Turns on every alpha API; kept only where the tutorial's exact flags are wanted.
	{name: 'runtime-config', value: () => 'api/all=true', until: 15},
	{name: 'enable-admission-plugins', value: () => 'NodeRestriction'},
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
	// Deprecated 1.23, removed 1.26 (KEP-2845); stderr is the default anyway.
	{name: 'logtostderr', value: () => 'true', until: 23},
	{name: 'v', value: () => '2'},
];

function applies(rule: FlagRule, version: KubeVersion): boolean {
	return (rule.since === undefined || atLeast(version, rule.since))
		&& (rule.until === undefined || !atLeast(version, rule.until));
}

/** The kube-apiserver command-line flags for one master, for one release. */
export function apiserverFlagsFor(version: KubeVersion, context: FlagContext): string[] {
	return apiserverFlags
		.filter(rule => applies(rule, version))
		.map(rule => (rule.value ? `--${rule.name}=${rule.value(context)}` : `--${rule.name}`));
}

/** True when the release needs the dedicated service-account key pair (sa.key / sa.pub). */
export function needsServiceAccountKeyPair(version: KubeVersion): boolean {
	return atLeast(version, 20);
}

/** The health endpoint that says the apiserver serves requests: /readyz exists from 1.16. */
export function readinessPath(version: KubeVersion): string {
	return atLeast(version, 16) ? '/readyz' : '/healthz';
}
