import {z} from 'zod';
import {cidrContains, cidrHasHostBits, isIpv4, isSshHostName, parseBastion, parseCidr, parseEndpoint} from './network.js';
import {parseVersion, supportedMinors} from '../versions.js';

/**
 * The cluster config. Every refinement's message is the problem, a unit separator, then the fix,
 * so that the loader can print one line naming the field, the value and the fix (zod's own
 * messages never hold that character).
 */
export const fixSeparator = '\u001F';
const problem = (text: string, fix: string) => ({message: `${text}${fixSeparator}${fix}`});

// Values reach remote shells quoted, but we also refuse anything a path or name never needs.
const safePath = z.string()
	.refine(value => value.startsWith('/'), problem('must be an absolute path', 'write a path starting with /, e.g. /opt/k8s/bin'))
	.refine(value => /^\/[\w./-]*$/.test(value) && !value.includes('..'), problem('may hold only letters, digits, _ . - and /', 'remove spaces, quotes and shell characters from the path'));

const localFile = z.string().min(1, problem('is empty', 'give the path of a local file'))
	.refine(value => !/[\n\r\0]/.test(value), problem('holds a control character', 'write the path on one line'));

const hostName = z.string().refine(
	value => /^[a-z\d]([a-z\d-]{0,61}[a-z\d])?$/.test(value),
	problem('is not a valid host name', 'use lower-case letters, digits and -, starting and ending with a letter or digit (RFC 1123), e.g. k8smaster01'),
);

const ipv4 = z.string().refine(isIpv4, problem('is not an IPv4 address', 'write four numbers 0-255 separated by dots, e.g. 172.24.8.71'));

const subjectPart = z.string().max(64).refine(
	value => /^[\w .,@-]*$/.test(value),
	problem('holds characters not allowed in a certificate subject here', 'use letters, digits, spaces and . , @ - _'),
);

// Written into a systemd ExecStart line: no spaces, quotes or shell characters.
const extraFlag = z.string().refine(
	value => /^--[a-z\d][a-z\d-]*(=[\w.,:/=@+*-]*)?$/.test(value),
	problem('is not a flag this tool can write into a unit', 'write --name=value without spaces or quotes, e.g. --oidc-issuer-url=https://issuer.example.com'),
);

// The name ssh is given instead of the IP, so that the operator's `Host` blocks (User, Port, IdentityFile, ProxyJump) apply.
const sshHost = z.string().refine(isSshHostName, problem('is not a name ssh can be given', 'write an address, a DNS name or a Host alias of your ssh config (letters, digits, _ . -, not starting with -), e.g. k8smaster01.example.com'));

const master = z.strictObject({name: hostName, ip: ipv4, sshHost: sshHost.optional()});

const sshUser = z.string().refine(value => /^[a-z_][\w-]{0,31}$/.test(value), problem('is not a user name', 'use a POSIX user name, e.g. root'));

const bastion = z.string().refine(value => parseBastion(value) !== undefined, problem('is not [USER@]HOST[:PORT]', 'write the jump host as ssh -J takes it, e.g. jump@bastion.example.com:2222, or a Host alias of your ssh config'));

// What kubectl and verify reach the apiservers through, as kubeadm's setting of that name.
const controlPlaneEndpoint = z.string().refine(
	value => parseEndpoint(value) !== undefined,
	problem('is not HOST[:PORT]', 'write a virtual IP or the DNS name of a load balancer in front of every apiserver, with an optional port (default 6443) and no https://, e.g. 172.24.8.70 or k8s-api.example.com:6443'),
);

const etcdEndpoint = z.string().refine(value => {
	const match = /^https:\/\/([^/:]+):(\d{1,5})$/.exec(value);
	return match !== null && (isIpv4(match[1]!) || /^[a-z\d.-]+$/.test(match[1]!)) && Number(match[2]) > 0 && Number(match[2]) < 65_536;
}, problem('is not an etcd client URL', 'write https://HOST:PORT with no path, e.g. https://172.24.8.71:2379'));

const portRange = z.string().refine(value => {
	const match = /^(\d{1,5})-(\d{1,5})$/.exec(value);
	return match !== null && Number(match[1]) >= 1 && Number(match[1]) < Number(match[2]) && Number(match[2]) <= 65_535;
}, problem('is not a port range', 'write LOW-HIGH with LOW < HIGH <= 65535, e.g. 30000-32767'));

const serviceCidr = z.string()
	.refine(value => parseCidr(value) !== undefined, problem('is not an IPv4 CIDR', 'write ADDRESS/PREFIX, e.g. 10.254.0.0/16'))
	.refine(value => !cidrHasHostBits(value), problem('has host bits set', 'use the network address, e.g. 10.254.0.0/16 rather than 10.254.0.1/16'))
	.refine(value => (parseCidr(value)?.prefix ?? 0) >= 12 && (parseCidr(value)?.prefix ?? 32) <= 28, problem('has a prefix outside /12 to /28', 'choose a service range between /12 and /28, e.g. 10.254.0.0/16'));

export const configSchema = z.strictObject({
	name: hostName.default('kubernetes'),
	version: z.string().refine(value => {
		const version = parseVersion(value);
		return version !== undefined && version.major === 1 && version.minor >= supportedMinors.oldest;
	}, problem(`is not a supported Kubernetes release`, `write vMAJOR.MINOR.PATCH from v1.${supportedMinors.oldest}.0 on, e.g. v1.28.7`)),
	binaries: z.strictObject({
		tarball: localFile.optional(),
		url: z.string().refine(value => /^https:\/\/[^\s'"`$]+$/.test(value), problem('is not an https URL', 'write e.g. https://dl.k8s.io/v1.28.7/kubernetes-server-linux-amd64.tar.gz')).optional(),
		sha256: z.string().refine(value => /^[a-f\d]{64}$/.test(value), problem('is not a sha256 hex digest', 'write the 64 hex digits from the release\'s .sha256 file')).optional(),
		include: z.array(z.string().refine(value => /^[\w-]+$/.test(value), problem('is not a binary name', 'write a file name from kubernetes/server/bin, e.g. kube-apiserver'))).min(1).optional(),
		/** How the binaries cross the wire: gzip-compressed and unpacked by the master, or as they are. */
		transfer: z.enum(['auto', 'compressed', 'raw']).default('auto'),
	}).refine(value => (value.tarball === undefined) !== (value.url === undefined), problem('needs exactly one of tarball and url', 'set binaries.tarball to a local kubernetes-server-linux-amd64.tar.gz, or binaries.url to download it')),
	masters: z.array(master)
		.min(1, problem('lists no master', 'list each master as {name: k8smaster01, ip: 172.24.8.71}'))
		.max(99, problem('lists more than 99 masters', 'list fewer masters')),
	controlPlaneEndpoint: controlPlaneEndpoint.optional(),
	ssh: z.strictObject({
		// Given to ssh only when set: otherwise the operator's ssh config (User, Port) or ssh's own defaults apply.
		user: sshUser.optional(),
		port: z.number().int().min(1).max(65_535).optional(),
		bastion: bastion.optional(),
		identityFile: localFile.optional(),
		configFile: localFile.optional(),
		knownHostsFile: localFile.optional(),
		// Host keys are always checked; accept-new trusts a host seen for the first time, and only when asked.
		hostKeys: z.enum(['strict', 'accept-new']).default('strict'),
		sudo: z.boolean().default(false),
	}).prefault({}),
	etcd: z.strictObject({
		endpoints: z.array(etcdEndpoint).min(1, problem('lists no endpoint', 'list the etcd client URLs, e.g. [https://172.24.8.71:2379]')),
		caFile: localFile.optional(),
		certFile: localFile.optional(),
		keyFile: localFile.optional(),
	}).refine(value => (value.certFile === undefined) === (value.keyFile === undefined), problem('has only one of certFile and keyFile', 'give both etcd.certFile and etcd.keyFile, or neither to use the apiserver certificate')),
	network: z.strictObject({
		serviceCidr,
		nodePortRange: portRange.default('30000-32767'),
		clusterDomain: z.string().refine(value => /^[a-z\d]([a-z\d-]*[a-z\d])?(\.[a-z\d]([a-z\d-]*[a-z\d])?)*$/.test(value), problem('is not a DNS domain', 'write e.g. cluster.local, without a trailing dot')).default('cluster.local'),
	}),
	paths: z.strictObject({
		k8sDir: safePath.default('/data/k8s/k8s'),
		binDir: safePath.default('/opt/k8s/bin'),
		certDir: safePath.default('/etc/kubernetes/cert'),
		configDir: safePath.default('/etc/kubernetes'),
		nginxDir: safePath.default('/opt/k8s/kube-nginx'),
	}).prefault({}),
	// kube-nginx runs the masters' own nginx (distribution package), never one built by this tool.
	nginx: z.strictObject({
		binary: safePath.default('/usr/sbin/nginx'),
		streamModule: z.union([z.literal('builtin'), safePath]).default('/usr/lib/nginx/modules/ngx_stream_module.so'),
	}).prefault({}),
	serviceAccount: z.strictObject({
		signingKey: z.enum(['dedicated', 'ca']).default('dedicated'),
	}).prefault({}),
	extraFlags: z.strictObject({
		'kube-apiserver': z.array(extraFlag).default([]),
		'kube-controller-manager': z.array(extraFlag).default([]),
		'kube-scheduler': z.array(extraFlag).default([]),
	}).prefault({}),
	templatesDir: localFile.optional(),
	ca: z.strictObject({certFile: localFile, keyFile: localFile}).optional(),
	certificates: z.strictObject({
		subject: z.strictObject({
			C: subjectPart.default('CN'),
			ST: subjectPart.default('Shanghai'),
			L: subjectPart.default('Shanghai'),
			O: subjectPart.default('k8s'),
			OU: subjectPart.default('System'),
		}).prefault({}),
		extraSans: z.array(z.string().refine(value => isIpv4(value) || /^[a-z\d*]([a-z\d.-]*[a-z\d])?$/.test(value), problem('is neither an IPv4 address nor a DNS name', 'write an address like 203.0.113.10 or a name like api.example.com'))).default([]),
		validityDays: z.number().int().min(1).max(3650).default(365),
		// `certs` exits 1, and status and verify warn, when a certificate ends within this many days.
		warnDays: z.number().int().min(1).max(3650).default(30),
		// The CA key on the masters lets the controller-manager sign kubelet certificates (TLS bootstrap).
		clusterSigning: z.boolean().default(true),
	}).prefault({}),
	encryption: z.strictObject({keyFile: localFile.optional()}).prefault({}),
	// cis: hardened to the CIS Kubernetes Benchmark (README: CIS); tutorial: the tutorial's own flags and 644 files.
	profile: z.enum(['cis', 'tutorial']).default('cis'),
	// Accepted from older configs; the tool calls the apiserver itself and runs no kubectl here.
	kubectl: z.string().optional(),
	timeouts: z.strictObject({
		commandSeconds: z.number().int().min(1).max(3600).default(120),
		readySeconds: z.number().int().min(5).max(3600).default(180),
	}).prefault({}),
}).superRefine((config, context) => {
	const seen = new Map<string, number>();
	for (const [index, entry] of config.masters.entries()) {
		for (const key of ['name', 'ip', 'sshHost'] as const) {
			const previous = seen.get(`${key}:${entry[key]}`);
			if (entry[key] === undefined) {
				continue;
			}

			if (previous === undefined) {
				seen.set(`${key}:${entry[key]}`, index);
			} else {
				context.addIssue({code: 'custom', path: ['masters', index, key], input: entry[key], ...problem(`repeats masters[${previous}].${key}`, `give every master its own ${key}`)});
			}
		}
	}

	const cidr = parseCidr(config.network.serviceCidr);
	if (cidr) {
		for (const [index, entry] of config.masters.entries()) {
			if (isIpv4(entry.ip) && cidrContains(cidr, entry.ip)) {
				context.addIssue({code: 'custom', path: ['network', 'serviceCidr'], input: config.network.serviceCidr, ...problem(`contains masters[${index}].ip ${entry.ip}`, 'choose a service range that no host uses, e.g. 10.254.0.0/16')});
			}
		}
	}

	const endpoint = config.controlPlaneEndpoint === undefined ? undefined : parseEndpoint(config.controlPlaneEndpoint);
	if (endpoint) {
		// One master's own address is gone with that master: the endpoint must be in front of all of them.
		const index = config.masters.findIndex(entry => entry.ip === endpoint.host || entry.name === endpoint.host);
		if (index >= 0) {
			context.addIssue({code: 'custom', path: ['controlPlaneEndpoint'], input: config.controlPlaneEndpoint, ...problem(`is the address of masters[${index}] (${config.masters[index]!.name}): kubectl through it fails when that master does`, 'give a virtual IP (keepalived) or a load balancer\'s address in front of every apiserver, or remove the setting to get one kubectl context per master')});
		} else if (cidr && isIpv4(endpoint.host) && cidrContains(cidr, endpoint.host)) {
			context.addIssue({code: 'custom', path: ['controlPlaneEndpoint'], input: config.controlPlaneEndpoint, ...problem(`lies in network.serviceCidr ${config.network.serviceCidr}`, 'give an address outside the service range, reachable from this machine')});
		}
	}
});

export type ClusterConfigInput = z.input<typeof configSchema>;
export type ClusterConfig = z.output<typeof configSchema>;
export type Master = ClusterConfig['masters'][number];
