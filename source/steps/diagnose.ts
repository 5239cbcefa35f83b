/** Known kube-apiserver start-up failures (from the real binaries' messages) and their fixes. */
const knownFailures: Array<{pattern: RegExp; fix: (match: RegExpExecArray) => string}> = [
	{pattern: /unknown flag: (--[\w-]+)/, fix: m => `this kube-apiserver does not accept ${m[1]}: the tarball's release and \`version:\` in the config must be the same release`},
	{pattern: /unrecognized feature gate: (\w+)/, fix: m => `feature gate ${m[1]} does not exist in this release: check that \`version:\` matches the tarball`},
	{pattern: /service-account-issuer is a required flag/, fix: () => 'this release needs --service-account-issuer and --service-account-signing-key-file (1.20+): check that `version:` matches the tarball'},
	{pattern: /no kind "Policy" is registered for version "([^"]+)"/, fix: m => `the audit policy's apiVersion ${m[1]} is not known to this release: check that \`version:\` matches the tarball`},
	{pattern: /illegal base64|invalid key length|failed to decode/i, fix: () => 'the encryption key is not valid base64 of 32 bytes: restore pki/encryption.key in the state folder'},
	{pattern: /address already in use/, fix: () => 'something else listens on port 6443 on this master: stop it (ss -ltnp | grep 6443)'},
	{pattern: /(context deadline exceeded|connection refused|certificate signed by unknown authority).*(etcd|2379)|(etcd|2379).*(context deadline exceeded|connection refused|certificate signed by unknown authority)/i, fix: () => 'the apiserver cannot reach etcd: check etcd.endpoints, that etcd is healthy, and that etcd trusts the CA that signed kubernetes.pem'},
	{pattern: /status=200\/CHDIR/, fix: () => 'the unit\'s WorkingDirectory is missing: run apply again (the units step makes it)'},
	{pattern: /status=203\/EXEC/, fix: () => 'kube-apiserver is missing or not executable in the bin directory: run apply again from the binaries step'},
];

export function diagnoseApiserver(log: string): string | undefined {
	for (const {pattern, fix} of knownFailures) {
		const match = pattern.exec(log);
		if (match) {
			return fix(match);
		}
	}

	return undefined;
}
