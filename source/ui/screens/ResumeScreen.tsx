import {Box, Text} from 'ink';
import type {RunRecord} from '../../state/store.js';
import {GridView} from '../components/Grid.js';
import {Menu} from '../components/Menu.js';
import type {Session} from '../session.js';
import {Txt} from '../theme.js';
import {formatWhen, type Grid} from '../wording.js';

/** Saved progress from an earlier install that did not finish: resume it, look at it, or start over. */
export function ResumeScreen({run, sentence, session}: {run: RunRecord; sentence: string; session: Session}) {
	return (
		<Box flexDirection="column" marginTop={1}>
			<Text bold>{sentence}</Text>
			<Txt tone="muted">{`Last recorded ${formatWhen(run.updatedAt)}, status ${run.status}.`}</Txt>
			{run.error ? <Txt tone="muted">{`  ${run.error}`}</Txt> : null}
			<Box marginTop={1} flexDirection="column">
				<Menu
					items={[
						{label: 'Resume (finished work is checked on each master, not redone)', value: 'resume'},
						{label: 'Show what is done', value: 'show'},
						{label: 'Start over (forget the progress; keeps the CA and the keys)', value: 'over'},
						{label: 'Quit', value: 'quit'},
					]}
					onSelect={value => {
						switch (value) {
							case 'resume': {
								session.resume();
								break;
							}

							case 'show': {
								session.showDone();
								break;
							}

							case 'over': {
								session.startOver();
								break;
							}

							default: {
								session.quit();
							}
						}
					}}
				/>
			</Box>
		</Box>
	);
}

/** What the state file records as done, per step and master. */
export function ProgressScreen({grid, session}: {grid: Grid; session: Session}) {
	return (
		<Box flexDirection="column" marginTop={1}>
			<Text bold>What is done (as recorded; each master is checked again before a step is skipped)</Text>
			<Box marginTop={1}><GridView grid={grid} /></Box>
			<Box marginTop={1} flexDirection="column">
				<Menu items={[{label: 'Back', value: 'back'}, {label: 'Quit', value: 'quit'}]} onSelect={value => (value === 'back' ? session.backToResume() : session.quit())} />
			</Box>
		</Box>
	);
}
