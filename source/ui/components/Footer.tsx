import {Box} from 'ink';
import {Txt} from '../theme.js';

export type KeyHint = [key: string, what: string];

/** The keys that work on this screen, always on screen. */
export function Footer({keys}: {keys: KeyHint[]}) {
	if (keys.length === 0) {
		return null;
	}

	return (
		<Box marginTop={1}>
			<Txt tone="muted">{keys.map(([key, what]) => `${key} ${what}`).join('  ·  ')}</Txt>
		</Box>
	);
}
