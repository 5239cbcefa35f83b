/** Several reads in one round trip: each part runs in a `{ }` group after its own `##k8smi## NAME` line. */
export function sectionsScript(parts: Record<string, string>): string {
	return Object.entries(parts).map(([name, part]) => `echo '##k8smi## ${name}'\n{\n${part}\n}`).join('\n');
}

/** What each part printed, by name. */
export function splitSections(output: string): Map<string, string> {
	// split with a capture group: [before, name, text, name, text, ...]
	const parts = output.split(/^##k8smi## (\w+)$/m);
	const found = new Map<string, string>();
	for (let index = 1; index < parts.length; index += 2) {
		found.set(parts[index]!, parts[index + 1] ?? '');
	}

	return found;
}
