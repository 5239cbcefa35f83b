import {useEffect, useState} from 'react';
import {Box, Text} from 'ink';
import Spinner from 'ink-spinner';
import {formatDuration} from '../../reporters/format.js';
import {Mark} from '../components/Mark.js';
import {ProgressBar} from '../components/ProgressBar.js';
import type {CommandRow, HostRow, StepRow} from '../run-model.js';
import type {SessionState} from '../session.js';
import {Txt} from '../theme.js';
import {hostLine} from './History.js';

/** The time, again every interval: elapsed times tick while a step runs. */
export function useNow(intervalMs = 1000): number {
	const [now, setNow] = useState(() => Date.now());
	useEffect(() => {
		const timer = setInterval(() => setNow(Date.now()), intervalMs);
		return () => clearInterval(timer);
	}, [intervalMs]);
	return now;
}

/** Elapsed time while something runs, in whole seconds: 0 s, 12 s, 2 min 5 s. */
export function elapsed(since: number | undefined, now: number): string {
	if (since === undefined) {
		return '';
	}

	const seconds = Math.max(0, Math.floor((now - since) / 1000));
	return seconds < 60 ? `${seconds} s` : `${Math.floor(seconds / 60)} min ${seconds % 60} s`;
}

function LiveHost({row, width, now}: {row: HostRow; width: number; now: number}) {
	const copying = row.status === 'running' && row.bytes !== undefined && row.total;
	return (
		<Box flexDirection="column">
			<Text wrap="truncate-end">
				{'    '}<Mark mark={row.status} /> {row.host.padEnd(width)}  {row.status === 'running'
					? <Txt tone="muted">{copying ? '' : `running ${elapsed(row.startedAt, now)}${row.message ? ` · ${row.message}` : ''}`}</Txt>
					: <Txt tone={row.status === 'failed' ? 'bad' : 'muted'}>{hostLine(row)}</Txt>}
				{copying ? <ProgressBar bytes={row.bytes!} total={row.total!} /> : null}
			</Text>
			{copying && row.message ? <Text wrap="truncate-end"><Txt tone="muted">{`${' '.repeat(width + 8)}${row.message}`}</Txt></Text> : null}
		</Box>
	);
}

function LiveStep({step, now}: {step: StepRow; now: number}) {
	const width = Math.max(...step.hosts.map(row => row.host.length));
	return (
		<Box flexDirection="column">
			<Text>
				<Mark mark="running" /> <Text bold>{step.title}</Text><Txt tone="muted">{`  ${elapsed(step.startedAt, now)}`}</Txt>
			</Text>
			{step.hosts.map(row => <LiveHost key={row.host} row={row} width={width} now={now} />)}
		</Box>
	);
}

function CommandLine({row}: {row: CommandRow}) {
	const status = row.status === 'running'
		? <Txt tone="info"><Spinner type="dots" /></Txt>
		: <Txt tone={row.status === 'ok' ? 'ok' : 'bad'}>{row.status === 'ok' ? '✔' : '✘'}</Txt>;
	const end = row.status === 'running' ? '' : row.status === 'ok' ? `  ${formatDuration(row.durationMs ?? 0)}` : `  ${row.timedOut ? 'timed out' : `exit ${row.exitCode}`}`;
	return (
		<Text wrap="truncate-end">
			{'  '}{status} <Txt tone="muted">{(row.host ?? 'local').padEnd(12)}</Txt> {row.display.replaceAll(/\s*\n\s*/g, ' ⏎ ')}<Txt tone="muted">{end}</Txt>
		</Text>
	);
}

/** While apply runs: the steps under way and to come, per-host progress, the last commands. */
export function RunScreen({state}: {state: SessionState}) {
	// While a question is on screen, only the step under way is shown, so that the whole fits a terminal.
	const compact = state.prompt !== undefined;
	const now = useNow();
	const {run, masters, skipHosts, attempt} = state;
	const finished = run.steps.filter(step => step.status !== 'pending' && step.status !== 'running').length;
	const active = run.steps.filter(step => step.status === 'running');
	const pending = run.steps.filter(step => step.status === 'pending');
	const installing = masters.filter(master => !skipHosts.includes(master));
	return (
		<Box flexDirection="column" marginTop={1}>
			<Text>
				<Text bold>{run.title ?? 'Install'} on {installing.join(', ')}</Text>
				<Txt tone="muted">{`  step ${Math.min(finished + 1, run.steps.length)} of ${run.steps.length}${attempt > 1 ? ` · attempt ${attempt}` : ''}`}</Txt>
			</Text>
			{skipHosts.length > 0 ? <Txt tone="warn">{`Left out for this run: ${skipHosts.join(', ')}`}</Txt> : null}
			{run.local
				? (
					<Text>
						<Txt tone="info"><Spinner type="dots" /></Txt> {run.local.message}{'  '}
						{run.local.bytes !== undefined && run.local.total ? <ProgressBar bytes={run.local.bytes} total={run.local.total} /> : <Txt tone="muted">{elapsed(run.local.startedAt, now)}</Txt>}
					</Text>
				)
				: null}
			{!run.local && active.length === 0 && finished === 0 && !run.finished
				? <Text><Txt tone="info"><Spinner type="dots" /></Txt> Preparing the key material and the files (nothing is sent yet)…</Text>
				: null}
			{active.map(step => <LiveStep key={step.id} step={step} now={now} />)}
			{compact
				? null
				: pending.map(step => (
					<Text key={step.id}><Mark mark="pending" /> <Txt tone="muted">{step.title}</Txt></Text>
				))}
			{!compact && run.commands.length > 0
				? (
					<Box flexDirection="column" marginTop={1}>
						<Txt tone="muted">Last commands</Txt>
						{run.commands.map(row => <CommandLine key={row.id} row={row} />)}
					</Box>
				)
				: null}
			{state.screen.name === 'running' && state.screen.stopping ? <Box marginTop={1}><Txt tone="warn">■ Stopping after the current action… progress is saved.</Txt></Box> : null}
		</Box>
	);
}
