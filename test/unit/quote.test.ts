import {execFileSync} from 'node:child_process';
import fc from 'fast-check';
import {describe, expect, test} from 'vitest';
import {shellQuote, shellWords} from '../../source/remote/quote.js';

/** Characters that mean something to a shell, and a few that only look harmless. */
const hostileCharacters = [...'\'"`$\\;|&<>(){}[]*?~!#=%^ \t\n\r-,.:/@+\u00A0\u2028é中'];
const hostile = fc.oneof(
	fc.string({unit: fc.constantFrom(...hostileCharacters), maxLength: 40}),
	fc.string({unit: 'grapheme', maxLength: 40}),
	fc.string({unit: 'binary', maxLength: 40}).map(value => value.replaceAll('\0', '')),
);

/**
 * What a master does with a script: ssh hands `sh -c <quoted script>` to the login shell (bash or
 * dash here), which runs the script in sh. The script prints every value NUL-terminated.
 */
function roundTrip(shell: string, values: string[]): string[] {
	const script = `printf '%s\\0' ${shellWords(values)}`;
	const wrapped = `sh -c ${shellQuote(script)}`;
	const output = execFileSync(shell, ['-c', wrapped], {encoding: 'utf8'});
	return output.split('\0').slice(0, -1);
}

describe('the one quoting function', () => {
	test.each(['bash', 'dash'])('any string comes back unchanged through the login shell (%s) and sh -c', shell => {
		fc.assert(fc.property(fc.array(hostile, {minLength: 1, maxLength: 8}), values => {
			expect(roundTrip(shell, values)).toEqual(values);
		}), {numRuns: 300});
	});

	test('a value never runs: command substitutions stay text and touch nothing', () => {
		fc.assert(fc.property(fc.constantFrom('$(touch /tmp/k8smi-pwned)', '`touch /tmp/k8smi-pwned`', '\'; touch /tmp/k8smi-pwned; \'', '"; touch /tmp/k8smi-pwned #'), fc.string({maxLength: 5}), (attack, suffix) => {
			expect(roundTrip('bash', [attack + suffix])).toEqual([attack + suffix]);
		}), {numRuns: 50});
		expect(() => execFileSync('test', ['-e', '/tmp/k8smi-pwned'])).toThrow();
	});

	test('NUL cannot be passed and is refused, not cut short', () => {
		expect(() => shellQuote('a\0b')).toThrow(/NUL/);
	});
});
