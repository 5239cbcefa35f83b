/** Known start-up failures of the control-plane services (from the real binaries' messages) and their fixes. */
const knownFailures: Array<{pattern: RegExp; fix: (match: RegExpExecArray, unit: string) => string}> = [
	{pattern: /unknown flag: (--[\w-]+)/, fix: (m, unit) => `this ${unit} does not accept ${m[1]}: the tarball's release and \`version:\` in the config must be the same release`},
	{pattern: /unrecognized feature gate: (\w+)/, fix: m => `feature gate ${m[1]} does not exist in this release: check that \`version:\` matches the tarball`},
	{pattern: /service-account-issuer is a required flag/, fix: () => 'this release needs --service-account-issuer and --service-account-signing-key-file (1.20+): check that `version:` matches the tarball'},
	{pattern: /no kind \\?"(\w+)\\?" is registered for version \\?"([^"\\]+)\\?"/, fix: m => `${m[1]} ${m[2]} is not known to this release: check that \`version:\` matches the tarball`},
	{pattern: /illegal base64|invalid key length|failed to decode/i, fix: () => 'the encryption key is not valid base64 of 32 bytes: restore pki/encryption.key in the state folder'},
	{pattern: /unknown directive "stream"/, fix: () => 'this nginx lacks the stream module: install it (Debian/Ubuntu: libnginx-mod-stream; RHEL: nginx-mod-stream) and set nginx.streamModule to its .so, or `builtin` for an nginx built --with-stream'},
	{pattern: /dlopen\(\) "([^"]+)" failed/, fix: m => `nginx cannot load ${m[1]}: install the stream module package (Debian/Ubuntu: libnginx-mod-stream; RHEL: nginx-mod-stream, path /usr/lib64/nginx/modules/ngx_stream_module.so) or correct nginx.streamModule`},
	{pattern: /bind\(\) to ([\d.:]+) failed \(98|address already in use[^\n]*?([\d.]+:\d+)?/i, fix: (m, unit) => `something else listens on ${m[1] ?? m[2] ?? `the port of ${unit}`} on this master: stop it (ss -ltnp)`},
	{pattern: /(context deadline exceeded|connection refused|certificate signed by unknown authority).*(etcd|2379)|(etcd|2379).*(context deadline exceeded|connection refused|certificate signed by unknown authority)/i, fix: () => 'the apiserver cannot reach etcd: check etcd.endpoints, that etcd is healthy, and that etcd trusts the CA that signed kubernetes.pem'},
	{pattern: /dial tcp 127\.0\.0\.1:8443: connect: connection refused/, fix: () => 'kube-nginx does not listen on 127.0.0.1:8443 on this master: systemctl status kube-nginx'},
	{pattern: /status=200\/CHDIR/, fix: () => 'the unit\'s WorkingDirectory is missing: run apply again (the units step makes it)'},
	{pattern: /status=203\/EXEC/, fix: (_, unit) => (unit === 'kube-nginx' ? 'the nginx binary is missing: install nginx on the master or set nginx.binary' : `${unit} is missing or not executable in the bin directory: run apply again from the binaries step`)},
];

/** The fix for a service's start-up failure, from its journal; undefined when the journal names nothing known. */
export function diagnoseService(unit: string, log: string): string | undefined {
	for (const {pattern, fix} of knownFailures) {
		const match = pattern.exec(log);
		if (match) {
			return fix(match, unit);
		}
	}

	return undefined;
}
