import type {ResolvedConfig} from '../config/load.js';
import type {Material} from '../pki/material.js';
import {apiserverFlagsFor, type FlagContext} from '../versions.js';
import {renderTemplate} from './templates.js';

/** Which install step puts an artifact on the masters. */
export type ArtifactStep = 'certs' | 'encryption' | 'audit' | 'units';

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
	return {
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
	};
}

export function renderUnit(config: ResolvedConfig, masterIp: string): string {
	const flags = apiserverFlagsFor(config.kubeVersion, flagContext(config, masterIp));
	return renderTemplate('kube-apiserver.service', {
		K8S_DIR: config.paths.k8sDir,
		BIN_DIR: config.paths.binDir,
		FLAGS: flags.map((flag, index) => `  ${flag}${index < flags.length - 1 ? ' \\' : ''}`).join('\n'),
	});
}

const base64 = (text: string) => Buffer.from(text).toString('base64');

export function renderAdminKubeconfig(config: ResolvedConfig, material: Material): string {
	return renderTemplate('admin.kubeconfig', {
		CLUSTER: config.name,
		SERVER: `https://${config.masters[0]!.ip}:6443`,
		CA_DATA: base64(material.ca.certPem),
		CERT_DATA: base64(material.leaves.admin.certPem),
		KEY_DATA: base64(material.leaves.admin.keyPem),
	});
}

/** Every file the install makes, with the tutorial's names; the same list feeds render, plan and apply. */
export function renderArtifacts(config: ResolvedConfig, material: Material, etcdFiles: {ca?: string; cert?: string; key?: string} = {}): Artifact[] {
	const {certDir, configDir} = config.paths;
	const cert = (name: string, content: string, secret: boolean): Artifact => ({
		name, content, mode: secret ? 0o600 : 0o644, secret, remote: {step: 'certs', path: `${certDir}/${name}`},
	});
	const artifacts: Artifact[] = [
		cert('ca.pem', material.ca.certPem, false),
		cert('kubernetes.pem', material.leaves.kubernetes.certPem, false),
		cert('kubernetes-key.pem', material.leaves.kubernetes.keyPem, true),
		cert('proxy-client.pem', material.leaves['proxy-client'].certPem, false),
		cert('proxy-client-key.pem', material.leaves['proxy-client'].keyPem, true),
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

	if (!material.ca.imported) {
		artifacts.push({name: 'ca-key.pem', content: material.ca.keyPem, mode: 0o600, secret: true});
	}

	artifacts.push(
		{name: 'admin.pem', content: material.leaves.admin.certPem, mode: 0o644, secret: false},
		{name: 'admin-key.pem', content: material.leaves.admin.keyPem, mode: 0o600, secret: true},
		{name: 'admin.kubeconfig', content: renderAdminKubeconfig(config, material), mode: 0o600, secret: true},
		{
			name: 'encryption-config.yaml',
			content: renderTemplate('encryption-config.yaml', {ENCRYPTION_KEY: material.encryptionKey}),
			mode: 0o600,
			secret: true,
			remote: {step: 'encryption', path: `${configDir}/encryption-config.yaml`},
		},
		{name: 'audit-policy.yaml', content: renderTemplate('audit-policy.yaml', {}), mode: 0o644, secret: false, remote: {step: 'audit', path: `${configDir}/audit-policy.yaml`}},
		...config.masters.map((master): Artifact => ({
			name: `kube-apiserver-${master.ip}.service`,
			content: renderUnit(config, master.ip),
			mode: 0o644,
			secret: false,
			remote: {step: 'units', path: '/etc/systemd/system/kube-apiserver.service', host: master.name},
		})),
	);
	return artifacts;
}
