import {Box, Text} from 'ink';
import type {PlanView} from '../../engine/engine.js';
import type {RunRecord} from '../../state/store.js';
import {GridView} from '../components/Grid.js';
import {Menu} from '../components/Menu.js';
import type {Session} from '../session.js';
import {formatChangeParts} from '../../reporters/diff-format.js';
import {Txt, type Tone} from '../theme.js';
import {formatWhen, gridLegend, summarizeMaterial, type Grid} from '../wording.js';

/** The diff lines shown on screen at most; the rest is in `plan`'s text. What restarts is always shown. */
const changeLinesShown = 60;

/** A diff line's colour: added green, removed red, the rest plain. */
function diffTone(line: string): Tone | undefined {
	const text = line.trimStart();
	if (text.startsWith('+++') || text.startsWith('---')) {
		return 'muted';
	}

	return text.startsWith('+') ? 'ok' : text.startsWith('-') ? 'bad' : undefined;
}

/** What differs on the masters (a diff per file) and what restarts, when the masters were read. */
function ChangesView({plan, configFile}: {plan: PlanView; configFile: string}) {
	if (!plan.changes?.read) {
		return null;
	}

	const {files, restarts} = formatChangeParts(plan.changes);
	const shown = files.slice(0, changeLinesShown);
	return (
		<Box marginTop={1} flexDirection="column">
			{shown.map((line, index) => <Txt key={index} tone={diffTone(line)}>{line || ' '}</Txt>)}
			{files.length > shown.length ? <Txt tone="muted">{`… ${files.length - shown.length} more lines of differences: k8s-master-install plan --config ${configFile}`}</Txt> : null}
			{restarts.map((line, index) => <Txt key={`restart-${index}`}>{line || ' '}</Txt>)}
		</Box>
	);
}

/** The plan as steps × masters, then the choice to start. */
export function PlanScreen({plan, grid, lastRun, session}: {plan: PlanView; grid: Grid; lastRun?: RunRecord; session: Session}) {
	const made = plan.materialChanges.filter(change => change.action !== 'kept' && change.action !== 'imported');
	return (
		<Box flexDirection="column" marginTop={1}>
			<Text bold>{plan.run.title}: plan for cluster {plan.cluster}, Kubernetes {plan.version} on {grid.hosts.length} master{grid.hosts.length === 1 ? '' : 's'}</Text>
			<Txt tone="muted">{`state: ${plan.stateFile}`}</Txt>
			{made.length > 0 ? <Txt tone="info">{`Made when the install starts, then kept for every later run: ${summarizeMaterial(made.map(change => change.item))}`}</Txt> : null}
			{plan.masters ? (
				<Box marginTop={1} flexDirection="column">
					<Text bold>Masters that join or leave</Text>
					{plan.masters.map(line => <Txt key={line} tone="warn">{`• ${line}`}</Txt>)}
				</Box>
			) : null}
			<Box marginTop={1}><GridView grid={grid} /></Box>
			<Txt tone="muted">{gridLegend}</Txt>
			<ChangesView plan={plan} configFile={session.getSnapshot().configFile} />
			<Txt tone="muted">{`Every command and file, with hashes: k8s-master-install plan --config ${session.getSnapshot().configFile}`}</Txt>
			{lastRun ? <Box marginTop={1}><Txt tone="ok">{`Installed ${formatWhen(lastRun.updatedAt)}. Applying again checks every master and changes only what differs.`}</Txt></Box> : null}
			<Box marginTop={1} flexDirection="column">
				<Menu
					items={[
						{label: plan.run.kind === 'install' ? `Start the install on ${grid.hosts.join(', ')}` : `${plan.run.title} on ${grid.hosts.join(', ')} (each master checked; only what differs is changed)`, value: 'start'},
						{label: 'Quit (nothing is changed)', value: 'quit'},
					]}
					onSelect={value => (value === 'start' ? session.startApply() : session.quit())}
				/>
			</Box>
		</Box>
	);
}
