import {useState} from 'react';
import {Box, Text, useInput, useStdout} from 'ink';
import type {PromptRequest} from '../../engine/prompts.js';
import {Menu} from '../components/Menu.js';
import {Txt, type Tone} from '../theme.js';
import {orderDiff} from '../wording.js';

/** Diff lines shown at most; fewer on a short terminal, so that the question stays on screen. */
export const diffWindow = 20;

export function diffWindowFor(rows: number | undefined): number {
	return Math.max(6, Math.min(diffWindow, (rows ?? 40) - 22));
}

function diffTone(line: string, header: boolean): Tone {
	if (header) {
		return 'muted';
	}

	return line.startsWith('+') ? 'ok' : line.startsWith('-') ? 'bad' : 'plain';
}

/**
 * The difference between the file on the master (-) and what this install would write (+), in a
 * window that PgDn/Space and PgUp/b scroll.
 */
export function DiffView({diff, host}: {diff: string; host: string}) {
	const {header, body, removed, added} = orderDiff(diff);
	const {stdout} = useStdout();
	const size = diffWindowFor(stdout?.rows);
	const [offset, setOffset] = useState(0);
	const last = Math.max(0, body.length - size);
	useInput((input, key) => {
		if (key.pageDown || input === ' ') {
			setOffset(Math.min(last, offset + size));
		} else if (key.pageUp || input === 'b') {
			setOffset(Math.max(0, offset - size));
		}
	}, {isActive: body.length > size});
	const shown = body.slice(offset, offset + size);
	return (
		<Box flexDirection="column">
			<Txt tone="muted">{`${removed} line${removed === 1 ? '' : 's'} only on ${host} (-), ${added} line${added === 1 ? '' : 's'} only in what this install writes (+)`}</Txt>
			<Box flexDirection="column" borderStyle="single" paddingX={1}>
				{header.map((line, index) => <Text key={`h${index}`} wrap="truncate-end"><Txt tone={diffTone(line, true)}>{line}</Txt></Text>)}
				{shown.map((line, index) => <Text key={offset + index} wrap="truncate-end"><Txt tone={diffTone(line, false)}>{line || ' '}</Txt></Text>)}
			</Box>
			{body.length > size ? <Txt tone="muted">{`lines ${offset + 1}–${offset + shown.length} of ${body.length}  ·  PgDn/Space further  ·  PgUp/b back`}</Txt> : null}
		</Box>
	);
}

/** A question from the engine: overwrite a file changed on a master, or confirm the apply. */
export function PromptDialog({request, waiting, onAnswer}: {request: PromptRequest; waiting: number; onAnswer: (value: boolean) => void}) {
	if (request.kind === 'confirm-apply' || request.kind === 'confirm-reset') {
		return (
			<Box flexDirection="column" marginTop={1}>
				<Text bold>{request.message}</Text>
				<Menu items={[{label: request.kind === 'confirm-apply' ? 'Yes, apply' : 'Yes, remove', value: 'yes'}, {label: 'No', value: 'no'}]} onSelect={value => onAnswer(value === 'yes')} />
			</Box>
		);
	}

	return (
		<Box flexDirection="column" marginTop={1}>
			<Text><Txt tone="warn" bold>⚠ {request.message}</Txt></Text>
			<Txt tone="muted">It was changed after this install wrote it.</Txt>
			{request.diff ? <DiffView key={`${request.host}:${request.path}`} diff={request.diff} host={request.host} /> : <Txt tone="muted">  (its content is not shown: it holds a secret or is too large)</Txt>}
			{waiting > 0 ? <Txt tone="muted">{`${waiting} more question${waiting === 1 ? '' : 's'} waiting`}</Txt> : null}
			<Menu
				items={[
					{label: `Overwrite ${request.path} (a backup is kept on ${request.host})`, value: 'overwrite'},
					{label: `Keep it (the step fails on ${request.host}; the install stops there)`, value: 'keep'},
				]}
				onSelect={value => onAnswer(value === 'overwrite')}
			/>
		</Box>
	);
}
