import {Box, Text} from 'ink';
import {formatDuration} from '../../reporters/format.js';
import {Mark} from '../components/Mark.js';
import type {HistoryEntry, HostRow, StepRow} from '../run-model.js';
import {Txt} from '../theme.js';
import {markWord} from '../wording.js';

export function hostLine(row: HostRow): string {
	const what = row.status === 'failed' && row.failure ? `failed: ${row.failure.message}` : `${markWord[row.status]}${row.detail && row.status !== 'excluded' ? `: ${row.detail}` : ''}`;
	return `${what}${row.durationMs !== undefined && row.status !== 'excluded' ? `  ${formatDuration(row.durationMs)}` : ''}`;
}

/** A finished step: its mark, title and time, and one line per host. */
export function FinishedStep({step}: {step: StepRow}) {
	const width = Math.max(...step.hosts.map(row => row.host.length));
	return (
		<Box flexDirection="column">
			<Text>
				<Mark mark={step.status} /> <Text bold>{step.title}</Text>
				<Txt tone="muted">{step.durationMs === undefined ? '' : `  ${formatDuration(step.durationMs)}`}</Txt>
			</Text>
			{step.hosts.map(row => (
				<Text key={row.host} wrap="truncate-end">
					{'    '}<Mark mark={row.status} /> {row.host.padEnd(width)}  <Txt tone={row.status === 'failed' ? 'bad' : 'muted'}>{hostLine(row)}</Txt>
				</Text>
			))}
		</Box>
	);
}

export function HistoryLine({entry}: {entry: HistoryEntry}) {
	if (entry.kind === 'step') {
		return <FinishedStep step={entry.step} />;
	}

	return <Txt tone={entry.tone}>{entry.text}</Txt>;
}
