import {createHash} from 'node:crypto';
import https from 'node:https';
import {createSecureContext, type SecureContext} from 'node:tls';

export type TlsClient = {ca: string; cert: string; key: string};

export type HealthAnswer = {ok: boolean; status: number; body: string; error?: string};

export type ApiRequest = {method: 'GET' | 'POST' | 'PUT' | 'DELETE'; path: string; body?: unknown; headers?: Record<string, string>};

/**
 * One connection pool per endpoint and identity: a run's many calls (readiness polls, checks) share
 * kept-alive TLS connections instead of a handshake each. Idle sockets do not keep the process alive.
 * One TLS context per identity: made per connection, it parsed the key and the CA again each time.
 */
const agents = new Map<string, https.Agent>();
const secureContexts = new Map<string, SecureContext>();

function connectionFor(ip: string, port: number, tls: TlsClient, via: string | undefined): {agent: https.Agent; secureContext: SecureContext} {
	const identity = createHash('sha256').update(tls.cert).update(tls.ca).update(tls.key).digest('hex');
	let secureContext = secureContexts.get(identity);
	if (!secureContext) {
		secureContext = createSecureContext({ca: tls.ca, cert: tls.cert, key: tls.key});
		secureContexts.set(identity, secureContext);
	}

	const key = `${ip}:${port}:${via ?? ''}:${identity}`;
	let agent = agents.get(key);
	if (!agent) {
		agent = new https.Agent({keepAlive: true, maxSockets: 8});
		agents.set(key, agent);
	}

	return {agent, secureContext};
}

/**
 * One HTTPS call to a component: JSON in and out, client certificate, server certificate checked against
 * the CA. `via`: a local socket forwarded to ip:port (through a bastion); the certificate is still checked for ip.
 */
export async function callApi(ip: string, port: number, request: ApiRequest, tls: TlsClient, timeoutMs = 10_000, via?: string): Promise<HealthAnswer> {
	return send(ip, port, request, tls, timeoutMs, via, false);
}

async function send(ip: string, port: number, request: ApiRequest, tls: TlsClient, timeoutMs: number, via: string | undefined, retried: boolean): Promise<HealthAnswer> {
	const payload = request.body === undefined ? undefined : JSON.stringify(request.body);
	return new Promise(resolve => {
		const call = https.request({
			host: ip, port, ...via === undefined ? {} : {socketPath: via}, path: request.path, method: request.method, ...connectionFor(ip, port, tls, via), timeout: timeoutMs,
			headers: {accept: 'application/json', ...(payload === undefined ? {} : {'content-type': 'application/json', 'content-length': Buffer.byteLength(payload)}), ...request.headers},
		}, response => {
			let body = '';
			response.setEncoding('utf8');
			response.on('data', (chunk: string) => {
				body += chunk;
			});
			response.on('end', () => resolve({ok: (response.statusCode ?? 0) >= 200 && (response.statusCode ?? 0) < 300, status: response.statusCode ?? 0, body}));
		});
		call.on('timeout', () => call.destroy(new Error(`no answer in ${timeoutMs} ms`)));
		call.on('error', (error: NodeJS.ErrnoException) => {
			// A kept-alive connection the server closed meanwhile: a GET is asked once more on a new one
			// (a POST or DELETE may have been done, so it is not sent twice).
			if (call.reusedSocket && error.code === 'ECONNRESET' && request.method === 'GET' && !retried) {
				resolve(send(ip, port, request, tls, timeoutMs, via, true));
				return;
			}

			resolve({ok: false, status: 0, body: '', error: error.message});
		});
		call.end(payload);
	});
}

export type Api = typeof callApi;

/** One GET of a health endpoint; ok means 200. */
export async function getHealth(ip: string, port: number, pathName: string, tls: TlsClient, timeoutMs = 5000, via?: string): Promise<HealthAnswer> {
	const answer = await callApi(ip, port, {method: 'GET', path: pathName, headers: {accept: '*/*'}}, tls, timeoutMs, via);
	return {...answer, ok: answer.status === 200};
}

/** How the engine asks a health endpoint; tests put a fake here. */
export type Probe = typeof getHealth;
