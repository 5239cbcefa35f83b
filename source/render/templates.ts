import {readFileSync} from 'node:fs';
import {fileURLToPath} from 'node:url';

/** templates/ sits two levels above both source/render and dist/render. */
const templatesDir = fileURLToPath(new URL('../../templates/', import.meta.url));

const cache = new Map<string, string>();

/** Fills {{NAME}} placeholders; a placeholder without a value, or a value without a placeholder, is a bug. */
export function renderTemplate(name: string, values: Record<string, string>): string {
	let text = cache.get(name);
	if (text === undefined) {
		text = readFileSync(`${templatesDir}${name}`, 'utf8');
		cache.set(name, text);
	}

	const used = new Set<string>();
	const rendered = text.replaceAll(/{{([A-Z\d_]+)}}/g, (_, key: string) => {
		const value = values[key];
		if (value === undefined) {
			throw new Error(`template ${name} needs a value for {{${key}}}`);
		}

		used.add(key);
		return value;
	});
	const unused = Object.keys(values).filter(key => !used.has(key));
	if (unused.length > 0) {
		throw new Error(`template ${name} has no place for ${unused.join(', ')}`);
	}

	return rendered;
}
