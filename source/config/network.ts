/** IPv4 arithmetic for the cluster facts: addresses, CIDRs, the kubernetes service IP. */

const octet = '(25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)';
const ipv4Pattern = new RegExp(`^${octet}\\.${octet}\\.${octet}\\.${octet}$`);

export function isIpv4(text: string): boolean {
	return ipv4Pattern.test(text);
}

export function ipv4ToNumber(ip: string): number {
	return ip.split('.').reduce((sum, part) => (sum * 256) + Number(part), 0);
}

export function numberToIpv4(value: number): string {
	return [24, 16, 8, 0].map(shift => Math.floor(value / (2 ** shift)) % 256).join('.');
}

export type Cidr = {network: number; prefix: number; size: number};

export function parseCidr(text: string): Cidr | undefined {
	const [ip, prefixText, ...rest] = text.split('/');
	if (rest.length > 0 || ip === undefined || prefixText === undefined || !isIpv4(ip) || !/^\d{1,2}$/.test(prefixText)) {
		return undefined;
	}

	const prefix = Number(prefixText);
	if (prefix > 32) {
		return undefined;
	}

	const size = 2 ** (32 - prefix);
	const address = ipv4ToNumber(ip);
	return {network: address - (address % size), prefix, size};
}

/** True when the address part has host bits set, e.g. 10.254.0.1/16. */
export function cidrHasHostBits(text: string): boolean {
	const cidr = parseCidr(text);
	return cidr !== undefined && ipv4ToNumber(text.split('/')[0]!) !== cidr.network;
}

export function cidrContains(cidr: Cidr, ip: string): boolean {
	const address = ipv4ToNumber(ip);
	return address >= cidr.network && address < cidr.network + cidr.size;
}

/** The first usable address of the service range: the ClusterIP of the kubernetes service. */
export function kubernetesServiceIp(serviceCidr: string): string {
	const cidr = parseCidr(serviceCidr);
	if (!cidr) {
		throw new Error(`not a CIDR: ${serviceCidr}`);
	}

	return numberToIpv4(cidr.network + 1);
}

/** A DNS name (RFC 1123, lower case); the last label is not all digits, so 999.1.1.1 is no name. */
export function isDnsName(text: string): boolean {
	return text.length <= 253 && /^([a-z\d]([a-z\d-]{0,61}[a-z\d])?\.)*[a-z\d]([a-z\d-]{0,61}[a-z\d])?$/.test(text) && !/(^|\.)\d+$/.test(text);
}

/** The port the apiservers serve on, and an endpoint's port when it names none (as kubeadm's). */
export const apiserverPort = 6443;

export type Endpoint = {host: string; port: number};

/** HOST[:PORT], HOST an IPv4 address or a DNS name; undefined when it is neither. */
export function parseEndpoint(text: string): Endpoint | undefined {
	const match = /^([^:]+)(?::(\d{1,5}))?$/.exec(text);
	const port = match?.[2] === undefined ? apiserverPort : Number(match[2]);
	return match && (isIpv4(match[1]!) || isDnsName(match[1]!)) && port >= 1 && port <= 65_535 ? {host: match[1]!, port} : undefined;
}

/**
 * A name given to ssh as a destination: an address, a DNS name or a `Host` alias of the operator's
 * ssh config (which may hold upper case and _). Never starting with -, so ssh never reads it as an option.
 */
export function isSshHostName(text: string): boolean {
	return text.length <= 253 && /^[A-Za-z\d_]([\w.-]*[A-Za-z\d_])?$/.test(text);
}

/** The jump host every ssh connection goes through: the name ssh is given, with user and port when set. */
export type Bastion = {host: string; user?: string; port?: number};

/** `[USER@]HOST[:PORT]`, as ssh -J takes one hop. */
export function parseBastion(text: string): Bastion | undefined {
	const match = /^(?:([a-z_][\w.-]{0,31})@)?([^@:]+)(?::(\d{1,5}))?$/.exec(text);
	if (!match || !isSshHostName(match[2]!)) {
		return undefined;
	}

	const port = match[3] === undefined ? undefined : Number(match[3]);
	if (port !== undefined && (port < 1 || port > 65_535)) {
		return undefined;
	}

	return {host: match[2]!, ...(match[1] === undefined ? {} : {user: match[1]}), ...(port === undefined ? {} : {port})};
}
