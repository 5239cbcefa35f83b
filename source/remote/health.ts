import https from 'node:https';

export type TlsClient = {ca: string; cert: string; key: string};

export type HealthAnswer = {ok: boolean; status: number; body: string; error?: string};

/** One GET over TLS with the admin client certificate; the server certificate is checked against the CA. */
export async function getHealth(ip: string, port: number, pathName: string, tls: TlsClient, timeoutMs = 5000): Promise<HealthAnswer> {
	return new Promise(resolve => {
		const request = https.get({host: ip, port, path: pathName, ca: tls.ca, cert: tls.cert, key: tls.key, timeout: timeoutMs, agent: false}, response => {
			let body = '';
			response.setEncoding('utf8');
			response.on('data', (chunk: string) => {
				body += chunk;
			});
			response.on('end', () => resolve({ok: response.statusCode === 200, status: response.statusCode ?? 0, body}));
		});
		request.on('timeout', () => request.destroy(new Error(`no answer in ${timeoutMs} ms`)));
		request.on('error', error => resolve({ok: false, status: 0, body: '', error: error.message}));
	});
}

/** Polls until the endpoint answers 200 or the deadline passes; returns the last answer. */
export type Probe = typeof getHealth;

export async function waitForHealth(probe: Probe, ip: string, port: number, pathName: string, tls: TlsClient, deadlineMs: number, onWait: (answer: HealthAnswer) => void, shouldStop: () => boolean = () => false): Promise<HealthAnswer> {
	const end = Date.now() + deadlineMs;
	for (;;) {
		const answer = await probe(ip, port, pathName, tls);
		if (answer.ok || Date.now() >= end || shouldStop()) {
			return answer;
		}

		onWait(answer);
		await new Promise(resolve => setTimeout(resolve, 200));
	}
}
