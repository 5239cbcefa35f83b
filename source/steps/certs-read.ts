import {PerMasterReads} from './per-master-reads.js';
import type {Master} from '../config/schema.js';
import {sha256} from '../files.js';
import {certificateRow, writtenStatus, type CertificateName, type CertificateRow} from '../pki/inventory.js';
import {shellWords} from '../remote/quote.js';
import type {StepContext, StepDefinition} from './types.js';

/** One file `certs` reads on a master, and what it holds: a certificate, a kubeconfig's client certificate, or a public key (age only). */
export type Target = {name: CertificateName; path: string; kind: 'pem' | 'kubeconfig' | 'public key'};

export function certificateTargets(context: StepContext): Target[] {
	const {certDir, configDir} = context.config.paths;
	return [
		{name: 'ca', path: `${certDir}/ca.pem`, kind: 'pem'},
		...(['kubernetes', 'proxy-client', 'kube-controller-manager', 'kube-scheduler'] as const).map((name): Target => ({name, path: `${certDir}/${name}.pem`, kind: 'pem'})),
		// The certificate the two clients log in with is the one inside their kubeconfig.
		...(['kube-controller-manager', 'kube-scheduler'] as const).map((name): Target => ({name, path: `${configDir}/${name}.kubeconfig`, kind: 'kubeconfig'})),
		...(context.material.serviceAccount ? [{name: 'service-account key', path: `${certDir}/sa.pub`, kind: 'public key'} as Target] : []),
	];
}

/**
 * One round trip: per file its mtime, its sha256 and the certificate itself. Of a kubeconfig only the
 * client-certificate-data line leaves the master (never the key beside it); of sa.pub nothing but its age and hash.
 */
export function certificatesScript(targets: Target[]): string {
	return [
		'# k8s-master-install: certificates',
		`for f in ${shellWords(targets.map(target => target.path))}; do`,
		'  echo "==> $f"',
		'  if [ ! -f "$f" ]; then echo missing; continue; fi',
		'  echo "mtime $(stat -c %Y -- "$f")"',
		'  echo "sha256 $(sha256sum -- "$f" | cut -d" " -f1)"',
		'  case "$f" in',
		'    *.kubeconfig) sed -n "s/^ *client-certificate-data: *//p" -- "$f" ;;',
		'    *.pem) cat -- "$f" ;;',
		'  esac',
		'done',
	].join('\n');
}

type ReadFile = {mtime: number; sha256: string; text: string} | 'missing';

export function parseCertificatesOutput(output: string): Map<string, ReadFile> {
	const files = new Map<string, ReadFile>();
	for (const block of output.split(/^==> /m).slice(1)) {
		const [file = '', ...lines] = block.split('\n');
		if (lines[0]?.trim() === 'missing') {
			files.set(file, 'missing');
			continue;
		}

		const mtime = Number(/^mtime (\d+)$/.exec(lines[0] ?? '')?.[1] ?? Number.NaN);
		const hash = /^sha256 ([a-f\d]{64})$/.exec(lines[1] ?? '')?.[1] ?? '';
		files.set(file, {mtime, sha256: hash, text: lines.slice(2).join('\n')});
	}

	return files;
}

/** The rows of one master, judged against what this install writes now and wrote before. */
export function masterRows(context: StepContext, master: Master, output: string, now: Date): CertificateRow[] {
	const read = parseCertificatesOutput(output);
	const warnDays = context.config.certificates.warnDays;
	return certificateTargets(context).map(target => {
		const base = {name: target.name, where: master.name, file: target.path};
		const found = read.get(target.path);
		if (found === undefined || found === 'missing') {
			return {...base, written: 'missing' as const};
		}

		const current = context.artifacts.find(artifact => artifact.remote?.path === target.path && (artifact.remote.host === undefined || artifact.remote.host === master.name));
		const written = writtenStatus(found.sha256, current && sha256(current.content), context.state.writtenHashes(master.name, target.path));
		if (target.kind === 'public key') {
			return {...base, written, ageDays: Number.isFinite(found.mtime) ? Math.floor((now.getTime() - (found.mtime * 1000)) / 86_400_000) : undefined};
		}

		const pem = target.kind === 'kubeconfig' ? Buffer.from(found.text.trim(), 'base64').toString() : found.text;
		return certificateRow({...base, written}, pem, now, warnDays);
	});
}

/** Per run, each master's rows: the certs command prints them whole. */
export const certificateRowsRead = new PerMasterReads<CertificateRow[]>();

/** The certificates on every master as a read-only step, done again every time; the command judges them. */
export const certsReadStep: StepDefinition = {
	id: 'certs-read',
	title: 'Read the certificates on the masters',
	needs: [],
	scope: 'each-master',
	plan: context => [{kind: 'check', description: `read ${certificateTargets(context).map(target => target.path).join(', ')} (certificates, expiry, hashes; never a key)`}],
	verify: async () => ({done: false}),
	async run(context, master) {
		const result = await context.remote.check(master, certificatesScript(certificateTargets(context)), {step: 'certs-read', display: 'read the certificates, their hashes and ages'});
		const rows = masterRows(context, master, result.stdout, new Date());
		certificateRowsRead.record(context, master.name, rows);
		const soonest = rows.filter(row => row.daysLeft !== undefined).sort((a, b) => a.daysLeft! - b.daysLeft!)[0];
		return `${rows.length} files read${soonest ? `; first to end: ${soonest.name} in ${soonest.daysLeft} days` : ''}`;
	},
};
