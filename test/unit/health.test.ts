import https from 'node:https';
import path from 'node:path';
import {afterAll, beforeAll, describe, expect, test} from 'vitest';
import {generateKeyPair, issueCertificate} from '../../source/pki/certs.js';
import {callApi, getHealth, type TlsClient} from '../../source/remote/health.js';
import {tempDir} from '../helpers/temp.js';

/** An apiserver stand-in listening on a unix socket, as an ssh forward presents one on the workstation. */
describe('apiserver calls over a forwarded socket', () => {
	let server: https.Server;
	let socket: string;
	let client: TlsClient;

	beforeAll(async () => {
		const caKeys = await generateKeyPair();
		const ca = issueCertificate({subject: {CN: 'test-ca'}, profile: 'ca', validityDays: 1}, caKeys);
		const issuer = {certPem: ca, keyPem: caKeys.privateKeyPem};
		const serverKeys = await generateKeyPair();
		const clientKeys = await generateKeyPair();
		server = https.createServer({
			key: serverKeys.privateKeyPem,
			cert: issueCertificate({subject: {CN: 'kubernetes'}, profile: 'server-client', ipSans: ['172.24.8.71'], validityDays: 1}, serverKeys, issuer),
			ca, requestCert: true, rejectUnauthorized: true,
		}, (request, response) => {
			response.writeHead(200).end(`${request.method} ${request.url}`);
		});
		socket = path.join(tempDir('k8smi-health-'), 'api-1');
		await new Promise<void>(resolve => server.listen(socket, resolve));
		client = {ca, cert: issueCertificate({subject: {CN: 'admin', O: 'system:masters'}, profile: 'client', validityDays: 1}, clientKeys, issuer), key: clientKeys.privateKeyPem};
	});

	afterAll(async () => {
		server.closeAllConnections();
		await new Promise(resolve => server.close(resolve));
	});

	test('the call goes through the socket, with the client certificate, and the server is checked for the master\'s address', async () => {
		expect(await getHealth('172.24.8.71', 6443, '/readyz', client, 5000, socket)).toMatchObject({ok: true, status: 200, body: 'GET /readyz'});
		expect(await callApi('172.24.8.71', 6443, {method: 'POST', path: '/api', body: {}}, client, 5000, socket)).toMatchObject({ok: true, body: 'POST /api'});
	});

	test('a certificate for another address is refused, as on a direct connection', async () => {
		const answer = await getHealth('172.24.8.72', 6443, '/readyz', client, 5000, socket);
		expect(answer.ok).toBe(false);
		expect(answer.error).toMatch(/172\.24\.8\.72|altnames|IP/);
	});

	test('a socket nothing listens on is named in the error (the forward is then made again)', async () => {
		const gone = path.join(path.dirname(socket), 'api-2');
		expect((await getHealth('172.24.8.71', 6443, '/readyz', client, 5000, gone)).error).toContain(gone);
	});
});
