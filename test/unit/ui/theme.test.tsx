import {afterEach, describe, expect, test} from 'vitest';

// Colour must be possible at all for "no colour" to mean something: force chalk on before Ink
// loads (every import that reaches ink is dynamic, below this line).
process.env.FORCE_COLOR = '1';
const {render, cleanup} = await import('ink-testing-library');
const {Box} = await import('ink');
const {ThemeProvider, Txt, themeFromEnv, toneColor} = await import('../../../source/ui/theme.js');
const {Menu} = await import('../../../source/ui/components/Menu.js');
const {FinishedStep} = await import('../../../source/ui/screens/History.js');

afterEach(cleanup);

const colourCode = /\u001B\[(3[0-7]|9[0-7]|38;)/;

function sample(color: boolean) {
	return render(
		<ThemeProvider theme={{color}}>
			<Box flexDirection="column">
				<Txt tone="ok">installed</Txt>
				<Txt tone="bad">failed</Txt>
				<FinishedStep step={{id: 'certs', title: 'Place certificates and keys', scope: 'each-master', status: 'failed', durationMs: 12, hosts: [{host: 'k8smaster01', status: 'done', durationMs: 3}, {host: 'k8smaster02', status: 'failed', durationMs: 4}]}} />
				<Menu items={[{label: 'Retry', value: 'retry'}, {label: 'Abort', value: 'abort'}]} onSelect={() => undefined} />
			</Box>
		</ThemeProvider>,
	);
}

describe('NO_COLOR', () => {
	test('themeFromEnv: set and non-empty turns colour off', () => {
		expect(themeFromEnv({}).color).toBe(true);
		expect(themeFromEnv({NO_COLOR: '1'}).color).toBe(false);
		expect(themeFromEnv({NO_COLOR: ''}).color).toBe(true);
		expect(toneColor('bad', {color: false})).toBeUndefined();
		expect(toneColor('bad', {color: true})).toBe('red');
	});

	test('with colour, marks and the selected item are coloured', () => {
		const frame = sample(true).lastFrame() ?? '';
		expect(frame).toMatch(colourCode);
		expect(frame).toContain('✘');
	});

	test('without colour, the same screen holds no colour code at all', () => {
		const frame = sample(false).lastFrame() ?? '';
		expect(frame).not.toMatch(colourCode);
		expect(frame.replaceAll(/\u001B\[[\d;]*m/g, '')).toContain('❯ Retry');
		expect(frame.replaceAll(/\u001B\[[\d;]*m/g, '')).toMatch(/✘ k8smaster02 +failed {2}4 ms/);
	});
});
