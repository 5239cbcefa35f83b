import {createContext, useContext, type ReactNode} from 'react';
import {Text} from 'ink';

/** What a piece of text means; the theme decides how (or whether) that is coloured. */
export type Tone = 'plain' | 'ok' | 'warn' | 'bad' | 'info' | 'accent' | 'muted';

export type Theme = {color: boolean};

const colors: Record<Tone, string | undefined> = {
	plain: undefined,
	ok: 'green',
	warn: 'yellow',
	bad: 'red',
	info: 'cyan',
	accent: 'blue',
	muted: undefined,
};

/** https://no-color.org: NO_COLOR set to any non-empty value turns colour off. */
export function themeFromEnv(env: Record<string, string | undefined>): Theme {
	return {color: !env.NO_COLOR};
}

const ThemeContext = createContext<Theme>({color: true});

export function ThemeProvider({theme, children}: {theme: Theme; children: ReactNode}) {
	return <ThemeContext.Provider value={theme}>{children}</ThemeContext.Provider>;
}

export function useTheme(): Theme {
	return useContext(ThemeContext);
}

/** The colour Ink gets for a tone: none at all when colour is off. */
export function toneColor(tone: Tone, theme: Theme): string | undefined {
	return theme.color ? colors[tone] : undefined;
}

type TxtProps = {
	tone?: Tone;
	bold?: boolean;
	wrap?: 'wrap' | 'truncate-end' | 'truncate' | 'truncate-middle' | 'truncate-start';
	children?: ReactNode;
};

/** Text with a meaning instead of a colour; muted text is dimmed (an attribute, not a colour). */
export function Txt({tone = 'plain', bold, wrap, children}: TxtProps) {
	const theme = useTheme();
	return <Text color={toneColor(tone, theme)} dimColor={tone === 'muted'} bold={bold} wrap={wrap}>{children}</Text>;
}
