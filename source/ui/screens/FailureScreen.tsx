import {Box, Text} from 'ink';
import type {FailureInfo} from '../../engine/events.js';
import {Menu} from '../components/Menu.js';
import type {Operation} from '../../operations/index.js';
import {stepTitle} from '../run-model.js';
import type {Session} from '../session.js';
import {Txt} from '../theme.js';
import type {FailureChoice} from '../wording.js';

export const outputLines = 10;

function FailureDetail({failure, operation}: {failure: FailureInfo; operation: Operation}) {
	const output = failure.output.split('\n').filter(line => line.trim() !== '').slice(-outputLines);
	return (
		<Box flexDirection="column" marginBottom={1}>
			<Text><Txt tone="bad" bold>✘ {stepTitle(failure.step, operation)}</Txt> failed on <Text bold>{failure.host}</Text></Text>
			<Text>  {failure.message}</Text>
			{failure.command ? <Text wrap="truncate-end"><Txt tone="muted">  command: </Txt>{failure.command}</Text> : null}
			{output.length > 0
				? (
					<Box flexDirection="column">
						<Txt tone="muted">  last output:</Txt>
						{output.map((line, index) => <Text key={index} wrap="truncate-end"><Txt tone="muted">  │ </Txt>{line}</Text>)}
					</Box>
				)
				: null}
			{failure.fix ? <Text><Txt tone="ok">  fix: </Txt>{failure.fix}</Text> : null}
		</Box>
	);
}

/** Which step failed on which host, with the command, its last output and the known fix; then what to do. */
export function FailureScreen({failures, choices, session}: {failures: FailureInfo[]; choices: FailureChoice[]; session: Session}) {
	return (
		<Box flexDirection="column" marginTop={1}>
			{failures.map(failure => <FailureDetail key={`${failure.step}/${failure.host}`} failure={failure} operation={session.operation} />)}
			<Text bold>What now?</Text>
			<Menu
				items={choices.map(choice => ({label: choice.label, value: choice.kind}))}
				onSelect={value => {
					const choice = choices.find(each => each.kind === value)!;
					if (choice.kind === 'retry') {
						session.retry();
					} else if (choice.kind === 'skip') {
						session.skip(choice.hosts);
					} else {
						session.abort();
					}
				}}
			/>
		</Box>
	);
}
