import {Box, Text, useStdout} from 'ink';
import {Txt} from '../theme.js';
import {markGlyph, markTone, type Grid as GridData, type GridCell} from '../wording.js';

function Cell({cell, width}: {cell: GridCell; width: number}) {
	const glyph = cell.mark === 'changed' ? '↻' : markGlyph[cell.mark];
	const tone = cell.mark === 'changed' ? 'warn' : markTone[cell.mark];
	return (
		<Box width={width} flexShrink={0}>
			<Text wrap="truncate-end"><Txt tone={tone}>{glyph}</Txt> {cell.text}</Text>
		</Box>
	);
}

/** Steps × masters; a step that runs once for the cluster spans its row. */
export function GridView({grid}: {grid: GridData}) {
	const {stdout} = useStdout();
	const columns = Math.max(60, stdout?.columns ?? 80);
	const titleWidth = Math.min(46, Math.max(...grid.rows.map(row => row.title.length)) + 2);
	const hostWidth = Math.max(12, Math.min(22, Math.floor((columns - titleWidth - 1) / Math.max(1, grid.hosts.length))));
	return (
		<Box flexDirection="column">
			<Box>
				<Box width={titleWidth} flexShrink={0}><Txt tone="muted">Step</Txt></Box>
				{grid.hosts.map(host => (
					<Box key={host} width={hostWidth} flexShrink={0}><Text bold wrap="truncate-end">{host}</Text></Box>
				))}
			</Box>
			{grid.rows.map(row => (
				<Box key={row.id}>
					<Box width={titleWidth} flexShrink={0}><Text wrap="truncate-end">{row.title}</Text></Box>
					{row.span
						? <Cell cell={row.span} width={hostWidth * grid.hosts.length} />
						: grid.hosts.map(host => <Cell key={host} cell={row.cells[host] ?? {mark: 'excluded', text: ''}} width={hostWidth} />)}
				</Box>
			))}
		</Box>
	);
}
