import {createPrivateKey, privateDecrypt, publicEncrypt, constants} from 'node:crypto';
import {describe, expect, it} from 'vitest';
import {generateRsaKeyPair} from '../../source/pki/rsa.js';

const big = (base64url: string): bigint => BigInt(`0x${Buffer.from(base64url, 'base64url').toString('hex')}`);

function gcd(a: bigint, b: bigint): bigint {
	return b === 0n ? a : gcd(b, a % b);
}

describe('RSA key pairs from two primes', () => {
	it('makes keys whose every PKCS#1 field agrees with the others', async () => {
		const pairs = await Promise.all([generateRsaKeyPair(), generateRsaKeyPair(), generateRsaKeyPair()]);
		for (const pair of pairs) {
			expect(pair.privateKeyPem).toMatch(/^-----BEGIN RSA PRIVATE KEY-----\n/);
			expect(pair.publicKeyPem).toMatch(/^-----BEGIN PUBLIC KEY-----\n/);
			const jwk = createPrivateKey(pair.privateKeyPem).export({format: 'jwk'});
			const field = (name: 'n' | 'e' | 'd' | 'p' | 'q' | 'dp' | 'dq' | 'qi') => big(jwk[name]!);
			const [n, e, d, p, q, dp, dq, qi] = [field('n'), field('e'), field('d'), field('p'), field('q'), field('dp'), field('dq'), field('qi')];
			expect(n.toString(2)).toHaveLength(2048);
			expect(e).toBe(65_537n);
			expect(p * q).toBe(n);
			expect(p).not.toBe(q);
			const lambda = ((p - 1n) * (q - 1n)) / gcd(p - 1n, q - 1n);
			expect((e * d) % lambda).toBe(1n);
			expect(dp).toBe(d % (p - 1n));
			expect(dq).toBe(d % (q - 1n));
			expect((qi * q) % p).toBe(1n);
			const secret = Buffer.from('encrypted with the public half');
			expect(privateDecrypt({key: pair.privateKeyPem, padding: constants.RSA_PKCS1_OAEP_PADDING}, publicEncrypt(pair.publicKeyPem, secret))).toEqual(secret);
		}

		expect(new Set(pairs.map(pair => pair.privateKeyPem)).size).toBe(3);
	});
});
