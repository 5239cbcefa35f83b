import YAML from 'yaml';
import {InputError} from '../errors.js';

/**
 * Far above a real cluster config (four levels, a few hundred keys, a few thousand tokens), far
 * below what exhausts the parser: it builds a tree of every token, recurses once per level and
 * checks each key against every other key of its map; an alias of aliases multiplies the nodes.
 */
export const yamlLimits = {tokens: 100_000, depth: 32, keys: 1000, aliasCount: 100};

const fix = 'check that the file is the cluster config (see README, "Cluster config"): it needs a few levels and a few hundred keys at most';

/**
 * Counts what the parser would have to build, from the lexer's tokens (cheap, and it stops at the
 * first limit passed): tokens, keys, and the depth of nesting, as flow brackets plus block levels
 * (a level per deeper indentation, and per "- " or "? " on one line).
 */
export function checkYamlLimits(text: string, source: string): void {
	let tokens = 0;
	let keys = 0;
	let line = 1;
	let flowDepth = 0;
	let atLineStart = true;
	let indent = 0;
	let indicatorsOnLine = 0;
	// The columns of the block levels open above this line.
	const indents: number[] = [];
	for (const token of new YAML.Lexer().lex(text)) {
		const refuse = (problem: string) => new InputError(source, `line ${line}`, problem, fix);
		if (++tokens > yamlLimits.tokens) {
			throw refuse(`holds more than ${yamlLimits.tokens} YAML tokens, which no cluster config needs`);
		}

		const type = YAML.CST.tokenType(token);
		// Block scalars and multi-line quoted scalars are one token of several lines.
		line += token.split('\n').length - 1;
		if (type === 'newline' || type === 'comment' || (type === 'space' && !atLineStart)) {
			if (type === 'newline') {
				atLineStart = true;
				indent = 0;
				indicatorsOnLine = 0;
			}

			continue;
		}

		if (type === 'space') {
			indent = token.length;
			continue;
		}

		if (atLineStart && flowDepth === 0) {
			while (indents.length > 0 && indents.at(-1)! >= indent) {
				indents.pop();
			}

			indents.push(indent);
		}

		atLineStart = false;
		if (type === 'flow-seq-start' || type === 'flow-map-start') {
			flowDepth++;
		} else if (type === 'flow-seq-end' || type === 'flow-map-end') {
			flowDepth = Math.max(0, flowDepth - 1);
		} else if ((type === 'seq-item-ind' || type === 'explicit-key-ind') && flowDepth === 0) {
			indicatorsOnLine++;
		}

		if (type === 'map-value-ind' && ++keys > yamlLimits.keys) {
			throw refuse(`holds more than ${yamlLimits.keys} keys, which no cluster config needs`);
		}

		if (indents.length + indicatorsOnLine + flowDepth > yamlLimits.depth) {
			throw refuse(`nests deeper than ${yamlLimits.depth} levels, which no cluster config needs`);
		}
	}
}

/** The document's data, with aliases expanded at most to the limit (an "alias bomb" would fill the memory). */
export function toDataWithinLimits(document: YAML.Document, source: string): unknown {
	try {
		return document.toJS({maxAliasCount: yamlLimits.aliasCount});
	} catch (error) {
		if (error instanceof ReferenceError && /alias/i.test(error.message)) {
			throw new InputError(source, 'aliases (*name)', `expands its aliases to more than ${yamlLimits.aliasCount} nodes, the way a YAML "alias bomb" exhausts memory`, 'write the values out, or use an alias only for a value that holds no further aliases');
		}

		throw error;
	}
}
