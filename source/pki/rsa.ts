import {createPrivateKey, createPublicKey, generatePrime, sign, verify} from 'node:crypto';

/**
 * RSA-2048 from two random 1024-bit primes, as Go (cfssl) and OpenSSL 1.1 make them.
 * OpenSSL 3's own RSA key generation follows SP 800-56B (auxiliary primes) and takes ~3x as long
 * here; the primes still come from OpenSSL (its CSPRNG, 64 Miller-Rabin rounds), only the
 * arithmetic that assembles the key is done here, and the result is checked before it is used.
 */
const publicExponent = 65_537n;
const primeBits = 1024;

async function randomPrime(): Promise<bigint> {
	return new Promise((resolve, reject) => {
		// OpenSSL sets the top two bits, so the product of two such primes has exactly 2048 bits.
		generatePrime(primeBits, {bigint: true}, (error, prime) => {
			if (error) {
				reject(error);
			} else {
				resolve(prime);
			}
		});
	});
}

/** A prime p with gcd(e, p - 1) = 1, so that e is invertible. */
async function keyPrime(): Promise<bigint> {
	for (;;) {
		const prime = await randomPrime();
		if (gcd(publicExponent, prime - 1n) === 1n) {
			return prime;
		}
	}
}

function gcd(a: bigint, b: bigint): bigint {
	while (b !== 0n) {
		[a, b] = [b, a % b];
	}

	return a;
}

function modInverse(value: bigint, modulus: bigint): bigint {
	let [oldR, r] = [value % modulus, modulus];
	let [oldS, s] = [1n, 0n];
	while (r !== 0n) {
		const quotient = oldR / r;
		[oldR, r] = [r, oldR - (quotient * r)];
		[oldS, s] = [s, oldS - (quotient * s)];
	}

	if (oldR !== 1n) {
		throw new Error('not invertible');
	}

	return ((oldS % modulus) + modulus) % modulus;
}

function bitLength(value: bigint): number {
	return value.toString(2).length;
}

function derLength(length: number): Buffer {
	if (length < 0x80) {
		return Buffer.from([length]);
	}

	const bytes = Buffer.from(length.toString(16).padStart(length > 0xFF ? 4 : 2, '0'), 'hex');
	return Buffer.concat([Buffer.from([0x80 | bytes.length]), bytes]);
}

function derInteger(value: bigint): Buffer {
	let hex = value.toString(16);
	hex = hex.length % 2 === 1 ? `0${hex}` : hex;
	// A leading 0x00 keeps a value whose top bit is set positive.
	const body = Buffer.from(/^[89a-f]/.test(hex) ? `00${hex}` : hex, 'hex');
	return Buffer.concat([Buffer.from([0x02]), derLength(body.length), body]);
}

/** PKCS#1 RSAPrivateKey (RFC 8017 A.1.2), two primes. */
function pkcs1(fields: bigint[]): Buffer {
	const body = Buffer.concat([derInteger(0n), ...fields.map(field => derInteger(field))]);
	return Buffer.concat([Buffer.from([0x30]), derLength(body.length), body]);
}

export type RsaKeyPem = {privateKeyPem: string; publicKeyPem: string};

export async function generateRsaKeyPair(): Promise<RsaKeyPem> {
	for (;;) {
		const [p, q] = await Promise.all([keyPrime(), keyPrime()]);
		const n = p * q;
		// FIPS 186-4 B.3.1: |p - q| > 2^(nlen/2 - 100), and d > 2^(nlen/2); drawn again otherwise (vanishingly rare).
		const distance = p > q ? p - q : q - p;
		const lambda = ((p - 1n) * (q - 1n)) / gcd(p - 1n, q - 1n);
		const d = modInverse(publicExponent, lambda);
		if (bitLength(n) !== 2 * primeBits || bitLength(distance) <= primeBits - 100 || bitLength(d) <= primeBits) {
			continue;
		}

		const [first, second] = p > q ? [p, q] : [q, p];
		const der = pkcs1([n, publicExponent, d, first, second, d % (first - 1n), d % (second - 1n), modInverse(second, first)]);
		const privateKey = createPrivateKey({key: der, format: 'der', type: 'pkcs1'});
		const publicKey = createPublicKey(privateKey);
		// Pairwise consistency: the key signs, and its public half accepts the signature.
		const probe = Buffer.from('k8s-master-install key check');
		if (!verify('sha256', probe, publicKey, sign('sha256', probe, privateKey))) {
			throw new Error('a generated RSA key failed its consistency check');
		}

		return {
			privateKeyPem: privateKey.export({type: 'pkcs1', format: 'pem'}).toString(),
			publicKeyPem: publicKey.export({type: 'spki', format: 'pem'}).toString(),
		};
	}
}
