import {createPublicKey, randomBytes, sign as nativeSign, X509Certificate} from 'node:crypto';
import forge from 'node-forge';
import {generateRsaKeyPair} from './rsa.js';

const {pki} = forge;

export type KeyPair = {privateKeyPem: string; publicKeyPem: string};

export type Subject = {C?: string; ST?: string; L?: string; O?: string | string[]; OU?: string; CN: string};

export type CertificateProfile = 'ca' | 'server-client' | 'client';

export type CertificateRequest = {
	subject: Subject;
	profile: CertificateProfile;
	ipSans?: string[];
	dnsSans?: string[];
	validityDays: number;
};

export type Issuer = {certPem: string; keyPem: string};

/** Starts the validity a few minutes back so that a master whose clock lags does not see "not yet valid". */
const backdateMs = 5 * 60 * 1000;

/** RSA 2048, made off the event loop (Node's crypto), so spinners keep turning. */
export async function generateKeyPair(): Promise<KeyPair> {
	return generateRsaKeyPair();
}

/**
 * A pure function of PEM text, remembered: a run reads the same keys and certificates several times
 * (the checks' plan, the run's, verify on every master), and each RSA key or certificate parsed
 * again cost milliseconds of the one thread that starts the next command.
 */
function remembered<Pems extends string[], T>(read: (...pems: Pems) => T): (...pems: Pems) => T {
	const known = new Map<string, T>();
	return (...pems) => {
		const key = pems.join('\0');
		let value = known.get(key);
		if (value === undefined) {
			value = read(...pems);
			// Bounded: a long-lived process (a test worker) sees many.
			if (known.size >= 256) {
				known.clear();
			}

			known.set(key, value);
		}

		return value;
	};
}

/** The public half (of a private or public key) as generateKeyPair writes it: SPKI PEM, the one form compared. */
export const publicKeyPemOf = remembered((keyPem: string): string => createPublicKey(keyPem).export({type: 'spki', format: 'pem'}).toString());

function subjectAttributes(subject: Subject): forge.pki.CertificateField[] {
	const attributes: forge.pki.CertificateField[] = [];
	const add = (shortName: string, value: string | undefined) => {
		if (value) {
			attributes.push({shortName, value});
		}
	};

	add('C', subject.C);
	add('ST', subject.ST);
	add('L', subject.L);
	for (const organization of [subject.O ?? []].flat()) {
		add('O', organization);
	}

	add('OU', subject.OU);
	add('CN', subject.CN);
	return attributes;
}

function serialNumber(): string {
	const bytes = randomBytes(16);
	bytes[0] = bytes[0]! & 0x7F; // Positive, as RFC 5280 asks.
	return bytes.toString('hex');
}

function extensionsFor(request: CertificateRequest, subjectKeyId: string, authorityKeyId: string): unknown[] {
	const altNames = [
		...(request.dnsSans ?? []).map(value => ({type: 2, value})),
		...(request.ipSans ?? []).map(ip => ({type: 7, ip})),
	];
	const keyIds = [
		{name: 'subjectKeyIdentifier', subjectKeyIdentifier: subjectKeyId},
		{name: 'authorityKeyIdentifier', keyIdentifier: authorityKeyId},
	];
	if (request.profile === 'ca') {
		return [
			{name: 'basicConstraints', cA: true, critical: true},
			{name: 'keyUsage', keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true},
			...keyIds,
		];
	}

	return [
		{name: 'basicConstraints', cA: false, critical: true},
		{name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true},
		{name: 'extKeyUsage', serverAuth: request.profile === 'server-client', clientAuth: true},
		...(altNames.length > 0 ? [{name: 'subjectAltName', altNames}] : []),
		...keyIds,
	];
}

/** Issues a certificate for the key pair, signed by the issuer (or self-signed for a CA without one). */
export function issueCertificate(request: CertificateRequest, keyPair: KeyPair, issuer?: Issuer, now = new Date()): string {
	const cert = pki.createCertificate();
	cert.publicKey = pki.publicKeyFromPem(keyPair.publicKeyPem);
	cert.serialNumber = serialNumber();
	cert.validity.notBefore = new Date(now.getTime() - backdateMs);
	cert.validity.notAfter = new Date(now.getTime() + (request.validityDays * 24 * 3600 * 1000));
	cert.setSubject(subjectAttributes(request.subject));

	const subjectKeyId = cert.generateSubjectKeyIdentifier().getBytes();
	let authorityKeyId = subjectKeyId;
	if (issuer) {
		const issuerCert = pki.certificateFromPem(issuer.certPem);
		cert.setIssuer(issuerCert.subject.attributes);
		authorityKeyId = issuerCert.generateSubjectKeyIdentifier().getBytes();
	} else {
		cert.setIssuer(cert.subject.attributes);
	}

	cert.setExtensions(extensionsFor(request, subjectKeyId, authorityKeyId));
	// What cert.sign does, with the RSA signature made by Node's crypto: forge's is pure JavaScript
	// (about 40 ms a certificate here, most of a cold render's CPU time).
	cert.signatureOid = cert.siginfo.algorithmOid = pki.oids.sha256WithRSAEncryption!;
	cert.tbsCertificate = (pki as unknown as {getTBSCertificate: (certificate: forge.pki.Certificate) => forge.asn1.Asn1}).getTBSCertificate(cert);
	const tbs = Buffer.from(forge.asn1.toDer(cert.tbsCertificate).getBytes(), 'binary');
	cert.signature = nativeSign('sha256', tbs, issuer?.keyPem ?? keyPair.privateKeyPem).toString('binary');
	return pki.certificateToPem(cert);
}

export type CertificateFacts = {
	subject: string;
	issuer: string;
	ipSans: string[];
	dnsSans: string[];
	isCa: boolean;
	serverAuth: boolean;
	clientAuth: boolean;
	notBefore: Date;
	notAfter: Date;
	publicKeyPem: string;
};

function distinguishedName(attributes: forge.pki.CertificateField[]): string {
	return attributes.map(attribute => `${attribute.shortName ?? attribute.name}=${String(attribute.value)}`).join(',');
}

export function subjectToString(subject: Subject): string {
	return distinguishedName(subjectAttributes(subject));
}

export const readCertificate: (certPem: string) => Readonly<CertificateFacts> = remembered((certPem: string) => Object.freeze(parseCertificate(certPem)));

function parseCertificate(certPem: string): CertificateFacts {
	const cert = pki.certificateFromPem(certPem);
	const altNames = (cert.getExtension('subjectAltName') as {altNames?: Array<{type: number; value?: string; ip?: string}>} | null)?.altNames ?? [];
	const basic = cert.getExtension('basicConstraints') as {cA?: boolean} | null;
	const extended = cert.getExtension('extKeyUsage') as {serverAuth?: boolean; clientAuth?: boolean} | null;
	return {
		subject: distinguishedName(cert.subject.attributes),
		issuer: distinguishedName(cert.issuer.attributes),
		ipSans: altNames.filter(name => name.type === 7).map(name => name.ip!).sort(),
		dnsSans: altNames.filter(name => name.type === 2).map(name => name.value!).sort(),
		isCa: basic?.cA === true,
		serverAuth: extended?.serverAuth === true,
		clientAuth: extended?.clientAuth === true,
		notBefore: cert.validity.notBefore,
		notAfter: cert.validity.notAfter,
		publicKeyPem: publicKeyPemOf(pki.publicKeyToPem(cert.publicKey)),
	};
}

/** True when the certificate names the CA as its issuer and was signed by the CA's key (natively: forge's RSA took 15 ms a certificate). */
export const isSignedBy = remembered((certPem: string, caCertPem: string): boolean => {
	try {
		const [cert, ca] = [new X509Certificate(certPem), new X509Certificate(caCertPem)];
		return cert.checkIssued(ca) && cert.verify(ca.publicKey);
	} catch {
		return false;
	}
});

/** True when the certificate already says everything the request asks, for this key and this CA. */
export function certificateMatches(certPem: string, request: CertificateRequest, keyPair: KeyPair, caCertPem: string): boolean {
	const facts = readCertificate(certPem);
	const same = (a: string[], b: string[]) => a.length === b.length && a.every((value, index) => value === b[index]);
	return facts.subject === subjectToString(request.subject)
		&& same(facts.ipSans, [...(request.ipSans ?? [])].sort())
		&& same(facts.dnsSans, [...(request.dnsSans ?? [])].sort())
		&& facts.isCa === (request.profile === 'ca')
		&& facts.serverAuth === (request.profile === 'server-client')
		&& facts.publicKeyPem === keyPair.publicKeyPem
		&& isSignedBy(certPem, caCertPem);
}
