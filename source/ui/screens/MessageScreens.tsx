import {Box, Text} from 'ink';
import Spinner from 'ink-spinner';
import {Menu} from '../components/Menu.js';
import type {Session} from '../session.js';
import {Txt, type Tone} from '../theme.js';

export function LoadingScreen({message}: {message: string}) {
	return <Box marginTop={1}><Text><Txt tone="info"><Spinner type="dots" /></Txt> {message}</Text></Box>;
}

/** The config file exists but cannot be used: every problem names its field. */
export function ConfigErrorScreen({problems, canEdit, file, session}: {problems: string[]; canEdit: boolean; file: string; session: Session}) {
	return (
		<Box flexDirection="column" marginTop={1}>
			<Txt tone="bad" bold>{`${file} cannot be used:`}</Txt>
			{problems.map((problem, index) => <Text key={index}><Txt tone="bad">  ✘ </Txt>{problem}</Text>)}
			<Box marginTop={1} flexDirection="column">
				<Menu
					items={[
						...(canEdit ? [{label: `Correct it in the guided setup (${file} is rewritten; the old one is kept as .bak)`, value: 'edit' as const}] : []),
						{label: 'Quit (correct it by hand)', value: 'quit' as const},
					]}
					onSelect={value => (value === 'edit' ? session.editConfig() : session.quit())}
				/>
			</Box>
		</Box>
	);
}

export function ErrorScreen({message, canRetry, session}: {message: string; canRetry: boolean; session: Session}) {
	return (
		<Box flexDirection="column" marginTop={1}>
			<Txt tone="bad" bold>Something went wrong:</Txt>
			{message.split('\n').map((line, index) => <Text key={index}>  {line}</Text>)}
			<Box marginTop={1} flexDirection="column">
				<Menu
					items={[...(canRetry ? [{label: 'Retry', value: 'retry' as const}] : []), {label: 'Quit', value: 'quit' as const}]}
					onSelect={value => (value === 'retry' ? session.retryAfterError() : session.quit())}
				/>
			</Box>
		</Box>
	);
}

/** The last frame: what happened and what to run next. */
export function ExitScreen({tone, lines}: {tone: Tone; lines: string[]}) {
	return (
		<Box flexDirection="column" marginTop={1}>
			{lines.map((line, index) => (index === 0 ? <Txt key={index} tone={tone} bold>{line}</Txt> : <Text key={index}>{line}</Text>))}
		</Box>
	);
}
