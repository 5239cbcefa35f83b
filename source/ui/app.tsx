import {useEffect, useSyncExternalStore} from 'react';
import {Box, Static, useApp, useInput} from 'ink';
import {Footer, type KeyHint} from './components/Footer.js';
import {FailureScreen} from './screens/FailureScreen.js';
import {HistoryLine} from './screens/History.js';
import {ConfigErrorScreen, ErrorScreen, ExitScreen, LoadingScreen} from './screens/MessageScreens.js';
import {PlanScreen} from './screens/PlanScreen.js';
import {diffWindowFor, PromptDialog} from './screens/PromptDialog.js';
import {ProgressScreen, ResumeScreen} from './screens/ResumeScreen.js';
import {RunScreen} from './screens/RunScreen.js';
import type {Session, SessionState} from './session.js';
import {ThemeProvider, type Theme} from './theme.js';
import {orderDiff} from './wording.js';
import {Wizard} from './wizard/Wizard.js';

export function useSession(session: Session): SessionState {
	return useSyncExternalStore(session.subscribe, session.getSnapshot, session.getSnapshot);
}

const choose: KeyHint[] = [['↑↓', 'choose'], ['Enter', 'select']];

/** The keys shown in the footer for what is on screen (the wizard shows its own). */
export function keysFor(state: SessionState): KeyHint[] {
	const {screen} = state;
	if (state.prompt && screen.name !== 'exit') {
		return state.prompt.kind === 'overwrite'
			? [...choose, ...(state.prompt.diff && orderDiff(state.prompt.diff).body.length > diffWindowFor(0) ? [['PgDn/PgUp', 'scroll the difference'] as KeyHint] : []), ['Ctrl-C', 'stop (the file is kept)']]
			: [...choose, ['Ctrl-C', 'quit']];
	}

	switch (screen.name) {
		case 'running': {
			return screen.stopping
				? [['Ctrl-C', 'again: quit at once (progress is saved either way)']]
				: [['q or Ctrl-C', 'stop safely after the current action (progress is saved)']];
		}

		case 'failed': {
			return [...choose, ['q', 'abort (progress is kept)']];
		}

		case 'plan':
		case 'resume':
		case 'progress':
		case 'config-error':
		case 'error': {
			return [...choose, ['q', 'quit']];
		}

		case 'loading':
		case 'starting': {
			return [['q', 'quit']];
		}

		default: {
			return [];
		}
	}
}

function CurrentScreen({state, session}: {state: SessionState; session: Session}) {
	const {screen} = state;
	if (state.prompt && screen.name !== 'running' && screen.name !== 'exit') {
		// The engine asks only while it applies; should it ask elsewhere, the question replaces the screen.
		return <PromptDialog request={state.prompt} waiting={state.promptsWaiting} onAnswer={value => session.answer(value)} />;
	}

	switch (screen.name) {
		case 'starting': {
			return <LoadingScreen message="Reading the config…" />;
		}

		case 'loading': {
			return <LoadingScreen message={screen.message} />;
		}

		case 'wizard': {
			return (
				<Wizard
					target={state.configFile}
					cwd={state.cwd}
					seedFile={screen.reason === 'invalid' ? state.configFile : undefined}
					reason={screen.reason}
					onWritten={(file, proceed) => session.configWritten(file, proceed)}
					onQuit={() => session.quit()}
				/>
			);
		}

		case 'config-error': {
			return <ConfigErrorScreen problems={screen.problems} canEdit={screen.canEdit} file={state.configFile} session={session} />;
		}

		case 'plan': {
			return <PlanScreen plan={screen.plan} grid={screen.grid} lastRun={screen.lastRun} session={session} />;
		}

		case 'resume': {
			return <ResumeScreen run={screen.run} sentence={screen.sentence} session={session} />;
		}

		case 'progress': {
			return <ProgressScreen grid={screen.grid} session={session} />;
		}

		case 'running': {
			return (
				<Box flexDirection="column">
					<RunScreen state={state} />
					{state.prompt ? <PromptDialog request={state.prompt} waiting={state.promptsWaiting} onAnswer={value => session.answer(value)} /> : null}
				</Box>
			);
		}

		case 'failed': {
			return <FailureScreen failures={screen.failures} choices={screen.choices} session={session} />;
		}

		case 'error': {
			return <ErrorScreen message={screen.message} canRetry={screen.canRetry} session={session} />;
		}

		case 'exit': {
			return <ExitScreen tone={screen.tone} lines={screen.lines} />;
		}
	}
}

export type InstallerAppProps = {
	session: Session;
	theme: Theme;
	/** Called once, with the exit code, when the session ends (force: a second Ctrl-C while stopping). */
	onExit?: (code: number, force: boolean) => void;
};

/** The terminal UI: finished lines above (ink's Static), the current screen and its keys below. */
export function InstallerApp({session, theme, onExit}: InstallerAppProps) {
	const state = useSession(session);
	const {exit} = useApp();
	useEffect(() => {
		session.start();
	}, [session]);

	useInput((input, key) => {
		if (key.ctrl && input === 'c') {
			session.interrupt('ctrl-c');
		} else if (input === 'q' && !key.ctrl && !key.meta) {
			session.interrupt('q');
		}
	});

	const {screen} = state;
	useEffect(() => {
		if (screen.name === 'exit') {
			onExit?.(screen.code, screen.force);
			exit();
		}
	}, [screen, onExit, exit]);

	return (
		<ThemeProvider theme={theme}>
			<Static items={state.history}>
				{entry => <HistoryLine key={entry.id} entry={entry} />}
			</Static>
			<Box flexDirection="column">
				<CurrentScreen state={state} session={session} />
				<Footer keys={keysFor(state)} />
			</Box>
		</ThemeProvider>
	);
}
