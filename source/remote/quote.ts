/**
 * The one quoting function for values that reach a remote shell: every path, name and value is
 * wrapped in single quotes, and a single quote inside becomes '\''. NUL cannot be passed at all.
 */
export function shellQuote(value: string): string {
	if (value.includes('\0')) {
		throw new Error('a NUL byte cannot be passed to a remote shell');
	}

	return /^[\w./:=@,+-]+$/.test(value) ? value : `'${value.replaceAll('\'', '\'\\\'\'')}'`;
}

/** A command line of quoted words. */
export function shellWords(words: readonly string[]): string {
	return words.map(word => shellQuote(word)).join(' ');
}
