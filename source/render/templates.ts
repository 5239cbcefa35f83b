import {existsSync, readFileSync} from 'node:fs';
import path from 'node:path';
import {fileURLToPath} from 'node:url';
import {InputError} from '../errors.js';
import {readLocalTextSync} from '../safe-read.js';

/** templates/ sits beside dist/ (the bundle) and two levels above source/render (tests). */
const templatesDir = ['../templates/', '../../templates/'].map(relative => fileURLToPath(new URL(relative, import.meta.url))).find(dir => existsSync(path.join(dir, 'kube-apiserver.service')))!;

const cache = new Map<string, string>();

/** The shipped templates, and the operator's copies read like every file the operator names. */
function read(file: string, own: boolean): string {
	let text = cache.get(file);
	if (text === undefined) {
		text = own ? readLocalTextSync(file, {field: 'templatesDir', kind: 'template', fix: `make ${path.basename(file)} there a regular file, your copy of templates/${path.basename(file)}`}) : readFileSync(file, 'utf8');
		cache.set(file, text);
	}

	return text;
}

/**
 * Fills {{NAME}} placeholders. In the shipped templates a placeholder without a value, or a value
 * without a placeholder, is a bug. An operator's copy (from `templatesDir`) may leave values out;
 * a placeholder this tool does not fill is their mistake, named as such. `earlier` fills what only
 * such a copy may still use: placeholders of an earlier release of this tool, while they mean the same.
 */
export function renderTemplate(name: string, values: Record<string, string>, operatorDir?: string, earlier: Record<string, string> = {}): string {
	const own = operatorDir !== undefined && existsSync(path.join(operatorDir, name)) ? path.join(operatorDir, name) : undefined;
	const text = read(own ?? `${templatesDir}${name}`, own !== undefined);
	const used = new Set<string>();
	const rendered = text.replaceAll(/{{([A-Z\d_]+)}}/g, (_, key: string) => {
		const value = values[key] ?? (own ? earlier[key] : undefined);
		if (value === undefined) {
			if (own) {
				throw new InputError('templatesDir', own, `uses {{${key}}}, which this tool does not fill for ${name}`, `use only ${Object.keys(values).map(each => `{{${each}}}`).join(', ')}`);
			}

			throw new Error(`template ${name} needs a value for {{${key}}}`);
		}

		used.add(key);
		return value;
	});
	const unused = Object.keys(values).filter(key => !used.has(key));
	if (unused.length > 0 && !own) {
		throw new Error(`template ${name} has no place for ${unused.join(', ')}`);
	}

	return rendered;
}
