import {Box, Text, useInput} from 'ink';
import {Footer, type KeyHint} from '../components/Footer.js';
import {Menu} from '../components/Menu.js';
import {TextField} from '../components/TextField.js';
import {Txt} from '../theme.js';
import {fieldOrder, fieldSpec, fieldSpecs, serviceIpOf, type Answers, type Check, type FieldId, type Problem} from './model.js';
import {useWizard, type WizardController, type WizardOptions} from './use-wizard.js';

const textKeys: KeyHint[] = [['Enter', 'accept'], ['Esc', 'back'], ['Ctrl-U', 'clear'], ['Ctrl-C', 'quit (nothing is written until the end)']];
const menuKeys = (back: boolean): KeyHint[] => [['↑↓', 'choose'], ['Enter', 'select'], ...(back ? [['Esc', 'back'] as KeyHint] : []), ['Ctrl-C', 'quit (nothing is written until the end)']];

function ProblemLine({problem, blocking}: {problem: Problem; blocking: boolean}) {
	return (
		<Box flexDirection="column">
			<Text><Txt tone="bad" bold={blocking}>{`✘ ${problem.field}: ${problem.text}`}</Txt></Text>
			{problem.fix ? <Txt tone="muted">{`  ${problem.fix}`}</Txt> : null}
		</Box>
	);
}

function CheckLine({check, attempted, hideInfo}: {check: Check | undefined; attempted: boolean; hideInfo?: boolean}) {
	if (!check) {
		return null;
	}

	if (check.error) {
		return <ProblemLine problem={check.error} blocking={attempted} />;
	}

	if (check.warning) {
		return <Txt tone="warn">{`⚠ ${check.warning}`}</Txt>;
	}

	return check.info && !hideInfo ? <Txt tone="ok">{`✔ ${check.info}`}</Txt> : <Txt tone="ok">✔ valid</Txt>;
}

function MasterList({answers}: {answers: Answers}) {
	const width = Math.max(4, ...answers.masters.map(master => master.name.length));
	return (
		<Box flexDirection="column">
			{answers.masters.map((master, index) => (
				<Text key={index}><Txt tone="muted">{`  masters[${index}]  `}</Txt>{master.name.padEnd(width)}  {master.ip}</Text>
			))}
		</Box>
	);
}

function displayValue(id: FieldId, answers: Answers): string {
	switch (id) {
		case 'masters': {
			return answers.masters.length === 0 ? '(none)' : answers.masters.map(master => `${master.name} ${master.ip}`).join(', ');
		}

		case 'identityFile': {
			return answers.identityFile || '(ssh defaults)';
		}

		case 'serviceCidr': {
			const ip = serviceIpOf(answers.serviceCidr);
			return ip ? `${answers.serviceCidr}  → kubernetes service IP ${ip}` : answers.serviceCidr;
		}

		default: {
			return answers[id] || '(empty)';
		}
	}
}

/** Settings an import brought that the wizard does not ask about; they are written unchanged. */
function keptSettings(extras: Record<string, unknown>): string[] {
	return Object.entries(extras).flatMap(([key, value]) => {
		if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
			return Object.keys(value).map(inner => `${key}.${inner}`);
		}

		return value === undefined ? [] : [key];
	});
}

function fieldOfProblem(problem: Problem): FieldId | undefined {
	return fieldSpecs.find(spec => problem.field === spec.field || problem.field.startsWith(`${spec.field}[`) || problem.field.startsWith(`${spec.field}.`))?.id;
}

function Review({wizard}: {wizard: WizardController}) {
	const {state, review, target} = wizard;
	const problems = review?.problems ?? [];
	const width = Math.max(...fieldSpecs.map(spec => spec.field.length)) + 2;
	const broken = new Set(problems.map(problem => fieldOfProblem(problem)));
	const kept = keptSettings(state.extras);
	type Choice = 'write' | 'write-anyway' | 'quit' | `edit:${FieldId}`;
	const edits = fieldOrder.map(id => ({label: `Change ${fieldSpec(id).field}`, value: `edit:${id}` as Choice}));
	const firstBroken = edits.filter(item => broken.has(item.value.slice(5) as FieldId));
	const items: Array<{label: string; value: Choice}> = [
		...(problems.length === 0 ? [{label: `Write ${target} and show the plan`, value: 'write' as Choice}] : []),
		...(problems.length > 0 && review?.onlyMissingFiles ? [{label: `Write ${target} anyway and quit (put the missing files there first)`, value: 'write-anyway' as Choice}] : []),
		...firstBroken,
		...edits.filter(item => !firstBroken.includes(item)),
		{label: 'Quit without writing', value: 'quit'},
	];
	return (
		<Box flexDirection="column">
			<Text bold>Review: this is what will be written to {target}</Text>
			{state.origin ? <Txt tone="muted">{`Started from ${state.origin}`}</Txt> : null}
			<Box flexDirection="column" marginTop={1}>
				{fieldSpecs.map(spec => (
					<Text key={spec.id} wrap="truncate-end">
						<Txt tone={broken.has(spec.id) ? 'bad' : 'ok'}>{broken.has(spec.id) ? '✘' : '✔'}</Txt> <Txt tone="muted">{spec.field.padEnd(width)}</Txt>{displayValue(spec.id, state.answers)}
					</Text>
				))}
				{kept.length > 0 ? <Txt tone="muted">{`  also written as imported: ${kept.join(', ')}`}</Txt> : null}
				{state.encryptionKey ? <Txt tone="muted">  the encryption key from environment.sh is written to encryption.key (mode 0600) next to the config</Txt> : null}
			</Box>
			{state.notes.map((note, index) => <Txt key={index} tone="info">{`note: ${note}`}</Txt>)}
			{problems.length > 0
				? (
					<Box flexDirection="column" marginTop={1}>
						<Txt tone="bad" bold>{`To fix before writing (${problems.length}):`}</Txt>
						{problems.map((problem, index) => <ProblemLine key={index} problem={problem} blocking={false} />)}
					</Box>
				)
				: <Box marginTop={1}><Txt tone="ok">✔ The whole config checks out.</Txt></Box>}
			{state.stage.kind === 'review' && state.stage.writeError ? <ProblemLine problem={state.stage.writeError} blocking /> : null}
			<Box marginTop={1} flexDirection="column">
				<Menu
					items={items}
					onSelect={value => {
						if (value === 'write' || value === 'write-anyway') {
							wizard.write(value === 'write');
						} else if (value === 'quit') {
							wizard.quit();
						} else {
							wizard.edit(value.slice(5) as FieldId);
						}
					}}
				/>
			</Box>
		</Box>
	);
}

function Stage({wizard}: {wizard: WizardController}) {
	const {state, check} = wizard;
	const {stage} = state;
	switch (stage.kind) {
		case 'source': {
			return (
				<Box flexDirection="column">
					<Text bold>How do you want to describe the cluster?</Text>
					<Menu
						items={[
							{label: 'Answer a few questions', value: 'questions'},
							{label: 'Import the tutorial\'s environment.sh', value: 'env'},
							{label: 'Start from an existing config file', value: 'file'},
							{label: 'Quit', value: 'quit'},
						]}
						onSelect={value => (value === 'quit' ? wizard.quit() : wizard.choose(value))}
					/>
				</Box>
			);
		}

		case 'import': {
			return (
				<Box flexDirection="column">
					<Text bold>{stage.from === 'env' ? 'Path of the tutorial\'s environment.sh' : 'Path of the config file to start from'}</Text>
					<Txt tone="muted">{stage.from === 'env' ? 'read without running it; MASTER_IPS, MASTER_NAMES, ETCD_ENDPOINTS, SERVICE_CIDR… become the answers' : 'its settings become the answers; you can change them before anything is written'}</Txt>
					<Text><Txt tone="accent">› </Txt><TextField key={stage.from} value={stage.value} onChange={wizard.change} onSubmit={wizard.submit} onCancel={wizard.back} /></Text>
					{stage.error ? <Txt tone="bad">{`✘ ${stage.error}`}</Txt> : null}
				</Box>
			);
		}

		case 'field': {
			const spec = fieldSpec(stage.id);
			const serviceIp = stage.id === 'serviceCidr' ? serviceIpOf(stage.value) : undefined;
			const position = fieldOrder.indexOf(stage.id) + 1;
			return (
				<Box flexDirection="column">
					<Text><Text bold>{spec.question}</Text><Txt tone="muted">{`  ${spec.field}${state.mode === 'sequence' ? ` · ${position} of ${fieldOrder.length}` : ''}`}</Txt></Text>
					<Txt tone="muted">{spec.help}</Txt>
					<Text>
						<Txt tone="accent">› </Txt><TextField key={stage.id} value={stage.value} onChange={wizard.change} onSubmit={wizard.submit} onCancel={wizard.back} />
						{serviceIp ? <Txt tone="info">{`   → kubernetes service IP ${serviceIp}`}</Txt> : null}
					</Text>
					<CheckLine check={check} attempted={state.attempted} hideInfo={stage.id === 'serviceCidr'} />
				</Box>
			);
		}

		case 'masters': {
			const count = state.answers.masters.length;
			return (
				<Box flexDirection="column">
					<Text><Text bold>Masters</Text><Txt tone="muted">{`  masters${state.mode === 'sequence' ? ` · ${fieldOrder.indexOf('masters') + 1} of ${fieldOrder.length}` : ''}`}</Txt></Text>
					<MasterList answers={state.answers} />
					{count > 0 && count < 3 ? <Txt tone="warn">{`⚠ ${count} master${count === 1 ? '' : 's'}: a highly available control plane usually has 3`}</Txt> : null}
					<Menu
						items={[
							...(count > 0 ? [{label: state.mode === 'edit' ? 'Done: back to the review' : 'Done: next question', value: 'done' as const}] : []),
							{label: 'Add a master', value: 'add' as const},
							...(count > 0 ? [{label: `Remove the last one (${state.answers.masters[count - 1]!.name})`, value: 'remove' as const}] : []),
						]}
						onSelect={value => wizard.masters(value)}
					/>
				</Box>
			);
		}

		case 'master': {
			return (
				<Box flexDirection="column">
					<Text><Text bold>{`Master ${stage.index + 1}: ${stage.part === 'name' ? 'host name' : `IP address of ${stage.name}`}`}</Text><Txt tone="muted">{`  masters[${stage.index}].${stage.part}`}</Txt></Text>
					<Txt tone="muted">{stage.part === 'name' ? 'lower-case letters, digits and -, e.g. k8smaster01' : 'the address the other masters and the nodes reach it on, e.g. 172.24.8.71'}</Txt>
					<MasterList answers={state.answers} />
					<Text><Txt tone="accent">› </Txt><TextField key={`${stage.index}/${stage.part}`} value={stage.value} onChange={wizard.change} onSubmit={wizard.submit} onCancel={wizard.back} /></Text>
					<CheckLine check={check} attempted={state.attempted} />
				</Box>
			);
		}

		case 'review': {
			return <Review wizard={wizard} />;
		}
	}
}

/** Esc on the menus goes back, as it does in the text fields. */
function useMenuEscape(wizard: WizardController) {
	const {stage} = wizard.state;
	useInput((_, key) => {
		if (key.escape) {
			wizard.back();
		}
	}, {isActive: stage.kind === 'masters'});
}

export function wizardKeys(stage: WizardController['state']['stage']): KeyHint[] {
	switch (stage.kind) {
		case 'field':
		case 'master':
		case 'import': {
			return textKeys;
		}

		case 'masters': {
			return menuKeys(true);
		}

		default: {
			return menuKeys(false);
		}
	}
}

/** The guided setup: asks the cluster facts, checks each as it is typed, and writes the config. */
export function Wizard(props: WizardOptions & {reason: 'missing' | 'invalid'}) {
	const wizard = useWizard(props);
	useMenuEscape(wizard);
	return (
		<Box flexDirection="column" marginTop={1}>
			<Box marginBottom={1}>
				<Txt tone="info" bold>{props.reason === 'missing' ? `Guided setup: there is no ${props.target} yet. Nothing is written until you confirm at the end.` : `Correcting ${props.target}: nothing is written until you confirm at the end.`}</Txt>
			</Box>
			<Stage wizard={wizard} />
			<Footer keys={wizardKeys(wizard.state.stage)} />
		</Box>
	);
}
