import path from 'node:path';
import type {ResolvedConfig} from '../config/load.js';
import {InputError} from '../errors.js';
import {apiserverPort} from '../config/network.js';
import {firstKeyName, type EncryptionKeys, type LeafName, type Material} from '../pki/material.js';
import {atLeast, componentFlagsFor, schedulerConfigVersion, type Component, type FlagContext} from '../versions.js';
import {renderTemplate} from './templates.js';

/** Which install step puts an artifact on the masters. */
export type ArtifactStep = 'certs' | 'encryption' | 'audit' | 'units' | 'controller-units';

/**
 * The step that places a component's unit: the controller-manager's and the scheduler's only once
 * every apiserver runs this release. A unit on disk is what systemd starts after any daemon-reload
 * (the apiservers' restart does one), and the real controller-manager exits, to be started again by
 * systemd, when it loses its lease, as it may while apiservers restart: placed earlier, a minor
 * upgrade could start a controller-manager newer than an apiserver it talks to.
 */
const unitStep = (component: Component): ArtifactStep => (component === 'kube-apiserver' ? 'units' : 'controller-units');

/** One rendered file: where it goes on the masters (if anywhere), its mode, and whether it is secret. */
export type Artifact = {
	/** The tutorial's local file name. */
	name: string;
	content: string;
	mode: number;
	secret: boolean;
	/** Absent for files that stay on the workstation (the CA key, the admin credentials). */
	remote?: {step: ArtifactStep; path: string; host?: string};
};

export function flagContext(config: ResolvedConfig, masterIp: string): FlagContext {
	const {certDir, configDir, k8sDir} = config.paths;
	const customEtcd = config.etcd.certFile !== undefined;
	const dedicated = config.serviceAccount.signingKey === 'dedicated';
	return {
		clusterName: config.name,
		masterIp,
		etcdServers: config.etcd.endpoints.join(','),
		serviceCidr: config.network.serviceCidr,
		nodePortRange: config.network.nodePortRange,
		apiserverCount: config.masters.length,
		certDir,
		configDir,
		k8sDir,
		etcdCaFile: config.etcd.caFile ? `${certDir}/etcd-ca.pem` : `${certDir}/ca.pem`,
		etcdCertFile: customEtcd ? `${certDir}/etcd-client.pem` : `${certDir}/kubernetes.pem`,
		etcdKeyFile: customEtcd ? `${certDir}/etcd-client-key.pem` : `${certDir}/kubernetes-key.pem`,
		serviceAccountIssuer: `https://kubernetes.default.svc.${config.network.clusterDomain}`,
		serviceAccountPublicFile: `${certDir}/${dedicated ? 'sa.pub' : 'ca.pem'}`,
		serviceAccountSigningFile: `${certDir}/${dedicated ? 'sa.key' : 'ca-key.pem'}`,
		acceptCaSignedTokens: dedicated && config.ca !== undefined,
		clusterSigning: config.certificates.clusterSigning,
		cis: config.profile === 'cis',
	};
}

export const components: readonly Component[] = ['kube-apiserver', 'kube-controller-manager', 'kube-scheduler'];

/** Where a release's binaries sit on a master (binDir/v1.28.7): a unit starts its own release's, so a newer one can be placed beside it. */
export const releaseBinDir = (config: ResolvedConfig) => `${config.paths.binDir}/${config.version}`;

/** Where systemd reads a unit of this install. */
export const unitPath = (name: string) => `/etc/systemd/system/${name}.service`;

/** Folders the units need before they start: working directories (else 200/CHDIR), and nginx's conf/ and logs/ (nginx -t needs logs/). */
export function workingDirectories(config: ResolvedConfig): string[] {
	const {k8sDir, nginxDir} = config.paths;
	return [...components.map(component => `${k8sDir}/${component}`), `${nginxDir}/conf`, `${nginxDir}/logs`];
}

export function caKeyOnMasters(config: ResolvedConfig): boolean {
	return config.certificates.clusterSigning || config.serviceAccount.signingKey === 'ca';
}

/** The systemd unit of one control-plane component on one master. */
export function renderUnit(config: ResolvedConfig, masterIp: string, component: Component = 'kube-apiserver'): string {
	const flags = componentFlagsFor(component, config.kubeVersion, flagContext(config, masterIp), config.extraFlags[component]);
	return renderTemplate(`${component}.service`, {
		K8S_DIR: config.paths.k8sDir,
		// The release's folder, not binDir's links: a unit changes, and restarts, only when its release does.
		BIN_DIR: releaseBinDir(config),
		FLAGS: flags.map((flag, index) => `  ${flag}${index < flags.length - 1 ? ' \\' : ''}`).join('\n'),
	}, config.templatesDir);
}

const base64 = (text: string) => Buffer.from(text).toString('base64');

function renderKubeconfig(config: ResolvedConfig, material: Material, user: string, leaf: LeafName, server: string): string {
	return renderTemplate('kubeconfig', {
		CLUSTER: config.name,
		SERVER: server,
		USER: user,
		CA_DATA: base64(material.ca.certPem),
		CERT_DATA: base64(material.leaves[leaf].certPem),
		KEY_DATA: base64(material.leaves[leaf].keyPem),
	}, config.templatesDir);
}

/** One way kubectl reaches the apiservers: a context of the admin kubeconfig, its cluster entry and server. */
export type AdminContext = {context: string; cluster: string; server: string};

/**
 * The admin kubeconfig's contexts, the first current. It is used on the workstation, which has no
 * kube-nginx: through the control-plane endpoint when one is set; else one context per master, named
 * after it, so that `kubectl --context <master>` still reaches the cluster while another master is down.
 */
export function adminContexts(config: ResolvedConfig): AdminContext[] {
	if (config.controlPlane) {
		return [{context: `admin@${config.name}`, cluster: config.name, server: `https://${config.controlPlane.host}:${config.controlPlane.port}`}];
	}

	return config.masters.map(master => ({context: master.name, cluster: `${config.name}-${master.name}`, server: `https://${master.ip}:${apiserverPort}`}));
}

export function renderAdminKubeconfig(config: ResolvedConfig, material: Material): string {
	const contexts = adminContexts(config);
	const caData = base64(material.ca.certPem);
	return renderTemplate('admin.kubeconfig', {
		CLUSTERS: contexts.map(each => `  - name: ${each.cluster}\n    cluster:\n      certificate-authority-data: ${caData}\n      server: ${each.server}`).join('\n'),
		CONTEXTS: contexts.map(each => `  - name: ${each.context}\n    context:\n      cluster: ${each.cluster}\n      user: admin`).join('\n'),
		CURRENT_CONTEXT: contexts[0]!.context,
		CERT_DATA: base64(material.leaves.admin.certPem),
		KEY_DATA: base64(material.leaves.admin.keyPem),
	}, config.templatesDir);
}

/** Where the components on a master reach the apiservers: the local kube-nginx. */
export const proxyServer = 'https://127.0.0.1:8443';

/** kube-nginx's config; `drained`: a master whose apiserver is taken out of the upstreams while it restarts. */
export function renderNginxConfig(config: ResolvedConfig, drained?: string): string {
	return renderTemplate('kube-nginx.conf', {
		// Distribution packages build the stream module as a dynamic module that a config of our own must load.
		LOAD_MODULE: config.nginx.streamModule === 'builtin' ? '# stream module built in' : `load_module ${config.nginx.streamModule};`,
		UPSTREAMS: config.masters.map(master => `        server ${master.ip}:6443 ${master.name === drained ? 'down' : 'max_fails=3 fail_timeout=30s'};`).join('\n'),
	}, config.templatesDir);
}

/**
 * The encryption config for these keys, in their order: the apiserver encrypts with the first and
 * decrypts with any, so each phase of a key rotation is this file with another list.
 */
export function renderEncryptionConfig(config: ResolvedConfig, keys: EncryptionKeys): Artifact {
	const [write] = keys;
	const block = keys.map(key => `            - name: ${key.name}\n              secret: ${key.secret}`).join('\n');
	const content = renderTemplate('encryption-config.yaml', {ENCRYPTION_KEYS: block}, config.templatesDir, {
		// An operator's copy made before there could be more keys names key1 itself around {{ENCRYPTION_KEY}}.
		...(keys.length === 1 && write.name === firstKeyName ? {ENCRYPTION_KEY: write.secret} : {}),
	});
	// The keys are indented for a line of their own: after other text on its line the first key would sit
	// deeper than the others, and the YAML would no longer list them as siblings (or not parse).
	if (content.includes(block) && !content.startsWith(block) && !content.includes(`\n${block}`)) {
		throw new InputError('templatesDir', path.join(config.templatesDir ?? 'templates', 'encryption-config.yaml'), 'has {{ENCRYPTION_KEYS}} after other text on its line', 'put {{ENCRYPTION_KEYS}} alone at the start of its line, as templates/encryption-config.yaml does');
	}

	return {
		name: 'encryption-config.yaml',
		content,
		mode: 0o600,
		secret: true,
		remote: {step: 'encryption', path: `${config.paths.configDir}/encryption-config.yaml`},
	};
}

/** Files that are not secret: 0600 like the rest under the CIS profile (the benchmark's 1.1 checks), 0644 as the tutorial leaves them. */
export function publicFileMode(config: ResolvedConfig): number {
	return config.profile === 'tutorial' ? 0o644 : 0o600;
}

/** Every file the install makes, with the tutorial's names; the same list feeds render, plan and apply. */
export function renderArtifacts(config: ResolvedConfig, material: Material, etcdFiles: {ca?: string; cert?: string; key?: string} = {}): Artifact[] {
	const {certDir, configDir, nginxDir} = config.paths;
	const readable = publicFileMode(config);
	const cert = (name: string, content: string, secret: boolean): Artifact => ({
		name, content, mode: secret ? 0o600 : readable, secret, remote: {step: 'certs', path: `${certDir}/${name}`},
	});
	const leafFiles = (leaf: LeafName) => [cert(`${leaf}.pem`, material.leaves[leaf].certPem, false), cert(`${leaf}-key.pem`, material.leaves[leaf].keyPem, true)];
	const artifacts: Artifact[] = [
		cert('ca.pem', material.ca.certPem, false),
		// The controller-manager signs the kubelets' certificates with it (--cluster-signing-key-file),
		// and with signingKey: ca the service-account tokens: only then does it leave the workstation.
		...(caKeyOnMasters(config) ? [cert('ca-key.pem', material.ca.keyPem, true)] : []),
		...leafFiles('kubernetes'),
		...leafFiles('proxy-client'),
		...leafFiles('kube-controller-manager'),
		...leafFiles('kube-scheduler'),
	];
	if (material.serviceAccount) {
		artifacts.push(cert('sa.pub', material.serviceAccount.publicKeyPem, false), cert('sa.key', material.serviceAccount.privateKeyPem, true));
	}

	if (etcdFiles.ca) {
		artifacts.push(cert('etcd-ca.pem', etcdFiles.ca, false));
	}

	if (etcdFiles.cert && etcdFiles.key) {
		artifacts.push(cert('etcd-client.pem', etcdFiles.cert, false), cert('etcd-client-key.pem', etcdFiles.key, true));
	}

	if (!material.ca.imported && !caKeyOnMasters(config)) {
		artifacts.push({name: 'ca-key.pem', content: material.ca.keyPem, mode: 0o600, secret: true});
	}

	const kubeconfig = (component: 'kube-controller-manager' | 'kube-scheduler'): Artifact => ({
		name: `${component}.kubeconfig`,
		content: renderKubeconfig(config, material, `system:${component}`, component, proxyServer),
		mode: 0o600,
		secret: true,
		remote: {step: 'certs', path: `${configDir}/${component}.kubeconfig`},
	});
	const perMaster = (component: Component) => config.masters.map((master): Artifact => ({
		name: `${component}-${master.ip}.service`,
		content: renderUnit(config, master.ip, component),
		mode: readable,
		secret: false,
		remote: {step: unitStep(component), path: unitPath(component), host: master.name},
	}));
	artifacts.push(
		kubeconfig('kube-controller-manager'),
		kubeconfig('kube-scheduler'),
		{name: 'admin.pem', content: material.leaves.admin.certPem, mode: readable, secret: false},
		{name: 'admin-key.pem', content: material.leaves.admin.keyPem, mode: 0o600, secret: true},
		{name: 'admin.kubeconfig', content: renderAdminKubeconfig(config, material), mode: 0o600, secret: true},
		renderEncryptionConfig(config, material.encryptionKeys),
		{name: 'audit-policy.yaml', content: renderTemplate('audit-policy.yaml', {}, config.templatesDir), mode: readable, secret: false, remote: {step: 'audit', path: `${configDir}/audit-policy.yaml`}},
		...components.flatMap(component => perMaster(component)),
		{
			name: 'kube-scheduler.yaml',
			content: renderTemplate('kube-scheduler.yaml', {
				API_VERSION: schedulerConfigVersion(config.kubeVersion),
				KUBECONFIG: `${configDir}/kube-scheduler.kubeconfig`,
				// Before 1.22 the config file, not --port, decides the plain-HTTP port (default 0.0.0.0:10251,
				// with /metrics and /debug/pprof unauthenticated): loopback only.
				INSECURE_SERVING: atLeast(config.kubeVersion, 22) ? '' : 'healthzBindAddress: 127.0.0.1:10251\nmetricsBindAddress: 127.0.0.1:10251',
				// What --profiling=false cannot do beside --config (CIS 1.4.1).
				ENABLE_PROFILING: String(config.profile === 'tutorial'),
			}, config.templatesDir).trimEnd() + '\n',
			mode: readable,
			secret: false,
			remote: {step: unitStep('kube-scheduler'), path: `${configDir}/kube-scheduler.yaml`},
		},
		{name: 'kube-nginx.conf', content: renderNginxConfig(config), mode: readable, secret: false, remote: {step: 'units', path: `${nginxDir}/conf/kube-nginx.conf`}},
		{
			name: 'kube-nginx.service',
			content: renderTemplate('kube-nginx.service', {NGINX: config.nginx.binary, NGINX_DIR: nginxDir}, config.templatesDir),
			mode: readable,
			secret: false,
			remote: {step: 'units', path: unitPath('kube-nginx')},
		},
	);
	return artifacts;
}
