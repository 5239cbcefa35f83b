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
