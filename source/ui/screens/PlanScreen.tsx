import {Box, Text} from 'ink';
import type {PlanView} from '../../engine/engine.js';
import type {RunRecord} from '../../state/store.js';
import {GridView} from '../components/Grid.js';
import {Menu} from '../components/Menu.js';
import type {Session} from '../session.js';
import {Txt} from '../theme.js';
import {formatWhen, gridLegend, summarizeMaterial, type Grid} from '../wording.js';

/** The plan as steps × masters, then the choice to start. */
export function PlanScreen({plan, grid, lastRun, session}: {plan: PlanView; grid: Grid; lastRun?: RunRecord; session: Session}) {
	const made = plan.materialChanges.filter(change => change.action !== 'kept' && change.action !== 'imported');
	return (
		<Box flexDirection="column" marginTop={1}>
			<Text bold>Plan for cluster {plan.cluster}: Kubernetes {plan.version} on {grid.hosts.length} master{grid.hosts.length === 1 ? '' : 's'}</Text>
			<Txt tone="muted">{`state: ${plan.stateFile}`}</Txt>
			{made.length > 0 ? <Txt tone="info">{`Made when the install starts, then kept for every later run: ${summarizeMaterial(made.map(change => change.item))}`}</Txt> : null}
			<Box marginTop={1}><GridView grid={grid} /></Box>
			<Txt tone="muted">{gridLegend}</Txt>
			<Txt tone="muted">{`Every command and file, with hashes: k8s-master-install plan --config ${session.getSnapshot().configFile}`}</Txt>
			{lastRun ? <Box marginTop={1}><Txt tone="ok">{`Installed ${formatWhen(lastRun.updatedAt)}. Applying again checks every master and changes only what differs.`}</Txt></Box> : null}
			<Box marginTop={1} flexDirection="column">
				<Menu
					items={[
						{label: lastRun ? 'Apply again (check each master, fix what differs)' : `Start the install on ${grid.hosts.join(', ')}`, value: 'start'},
						{label: 'Quit (nothing is changed)', value: 'quit'},
					]}
					onSelect={value => (value === 'start' ? session.startApply() : session.quit())}
				/>
			</Box>
		</Box>
	);
}
