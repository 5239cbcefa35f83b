import {execFileSync} from 'node:child_process';
import {existsSync, linkSync, mkdirSync, readdirSync, rmSync, symlinkSync, truncateSync, writeFileSync} from 'node:fs';
import path from 'node:path';
import {describe, expect, onTestFinished, test} from 'vitest';
import {main} from '../../source/cli.js';
import {generateKeyPair, issueCertificate} from '../../source/pki/certs.js';
import {baseConfig, elfExecutable, makeFixture, writeConfig} from '../helpers/fixture.js';

type Raw = Record<string, any>;

async function run(args: string[]) {
	const out: string[] = [];
	const err: string[] = [];
	const code = await main(args, {out: line => out.push(line), err: line => err.push(line)});
	return {code, out: out.join('\n'), err: err.join('\n')};
}

/** Sets a value at a dotted path with [index] parts, e.g. masters[0].ip. */
function set(raw: Raw, field: string, value: unknown): Raw {
	const parts = field.replaceAll(/\[(\d+)\]/g, '.$1').split('.');
	let target: any = raw;
	for (const [index, part] of parts.slice(0, -1).entries()) {
		target[part] ??= /^\d+$/.test(parts[index + 1]!) ? [] : {};
		target = target[part];
	}

	target[parts.at(-1)!] = value;
	return raw;
}

/**
 * A tarball like the release's, built in dir, with its kube-apiserver replaced: written, or made by
 * a function (a link, a pipe); more members may be added with tar's own arguments.
 */
function tarballWith(dir: string, version: string, apiserver: Buffer | ((file: string) => void) | undefined, moreMembers: string[] = []): string {
	const bin = path.join(dir, 'custom', 'kubernetes', 'server', 'bin');
	mkdirSync(bin, {recursive: true});
	for (const name of ['kube-controller-manager', 'kube-scheduler', 'kubectl']) {
		writeFileSync(path.join(bin, name), elfExecutable(name), {mode: 0o755});
	}

	if (typeof apiserver === 'function') {
		apiserver(path.join(bin, 'kube-apiserver'));
	} else if (apiserver) {
		writeFileSync(path.join(bin, 'kube-apiserver'), apiserver, {mode: 0o755});
	}

	writeFileSync(path.join(bin, 'kube-apiserver.docker_tag'), `${version}\n`);
	const file = path.join(dir, `custom-${version}.tar.gz`);
	execFileSync('tar', ['-czf', file, '-C', path.join(dir, 'custom'), 'kubernetes', ...moreMembers]);
	return file;
}

/** A member whose path climbs out of the folder it is unpacked in, under kube-apiserver's name. */
function escapingMember(dir: string): string[] {
	const base = path.join(dir, 'evil');
	mkdirSync(path.join(base, 'kubernetes', 'server', 'bin', 'kube-apiserver'), {recursive: true});
	writeFileSync(path.join(base, 'escaped'), 'x');
	return ['--absolute-names', '-C', base, 'kubernetes/server/bin/kube-apiserver/../../../../escaped'];
}

async function caFiles(dir: string, options: {expired?: boolean; leaf?: boolean; mismatched?: boolean}): Promise<{certFile: string; keyFile: string}> {
	const pair = await generateKeyPair();
	const now = options.expired ? new Date(Date.now() - (400 * 24 * 3600 * 1000)) : new Date();
	const cert = issueCertificate({subject: {CN: 'test-ca'}, profile: options.leaf ? 'client' : 'ca', validityDays: options.expired ? 30 : 365}, pair, undefined, now);
	const key = options.mismatched ? (await generateKeyPair()).privateKeyPem : pair.privateKeyPem;
	writeFileSync(path.join(dir, 'ca.pem'), cert);
	writeFileSync(path.join(dir, 'ca-key.pem'), key, {mode: 0o600});
	return {certFile: path.join(dir, 'ca.pem'), keyFile: path.join(dir, 'ca-key.pem')};
}

type Case = {
	name: string;
	/** The field the message must name first. */
	field: string;
	/** Part of the message after the field (the problem). */
	problem: RegExp;
	/** Changes the config; returns raw text to write it verbatim. */
	change: (raw: Raw, dir: string) => Raw | string | Promise<Raw | string>;
	/** apply (unpacks the tarball before touching any host) instead of plan. */
	command?: 'apply';
	/** The command line instead of plan/apply on the changed config (another path as the config, init). */
	args?: (configFile: string, dir: string) => string[];
};

/** A named pipe in dir that nobody writes to: reading it would wait for ever. */
function fifo(dir: string, name: string): string {
	const file = path.join(dir, name);
	execFileSync('mkfifo', [file]);
	return file;
}

/** A regular file of a given size (sparse: nothing is written). */
function fileOfSize(dir: string, name: string, bytes: number): string {
	const file = path.join(dir, name);
	writeFileSync(file, '');
	truncateSync(file, bytes);
	return file;
}

const MiB = 1024 * 1024;

const cases: Case[] = [
	{name: 'an address out of range', field: 'masters[0].ip', problem: /is not an IPv4 address \(got 999\.1\.1\.1\)/, change: raw => set(raw, 'masters[0].ip', '999.1.1.1')},
	{name: 'an address with three parts', field: 'masters[0].ip', problem: /is not an IPv4 address/, change: raw => set(raw, 'masters[0].ip', '172.24.8')},
	{name: 'an IPv6 master', field: 'masters[0].ip', problem: /is not an IPv4 address \(got ::1\)/, change: raw => set(raw, 'masters[0].ip', '::1')},
	{name: 'a duplicate address', field: 'masters[1].ip', problem: /repeats masters\[0\]\.ip/, change: raw => set(raw, 'masters[1].ip', '172.24.8.71')},
	{name: 'a duplicate name', field: 'masters[2].name', problem: /repeats masters\[0\]\.name/, change: raw => set(raw, 'masters[2].name', 'k8smaster01')},
	{name: 'an upper-case name with _', field: 'masters[0].name', problem: /is not a valid host name/, change: raw => set(raw, 'masters[0].name', 'K8S_Master')},
	{name: 'an empty name', field: 'masters[0].name', problem: /is not a valid host name/, change: raw => set(raw, 'masters[0].name', '')},
	{name: 'no master', field: 'masters', problem: /lists no master/, change: raw => set(raw, 'masters', [])},
	{name: 'a master with a misspelt key', field: 'masters[0].nmae', problem: /is not a known setting.*did you mean "name"/s, change: raw => set(raw, 'masters[0].nmae', 'x')},
	{name: 'a CIDR that is a word', field: 'network.serviceCidr', problem: /is not an IPv4 CIDR \(got ten\)/, change: raw => set(raw, 'network.serviceCidr', 'ten')},
	{name: 'a CIDR with host bits', field: 'network.serviceCidr', problem: /has host bits set/, change: raw => set(raw, 'network.serviceCidr', '10.254.0.1/16')},
	{name: 'a prefix of 33', field: 'network.serviceCidr', problem: /is not an IPv4 CIDR/, change: raw => set(raw, 'network.serviceCidr', '10.254.0.0/33')},
	{name: 'a service range holding the masters', field: 'network.serviceCidr', problem: /contains masters\[0\]\.ip 172\.24\.8\.71/, change: raw => set(raw, 'network.serviceCidr', '172.24.0.0/16')},
	{name: 'a service range of /8', field: 'network.serviceCidr', problem: /has a prefix outside \/12 to \/28/, change: raw => set(raw, 'network.serviceCidr', '10.0.0.0/8')},
	{name: 'a reversed port range', field: 'network.nodePortRange', problem: /is not a port range/, change: raw => set(raw, 'network.nodePortRange', '32767-30000')},
	{name: 'a domain with a trailing dot', field: 'network.clusterDomain', problem: /is not a DNS domain/, change: raw => set(raw, 'network.clusterDomain', 'cluster.local.')},
	{name: 'a version without v', field: 'version', problem: /is not a supported Kubernetes release \(got 1\.28\.7\)/, change: raw => set(raw, 'version', '1.28.7')},
	{name: 'a version before 1.14', field: 'version', problem: /is not a supported Kubernetes release \(got v1\.13\.0\)/, change: raw => set(raw, 'version', 'v1.13.0')},
	{name: 'the version "latest"', field: 'version', problem: /is not a supported Kubernetes release/, change: raw => set(raw, 'version', 'latest')},
	{name: 'a version 2', field: 'version', problem: /is not a supported Kubernetes release/, change: raw => set(raw, 'version', 'v2.0.0')},
	{name: 'a version as a number', field: 'version', problem: /must be string/, change: raw => set(raw, 'version', 1.28)},
	{name: 'a missing tarball', field: 'binaries.tarball', problem: /does not exist/, change: (raw, dir) => set(raw, 'binaries.tarball', path.join(dir, 'nope.tar.gz'))},
	{name: 'a tarball that is a folder', field: 'binaries.tarball', problem: /is a folder, not a regular file/, change: (raw, dir) => set(raw, 'binaries.tarball', dir)},
	{name: 'both tarball and url', field: 'binaries', problem: /needs exactly one of tarball and url/, change: raw => set(raw, 'binaries.url', 'https://dl.k8s.io/v1.28.7/kubernetes-server-linux-amd64.tar.gz')},
	{name: 'a plain-http url', field: 'binaries.url', problem: /is not an https URL/, change: raw => set(raw, 'binaries', {url: 'http://dl.k8s.io/x.tar.gz'})},
	{name: 'a short sha256', field: 'binaries.sha256', problem: /is not a sha256 hex digest/, change: raw => set(raw, 'binaries.sha256', 'abc')},
	{name: 'a tarball of another release', field: 'version', problem: /does not match the tarball, which holds v1\.14\.2/, command: 'apply', change: (raw, dir) => set(raw, 'binaries.tarball', tarballWith(dir, 'v1.14.2', elfExecutable('kube-apiserver')))},
	{name: 'a tarball of another architecture', field: 'binaries.tarball', problem: /holds arm64 binaries/, command: 'apply', change: (raw, dir) => set(raw, 'binaries.tarball', tarballWith(dir, 'v1.28.7', elfExecutable('kube-apiserver', 183)))},
	{name: 'a tarball whose kube-apiserver is a script', field: 'binaries.tarball', problem: /holds kubernetes\/server\/bin\/kube-apiserver, which is a script \(#!\), not an ELF executable/, command: 'apply', change: (raw, dir) => set(raw, 'binaries.tarball', tarballWith(dir, 'v1.28.7', Buffer.from('#!/bin/sh\nexec /bin/true\n')))},
	{name: 'a tarball whose kube-apiserver is a link to a file of this machine', field: 'binaries.tarball', problem: /holds kubernetes\/server\/bin\/kube-apiserver as a symbolic link \(to \/etc\/hostname\)/, command: 'apply', change: (raw, dir) => set(raw, 'binaries.tarball', tarballWith(dir, 'v1.28.7', file => symlinkSync('/etc/hostname', file)))},
	{name: 'a tarball whose kube-apiserver is a hard link', field: 'binaries.tarball', problem: /as a hard link \(to kubernetes\/server\/bin\/kube/, command: 'apply', change: (raw, dir) => set(raw, 'binaries.tarball', tarballWith(dir, 'v1.28.7', file => linkSync(path.join(path.dirname(file), 'kubectl'), file)))},
	{name: 'a tarball whose kube-apiserver is a named pipe', field: 'binaries.tarball', problem: /holds kubernetes\/server\/bin\/kube-apiserver as a named pipe \(FIFO\)/, command: 'apply', change: (raw, dir) => set(raw, 'binaries.tarball', tarballWith(dir, 'v1.28.7', file => execFileSync('mkfifo', [file])))},
	{name: 'a tarball with a member climbing out with ..', field: 'binaries.tarball', problem: /holds kubernetes\/server\/bin\/kube-apiserver\/\.\.\/\.\.\/\.\.\/\.\.\/escaped, whose path leaves the folder/, command: 'apply', change: (raw, dir) => set(raw, 'binaries.tarball', tarballWith(dir, 'v1.28.7', undefined, escapingMember(dir)))},
	{name: 'a tarball that is not gzip', field: 'binaries.tarball', problem: /is not a readable \.tar\.gz/, command: 'apply', change(raw, dir) {
		writeFileSync(path.join(dir, 'text.tar.gz'), 'not a tarball');
		return set(raw, 'binaries.tarball', path.join(dir, 'text.tar.gz'));
	}},
	{name: 'a tarball without kube-apiserver', field: 'binaries.tarball', problem: /lacks kubernetes\/server\/bin\/kube-apiserver/, command: 'apply', change: (raw, dir) => set(raw, 'binaries.tarball', tarballWith(dir, 'v1.28.7', undefined))},
	{name: 'a CA certificate and key that do not match', field: 'ca.keyFile', problem: /does not belong to the certificate/, change: async (raw, dir) => set(raw, 'ca', await caFiles(dir, {mismatched: true}))},
	{name: 'an expired CA', field: 'ca.certFile', problem: /expired on \d{4}-\d\d-\d\d/, change: async (raw, dir) => set(raw, 'ca', await caFiles(dir, {expired: true}))},
	{name: 'a leaf certificate as the CA', field: 'ca.certFile', problem: /is not a CA certificate/, change: async (raw, dir) => set(raw, 'ca', await caFiles(dir, {leaf: true}))},
	{name: 'a CA key that is not PEM', field: 'ca.keyFile', problem: /is not a PEM RSA private key/, async change(raw, dir) {
		const files = await caFiles(dir, {});
		writeFileSync(files.keyFile, 'garbage');
		return set(raw, 'ca', files);
	}},
	{name: 'an http etcd endpoint', field: 'etcd.endpoints[0]', problem: /is not an etcd client URL/, change: raw => set(raw, 'etcd.endpoints[0]', 'http://172.24.8.71:2379')},
	{name: 'an etcd endpoint without scheme', field: 'etcd.endpoints[1]', problem: /is not an etcd client URL/, change: raw => set(raw, 'etcd.endpoints[1]', '172.24.8.72:2379')},
	{name: 'an etcd port out of range', field: 'etcd.endpoints[2]', problem: /is not an etcd client URL/, change: raw => set(raw, 'etcd.endpoints[2]', 'https://172.24.8.73:99999')},
	{name: 'an etcd endpoint with a path', field: 'etcd.endpoints[0]', problem: /is not an etcd client URL/, change: raw => set(raw, 'etcd.endpoints[0]', 'https://172.24.8.71:2379/v3')},
	{name: 'a control-plane endpoint written as a URL', field: 'controlPlaneEndpoint', problem: /is not HOST\[:PORT\] \(got https:\/\/172\.24\.8\.70:6443\).*no https:\/\//, change: raw => set(raw, 'controlPlaneEndpoint', 'https://172.24.8.70:6443')},
	{name: 'a control-plane endpoint port out of range', field: 'controlPlaneEndpoint', problem: /is not HOST\[:PORT\]/, change: raw => set(raw, 'controlPlaneEndpoint', '172.24.8.70:70000')},
	{name: 'a control-plane endpoint that is no address and no name', field: 'controlPlaneEndpoint', problem: /is not HOST\[:PORT\] \(got 172\.24\.8\.300\)/, change: raw => set(raw, 'controlPlaneEndpoint', '172.24.8.300')},
	{name: 'a control-plane endpoint with an underscore', field: 'controlPlaneEndpoint', problem: /is not HOST\[:PORT\]/, change: raw => set(raw, 'controlPlaneEndpoint', 'k8s_api.example.com')},
	{name: 'a control-plane endpoint that is a master', field: 'controlPlaneEndpoint', problem: /is the address of masters\[1\] \(k8smaster02\).*Fix: give a virtual IP/, change: raw => set(raw, 'controlPlaneEndpoint', '172.24.8.72:6443')},
	{name: 'a control-plane endpoint in the service range', field: 'controlPlaneEndpoint', problem: /lies in network\.serviceCidr 10\.254\.0\.0\/16/, change: raw => set(raw, 'controlPlaneEndpoint', '10.254.0.10')},
	{name: 'no etcd endpoint', field: 'etcd.endpoints', problem: /lists no endpoint/, change: raw => set(raw, 'etcd.endpoints', [])},
	{name: 'an etcd certificate without key', field: 'etcd', problem: /has only one of certFile and keyFile/, change: (raw, dir) => set(raw, 'etcd.certFile', writeConfig(dir, 'x', 'etcd.pem'))},
	{name: 'YAML with an unclosed bracket', field: 'cluster.yaml', problem: /is not valid YAML/, change: () => 'version: v1.28.7\nmasters: [\n'},
	{name: 'YAML with a tab indent', field: 'cluster.yaml', problem: /is not valid YAML/, change: () => 'version: v1.28.7\nnetwork:\n\tserviceCidr: 10.254.0.0/16\n'},
	{name: 'YAML that is a list', field: 'cluster.yaml', problem: /does not hold a YAML mapping/, change: () => '- version: v1.28.7\n'},
	{name: 'a key written twice', field: 'cluster.yaml', problem: /is not valid YAML: Map keys must be unique/, change: () => 'version: v1.28.7\nversion: v1.14.2\n'},
	{name: 'a YAML alias bomb', field: 'cluster.yaml', problem: /expands its aliases to more than 100 nodes/, change: () => ['a: &a [x, x, x, x, x, x, x, x, x]', ...'bcdefgh'.split('').map((name, index) => `${name}: &${name} [${Array.from({length: 9}, () => `*${'abcdefgh'[index]!}`).join(', ')}]`)].join('\n')},
	{name: 'YAML nested a million levels deep', field: 'cluster.yaml', problem: /nests deeper than 32 levels/, change: () => '['.repeat(1_000_000)},
	{name: 'YAML with 5000 keys', field: 'cluster.yaml', problem: /holds more than 1000 keys/, change: () => Array.from({length: 5000}, (_, index) => `key${index}: 1`).join('\n')},
	{name: 'YAML of four million blank lines', field: 'cluster.yaml', problem: /holds more than 100000 YAML tokens/, change: () => '\n'.repeat(4_000_000)},
	// Not wrong values but wrong things: devices, pipes, huge files (README, "bad input").
	{name: 'a config that is /dev/zero', field: '--config', problem: /--config: is a character device, not a regular file.* \(got \/dev\/zero\)/, change: raw => raw, args: () => ['plan', '--config', '/dev/zero']},
	{name: 'a config that is a named pipe nobody writes', field: '--config', problem: /is a named pipe \(FIFO\), not a regular file/, change: raw => raw, args: (_, dir) => ['plan', '--config', fifo(dir, 'cluster.fifo')]},
	{name: 'a config that is a folder', field: '--config', problem: /is a folder, not a regular file/, change: raw => raw, args: (_, dir) => ['plan', '--config', dir]},
	{name: 'a config of 5 MiB', field: '--config', problem: /is 5 MiB, more than a cluster config may be \(4 MiB\)/, change: raw => raw, args: (_, dir) => ['plan', '--config', fileOfSize(dir, 'huge.yaml', 5 * MiB)]},
	{name: 'an environment.sh that is /dev/urandom', field: '--from-env', problem: /is a character device, not a regular file/, change: raw => raw, args: (_, dir) => ['init', '--from-env', '/dev/urandom', '--out', path.join(dir, 'new.yaml')]},
	{name: 'an environment.sh that is a named pipe', field: '--from-env', problem: /is a named pipe \(FIFO\)/, change: raw => raw, args: (_, dir) => ['init', '--from-env', fifo(dir, 'environment.sh'), '--out', path.join(dir, 'new.yaml')]},
	{name: 'a tarball that is /dev/zero', field: 'binaries.tarball', problem: /is a character device, not a regular file/, change: raw => set(raw, 'binaries.tarball', '/dev/zero')},
	{name: 'a tarball that is a named pipe', field: 'binaries.tarball', problem: /is a named pipe \(FIFO\)/, change: (raw, dir) => set(raw, 'binaries.tarball', fifo(dir, 'kubernetes-server-linux-amd64.tar.gz.fifo'))},
	{name: 'a CA certificate that is /dev/zero', field: 'ca.certFile', problem: /is a character device, not a regular file/, async change(raw, dir) {
		return set(raw, 'ca', {...await caFiles(dir, {}), certFile: '/dev/zero'});
	}},
	{name: 'a CA certificate of 2 MiB', field: 'ca.certFile', problem: /is 2 MiB, more than a PEM certificate or key may be \(1 MiB\)/, async change(raw, dir) {
		return set(raw, 'ca', {...await caFiles(dir, {}), certFile: fileOfSize(dir, 'huge.pem', 2 * MiB)});
	}},
	{name: 'an etcd key that is a named pipe', field: 'etcd.keyFile', problem: /is a named pipe \(FIFO\)/, change: (raw, dir) => set(set(raw, 'etcd.certFile', writeConfig(dir, 'x', 'etcd.pem')), 'etcd.keyFile', fifo(dir, 'etcd-key.pem'))},
	{name: 'an ssh key that is /dev/zero', field: 'ssh.identityFile', problem: /is a character device/, change: raw => set(raw, 'ssh.identityFile', '/dev/zero')},
	{name: 'an encryption key file that is /dev/urandom', field: 'encryption.keyFile', problem: /is a character device/, change: raw => set(raw, 'encryption.keyFile', '/dev/urandom')},
	{name: 'an encryption key file of 1 MiB', field: 'encryption.keyFile', problem: /is 1 MiB, more than an encryption key file may be \(4 KiB\)/, change: (raw, dir) => set(raw, 'encryption.keyFile', fileOfSize(dir, 'encryption.key', MiB))},
	{name: 'a template copy that is a named pipe', field: 'templatesDir', problem: /kube-apiserver\.service\)?.*is a named pipe \(FIFO\)|is a named pipe \(FIFO\).*kube-apiserver\.service/, change(raw, dir) {
		mkdirSync(path.join(dir, 'templates'));
		fifo(path.join(dir, 'templates'), 'kube-apiserver.service');
		return set(raw, 'templatesDir', path.join(dir, 'templates'));
	}},
	{name: 'an unknown top-level key', field: 'master', problem: /is not a known setting.*did you mean "masters"/s, change: raw => set(raw, 'master', [])},
	{name: 'an unknown nested key', field: 'ssh.identity_file', problem: /did you mean "identityFile"/, change: raw => set(raw, 'ssh.identity_file', '~/.ssh/id_rsa')},
	{name: 'an ssh port of 70000', field: 'ssh.port', problem: /70000|too big|<=65535/i, change: raw => set(raw, 'ssh.port', 70_000)},
	{name: 'an sshHost ssh would read as an option', field: 'masters[1].sshHost', problem: /is not a name ssh can be given/, change: raw => set(raw, 'masters[1].sshHost', '-oProxyCommand=touch /tmp/p')},
	{name: 'a bastion given as an ssh:// URL', field: 'ssh.bastion', problem: /is not \[USER@\]HOST\[:PORT\]/, change: raw => set(raw, 'ssh.bastion', 'ssh://jump@bastion.example.com')},
	{name: 'a bastion of two hops', field: 'ssh.bastion', problem: /is not \[USER@\]HOST\[:PORT\]/, change: raw => set(raw, 'ssh.bastion', 'jump1,jump2')},
	{name: 'a relative binDir', field: 'paths.binDir', problem: /must be an absolute path/, change: raw => set(raw, 'paths.binDir', 'opt/k8s/bin')},
	{name: 'a k8sDir climbing out with ..', field: 'paths.k8sDir', problem: /may hold only letters/, change: raw => set(raw, 'paths.k8sDir', '/data/../etc')},
	{name: 'an encryption key of 16 bytes', field: 'encryption.keyFile', problem: /does not hold the base64 of exactly 32 bytes/, change: (raw, dir) => set(raw, 'encryption.keyFile', writeConfig(dir, Buffer.alloc(16).toString('base64'), 'encryption.key'))},
	{name: 'an unknown signing-key choice', field: 'serviceAccount.signingKey', problem: /dedicated|ca/, change: raw => set(raw, 'serviceAccount.signingKey', 'shared')},
	{name: 'a ready timeout of 1 s', field: 'timeouts.readySeconds', problem: /5|too small|>=5/i, change: raw => set(raw, 'timeouts.readySeconds', 1)},
	{name: 'a templatesDir that is a file', field: 'templatesDir', problem: /is not a folder/, change: (raw, dir) => set(raw, 'templatesDir', writeConfig(dir, 'x', 'not-a-folder'))},
	{name: 'an extra flag the release refuses', field: 'extraFlags.kube-apiserver', problem: /--insecure-port=0 is refused by kube-apiserver from v1\.24/, command: 'apply', change: raw => set(raw, 'extraFlags', {'kube-apiserver': ['--insecure-port=0']})},
	{name: 'an extra flag with a space', field: 'extraFlags.kube-scheduler[0]', problem: /is not a flag this tool can write into a unit/, change: raw => set(raw, 'extraFlags', {'kube-scheduler': ['--v 4']})},
];

/** Every string field that may reach a host, each given a value full of shell metacharacters. */
const hostile = 'x;$(id)`id`\'"|&>/tmp/p\n';
const stringFields = [
	'name', 'version', 'masters[0].name', 'masters[1].ip', 'controlPlaneEndpoint', 'ssh.user', 'ssh.hostKeys', 'etcd.endpoints[0]', 'network.serviceCidr',
	'network.nodePortRange', 'network.clusterDomain', 'paths.k8sDir', 'paths.binDir', 'paths.certDir', 'paths.configDir', 'paths.nginxDir',
	'nginx.binary', 'nginx.streamModule', 'certificates.subject.C', 'certificates.subject.ST', 'certificates.subject.L', 'certificates.subject.O',
	'certificates.subject.OU', 'certificates.extraSans[0]', 'extraFlags.kube-apiserver[0]', 'extraFlags.kube-controller-manager[0]',
	'extraFlags.kube-scheduler[0]', 'binaries.sha256', 'binaries.include[0]', 'serviceAccount.signingKey', 'binaries.tarball', 'ssh.identityFile',
	'etcd.caFile', 'encryption.keyFile', 'masters[2].sshHost', 'ssh.bastion',
];

for (const field of stringFields) {
	cases.push({
		name: `shell metacharacters in ${field}`,
		// Lists report the element; a missing local file is reported as such.
		field: field.replace(/\[0\]$/, field.startsWith('extraFlags') || field.startsWith('binaries.include') || field.startsWith('certificates.extraSans') || field.startsWith('etcd.endpoints') ? '[0]' : ''),
		problem: /./,
		change: raw => set(raw, field, hostile),
	});
}

describe('bad input', () => {
	test(`the corpus has at least 40 cases (${cases.length})`, () => {
		expect(cases.length).toBeGreaterThanOrEqual(40);
	});

	test.each(cases.map(each => [each.name, each] as const))('%s: exit 2, one message naming the field and the fix, no stack, no state', async (_, each) => {
		const {dir, tarball, stateDir} = makeFixture();
		onTestFinished(() => rmSync(dir, {recursive: true, force: true}));
		const changed = await each.change(baseConfig(tarball), dir);
		const configFile = writeConfig(dir, changed);
		const started = performance.now();
		const result = await run([...each.args?.(configFile, dir) ?? [each.command ?? 'plan', '--config', configFile], '--state-dir', stateDir, '--yes']);
		expect(performance.now() - started, 'refused within a few seconds').toBeLessThan(5000);
		expect(result.code, result.err).toBe(2);
		const first = result.err.split('\n')[0]!;
		const field = each.field === 'cluster.yaml' ? configFile : each.field;
		expect(first.startsWith(`error: ${field}: `), result.err).toBe(true);
		expect(result.err).toMatch(each.problem);
		expect(result.err).toMatch(/Fix: \S/);
		expect(result.err).not.toMatch(/^\s+at .+:\d+:\d+\)?$/m);
		// No step started: no host was touched (apply may say it unpacked the tarball to check it).
		expect(result.out).not.toMatch(/^== /m);
		// Nothing made or kept: no state, no key material, no unpacked binaries.
		const stateFolder = path.join(stateDir, 'kubernetes');
		expect(existsSync(path.join(stateFolder, 'state.json'))).toBe(false);
		expect(existsSync(path.join(stateFolder, 'pki'))).toBe(false);
		expect(existsSync(path.join(stateFolder, 'binaries')) ? readdirSync(path.join(stateFolder, 'binaries')) : []).toEqual([]);
	});
});
