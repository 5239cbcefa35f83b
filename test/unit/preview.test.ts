import {createHash} from 'node:crypto';
import {describe, expect, test} from 'vitest';
import {generateKeyPair, issueCertificate} from '../../source/pki/certs.js';
import {fileChangeLines, formatChanges, planChanges, restartSequence} from '../../source/reporters/diff-format.js';
import {runKind} from '../../source/operations/run-kind.js';
import {install} from '../../source/operations/index.js';
import type {Upload} from '../../source/steps/files.js';
import {planExitCode} from '../../source/commands.js';
import {contentsScript, fileChange, linkChange, parseContents, pendingBinaryRestarts, servicePreview, type ChangeFacts, type ChangePreview, type ServicePreview} from '../../source/steps/preview.js';
import {serviceFingerprint, serviceInputs} from '../../source/steps/restart-policy.js';
import type {InstallState} from '../../source/state/store.js';

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');
const textUpload = (path: string, content: string, secret = false, mode = 0o600): Upload => ({kind: 'upload', path, mode, sha256: sha256(content), bytes: Buffer.byteLength(content), secret, source: {content}, label: path.split('/').at(-1)!});
const onMaster = (content: string, mode = 0o600) => ({sha256: sha256(content), mode, owner: 'root', stat: `2049:12:${Buffer.byteLength(content)}:1.000000001:1.000000001`});
const facts = (upload: Upload, change: Partial<ChangeFacts> = {}): ChangeFacts => ({step: 'units', upload, facts: undefined, current: undefined, written: new Set(), releaseOf: () => undefined, release: 'v1.28.7', hostName: 'k8smaster01', ...change});

const unitPath = '/etc/systemd/system/kube-apiserver.service';
const unit = (ttl: string) => `[Service]\nExecStart=/opt/k8s/bin/kube-apiserver \\\n  --advertise-address=172.24.8.71 \\\n  --event-ttl=${ttl} \\\n  --tls-cert-file=/etc/kubernetes/cert/kubernetes.pem\n`;

describe('the diff of each kind of file', () => {
	test('a unit whose flag changed: a unified diff of its content, made by this install (not drift)', () => {
		const upload = textUpload(unitPath, unit('170h'));
		const change = fileChange(facts(upload, {facts: onMaster(unit('168h')), current: unit('168h'), written: new Set([sha256(unit('168h'))])}))!;
		expect(change).toMatchObject({kind: 'text', change: 'content', byHand: false, sha256: {before: sha256(unit('168h')), after: upload.sha256}});
		expect(change.diff!.split('\n')).toEqual(expect.arrayContaining([`--- k8smaster01:${unitPath}`, '+++ apply writes', '-  --event-ttl=168h \\', '+  --event-ttl=170h \\']));
		const lines = fileChangeLines(change);
		expect(lines[0]).toBe(`~ ${unitPath}  [units]`);
		expect(lines).toContain('    +  --event-ttl=170h \\');
	});

	test('the same file on the master needs nothing; a hand edit is drift, shown the same way and named', () => {
		const nginx = 'upstream backend {\n    server 172.24.8.71:6443;\n    server 172.24.8.72:6443;\n}\n';
		const upload = textUpload('/opt/k8s/kube-nginx/conf/kube-nginx.conf', nginx);
		expect(fileChange(facts(upload, {facts: onMaster(nginx), current: nginx}))).toBeUndefined();
		const edited = nginx.replace('    server 172.24.8.72:6443;\n', '');
		const change = fileChange(facts(upload, {facts: onMaster(edited), current: edited, written: new Set([upload.sha256])}))!;
		expect(change.byHand).toBe(true);
		expect(change.diff).toContain('+    server 172.24.8.72:6443;');
		// apply does not put it back unasked: it asks first, or needs --overwrite.
		expect(fileChangeLines(change)[0]).toMatch(/changed on the master by hand: apply asks before it puts back what the config writes, or needs --overwrite; the master's copy is kept as a backup/);
	});

	test('a file not on the master is new; one whose mode alone differs says so, without a diff', () => {
		const upload = textUpload('/etc/kubernetes/audit-policy.yaml', 'rules: []\n');
		expect(fileChange(facts(upload))).toMatchObject({change: 'new', byHand: false, mode: {before: undefined, after: '0600 root'}});
		const mode = fileChange(facts(upload, {facts: onMaster('rules: []\n', 0o644), current: 'rules: []\n'}))!;
		expect(mode).toMatchObject({change: 'mode'}); expect(mode.diff).toBeUndefined();
		expect(fileChangeLines(mode)).toEqual(['~ /etc/kubernetes/audit-policy.yaml  [units]', '    mode 0644 root → 0600 root']);
	});

	test('a secret shows as changed with its hashes only, never its content', () => {
		const secret = 'kind: EncryptionConfiguration\nsecret: c2VjcmV0LWtleS1tYXRlcmlhbA==\n';
		const upload = textUpload('/etc/kubernetes/encryption-config.yaml', secret, true);
		const change = fileChange(facts(upload, {step: 'encryption', facts: onMaster('old secret'), current: 'old secret'}))!;
		expect(change.kind).toBe('secret');
		expect(change.diff).toBeUndefined();
		const text = fileChangeLines(change).join('\n');
		expect(text).toMatch(/secret: changed, sha256 [a-f\d]{12}… → [a-f\d]{12}… \(content not shown\)/);
		expect(text).not.toContain('c2VjcmV0');
		expect(text).not.toContain('old secret');
	});

	test('a certificate shows what changed in it (SANs, not-after), no key material', async () => {
		const keys = await generateKeyPair();
		const request = {subject: {CN: 'kubernetes', O: 'k8s'}, profile: 'server-client' as const, ipSans: ['172.24.8.71'], dnsSans: ['kubernetes'], validityDays: 365};
		const before = issueCertificate(request, keys, undefined, new Date('2026-01-01T00:00:00Z'));
		const after = issueCertificate({...request, ipSans: ['172.24.8.71', '172.24.8.70']}, keys, undefined, new Date('2026-02-01T00:00:00Z'));
		const upload = textUpload('/etc/kubernetes/cert/kubernetes.pem', after);
		const change = fileChange(facts(upload, {step: 'certs', facts: onMaster(before), current: before, written: new Set([sha256(before)])}))!;
		expect(change.kind).toBe('certificate');
		const lines = fileChangeLines(change).map(line => line.trim());
		expect(lines).toContain('SANs: kubernetes, 172.24.8.71 → kubernetes, 172.24.8.70, 172.24.8.71');
		expect(lines.some(line => /^not after: 2027-01-01 → 2027-02-01$/.test(line))).toBe(true);
		expect(lines.join('\n')).not.toMatch(/BEGIN|PRIVATE/);
	});

	test('a binary shows the release it replaces and the sizes', () => {
		const upload: Upload = {kind: 'upload', path: '/opt/k8s/bin/kube-apiserver', mode: 0o755, sha256: 'b'.repeat(64), bytes: 126_000_000, secret: false, source: {file: '/state/binaries/v1.28.7/kube-apiserver'}, label: 'kube-apiserver'};
		const change = fileChange(facts(upload, {step: 'binaries', facts: {sha256: 'a'.repeat(64), mode: 0o755, owner: 'root', stat: '2049:5:125000000:1.000000001:1.000000001'}, releaseOf: hash => (hash === 'a'.repeat(64) ? 'v1.28.4' : undefined)}))!;
		expect(change.binary).toEqual({before: {release: 'v1.28.4', bytes: 125_000_000}, after: {release: 'v1.28.7', bytes: 126_000_000}});
		expect(fileChangeLines(change)[1]).toBe('    kube-apiserver v1.28.4, 119.2 MiB → v1.28.7, 120.2 MiB');
	});

	test('a binary not in the new release\'s folder yet replaces the release its link names, not "none"', () => {
		const upload: Upload = {kind: 'upload', path: '/opt/k8s/bin/v1.28.7/kube-apiserver', mode: 0o755, sha256: 'b'.repeat(64), bytes: 126_000_000, secret: false, source: {file: '/state/binaries/v1.28.7/kube-apiserver'}, label: 'kube-apiserver'};
		const change = fileChange(facts(upload, {step: 'binaries', linkedRelease: 'v1.28.6'}))!;
		expect(change.binary).toEqual({before: {release: 'v1.28.6'}, after: {release: 'v1.28.7', bytes: 126_000_000}});
		expect(fileChangeLines(change)).toEqual(['+ /opt/k8s/bin/v1.28.7/kube-apiserver  [binaries]', '    kube-apiserver v1.28.6 → v1.28.7, 120.2 MiB']);
	});

	test('a link naming another release is a change (apply switches it); one naming this release is none', () => {
		const upload: Upload = {kind: 'upload', path: '/opt/k8s/bin/v1.28.7/kube-apiserver', mode: 0o755, sha256: 'b'.repeat(64), bytes: 126_000_000, secret: false, source: {file: '/state/binaries/v1.28.7/kube-apiserver'}, label: 'kube-apiserver'};
		const link = {upload, linkPath: '/opt/k8s/bin/kube-apiserver', release: 'v1.28.7', releaseOf: () => undefined, byHand: false};
		expect(linkChange({...link, facts: {link: 'v1.28.7/kube-apiserver', sha256: 'b'.repeat(64)}})).toBeUndefined();
		const change = linkChange({...link, facts: {link: 'v1.28.6/kube-apiserver'}})!;
		expect(change).toMatchObject({path: '/opt/k8s/bin/kube-apiserver', kind: 'binary', change: 'content', link: {before: 'v1.28.6/kube-apiserver', after: 'v1.28.7/kube-apiserver'}});
		expect(fileChangeLines(change)).toEqual(['~ /opt/k8s/bin/kube-apiserver  [binaries]', '    kube-apiserver v1.28.6 → v1.28.7', '    link v1.28.6/kube-apiserver → v1.28.7/kube-apiserver']);
		expect(linkChange({...link, facts: undefined})).toMatchObject({change: 'new', binary: {after: {release: 'v1.28.7'}}});
	});

	test('file contents travel as base64, one line each, so that any byte comes back as it was', () => {
		expect(contentsScript(['/a b/c'])).toContain('\'/a b/c\'');
		const text = 'no trailing newline\n##k8smi## units';
		expect(parseContents(`C ${Buffer.from(text).toString('base64')} /etc/x.conf\nC  /etc/empty\n`)).toEqual(new Map([['/etc/x.conf', text], ['/etc/empty', '']]));
	});
});

describe('the restart preview', () => {
	const running = {active: 'active', needsReload: 'no'};
	const units = new Map([['kube-apiserver', running], ['kube-nginx', running], ['kube-controller-manager', running], ['kube-scheduler', running]] as const);
	const apiserverUnit = textUpload(unitPath, unit('170h'));
	const nginxConf = textUpload('/opt/k8s/kube-nginx/conf/kube-nginx.conf', 'stream {}\n');
	const nginxUnit = textUpload('/etc/systemd/system/kube-nginx.service', 'ExecStart=/usr/sbin/nginx -c /opt/k8s/kube-nginx/conf/kube-nginx.conf\n');
	const cert = textUpload('/etc/kubernetes/cert/kubernetes.pem', '-----BEGIN CERTIFICATE-----\n');
	const uploads = [apiserverUnit, nginxConf, nginxUnit, cert];

	test('a changed flag restarts the apiserver alone, naming the file it follows from; a changed kube-nginx.conf reloads kube-nginx', () => {
		const previews = servicePreview(uploads, new Set([unitPath, nginxConf.path]), undefined, units);
		// Nothing recorded (units recorded below): every service this install never started restarts.
		expect(previews.find(each => each.name === 'kube-apiserver')).toEqual({name: 'kube-apiserver', action: 'restart', reason: 'not started by this install', files: [unitPath]});
		const recorded = Object.fromEntries(servicePreview(uploads, new Set(), undefined, units).map(each => [each.name, 'old']));
		const steady = servicePreview(uploads, new Set([unitPath, nginxConf.path]), recorded, units);
		expect(steady.map(each => `${each.action} ${each.name}: ${each.files.join(',')}`)).toEqual(expect.arrayContaining([`restart kube-apiserver: ${unitPath}`, `reload kube-nginx: ${nginxConf.path}`]));
	});

	test('nothing changed and every unit active: nothing restarts; a unit that is not active restarts, saying so', () => {
		// Recorded: the fingerprints of the files as apply would leave them.
		const recorded = Object.fromEntries((['kube-apiserver', 'kube-nginx', 'kube-controller-manager', 'kube-scheduler'] as const).map(name => [name, serviceFingerprint(serviceInputs(name, uploads))]));
		expect(servicePreview(uploads, new Set(), recorded, units)).toEqual([]);
		const stopped = new Map([...units, ['kube-scheduler', {active: 'failed', needsReload: 'no'}]] as const);
		expect(servicePreview(uploads, new Set(), recorded, stopped)).toEqual([{name: 'kube-scheduler', action: 'restart', reason: 'it is failed', files: []}]);
	});

	test('start\'s order, its groups (installRestartOrder): apiserver and kube-nginx in one systemctl restart, reloads in their group, then the clients once the group is ready', () => {
		const scheduler: ServicePreview = {name: 'kube-scheduler', action: 'restart', reason: 'a file it reads changed', files: ['/etc/kubernetes/kube-scheduler.yaml']};
		expect(restartSequence([
			{name: 'kube-apiserver', action: 'restart', reason: 'a file it reads changed', files: [unitPath]},
			scheduler,
			{name: 'kube-nginx', action: 'reload', reason: 'a file it reads changed', files: [nginxConf.path]},
		])).toEqual([
			`restart kube-apiserver (a file it reads changed: ${unitPath})`,
			`reload kube-nginx (a file it reads changed: ${nginxConf.path})`,
			'then, once kube-apiserver and kube-nginx are ready: restart kube-scheduler (a file it reads changed: /etc/kubernetes/kube-scheduler.yaml)',
		]);
		expect(restartSequence([
			scheduler,
			{name: 'kube-nginx', action: 'restart', reason: 'it is failed', files: []},
			{name: 'kube-controller-manager', action: 'restart', reason: 'a file it reads changed', files: ['/etc/kubernetes/kube-controller-manager.kubeconfig']},
			{name: 'kube-apiserver', action: 'restart', reason: 'a file it reads changed', files: [unitPath]},
		])).toEqual([
			'restart kube-apiserver and kube-nginx in one systemctl restart:',
			`  kube-apiserver (a file it reads changed: ${unitPath})`,
			'  kube-nginx (it is failed)',
			'then, once kube-apiserver and kube-nginx are ready: restart kube-controller-manager and kube-scheduler in one systemctl restart:',
			'  kube-controller-manager (a file it reads changed: /etc/kubernetes/kube-controller-manager.kubeconfig)',
			'  kube-scheduler (a file it reads changed: /etc/kubernetes/kube-scheduler.yaml)',
		]);
	});

	test('a new release not unpacked yet restarts the components whose unit runs one of its binaries', () => {
		const versioned = textUpload(unitPath, unit('168h').replace('/opt/k8s/bin/kube-apiserver', '/opt/k8s/bin/v1.28.7/kube-apiserver'));
		const restarts = pendingBinaryRestarts([versioned], {paths: ['/opt/k8s/bin/v1.28.7/kube-apiserver'], from: 'v1.28.6', to: 'v1.28.7'}, []);
		expect(restarts).toEqual([{name: 'kube-apiserver', action: 'restart', reason: 'its binary changes with the release (v1.28.6 → v1.28.7)', files: ['/opt/k8s/bin/v1.28.7/kube-apiserver']}]);
	});

	test('the text: one master at a time, why, and the time each took last', () => {
		const changes: ChangePreview = {
			read: true,
			restartOrder: 'one master at a time',
			hosts: ['k8smaster01', 'k8smaster02'].map(host => ({
				host,
				files: [fileChange(facts(apiserverUnit, {hostName: host, facts: onMaster(unit('168h')), current: unit('168h'), written: new Set([sha256(unit('168h'))])}))!],
				services: [{name: 'kube-apiserver', action: 'restart', reason: 'a file it reads changed', files: [unitPath]}],
				lastRestart: {ms: 8100, at: '2026-03-01T10:00:00.000Z', services: ['kube-apiserver']},
			})),
		};
		const text = formatChanges(changes).join('\n');
		expect(text).toContain('k8smaster01: 1 file(s) differ');
		expect(text).toContain('Restarts, one master at a time (k8smaster01, then k8smaster02; the others keep serving):');
		expect(text).toContain('  k8smaster01: expected about 8.1 s (its last restart, of kube-apiserver, took that on 2026-03-01)');
		expect(text).toContain(`    restart kube-apiserver (a file it reads changed: ${unitPath})`);
		expect(text).toContain('in all about 16.2 s of restarts');
		expect(planChanges({changes})).toBe(true);
		expect(planChanges({changes: {read: true, restartOrder: 'one master at a time', hosts: [{host: 'k8smaster01', files: [], services: []}]}})).toBe(false);
		expect(planChanges({changes: {read: false, restartOrder: 'all masters at once', hosts: []}})).toBe(true);
	});

	test('a master not read is named; plan --exit-code then says 1 (could not tell), not 0 or 3', () => {
		const changes: ChangePreview = {read: true, restartOrder: 'one master at a time', hosts: [
			{host: 'k8smaster01', files: [], services: []},
			{host: 'k8smaster03', files: [], services: [], unread: '172.24.8.73: no ssh connection'},
		]};
		expect(formatChanges(changes)).toContain('k8smaster03: not read (172.24.8.73: no ssh connection): what apply would change there is not known');
		expect(planExitCode({changes})).toBe(1);
		expect(planExitCode({changes: {...changes, hosts: [changes.hosts[0]!]}})).toBe(0);
	});
});

describe('the words of a run', () => {
	const state = (change: Partial<InstallState>): InstallState => ({schema: 3, cluster: 'kubernetes', steps: {}, ...change});
	const done = {'install/units': {hosts: {k8smaster01: {status: 'done' as const, at: '', inputs: ''}}}};
	test('Install, Resume, Upgrade a → b, Apply changes', () => {
		expect(runKind(state({}), install, 'v1.28.7').title).toBe('Install');
		expect(runKind(state({steps: done, version: 'v1.28.7', run: {operation: 'install', status: 'stopped', startedAt: '', updatedAt: ''}}), install, 'v1.28.7').title).toBe('Resume');
		expect(runKind(state({steps: done, version: 'v1.28.4', run: {operation: 'install', status: 'done', startedAt: '', updatedAt: ''}}), install, 'v1.28.7').title).toBe('Upgrade v1.28.4 → v1.28.7');
		expect(runKind(state({steps: done, version: 'v1.28.7', run: {operation: 'install', status: 'done', startedAt: '', updatedAt: ''}}), install, 'v1.28.7').title).toBe('Apply changes');
	});
});
