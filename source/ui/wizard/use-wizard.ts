import {useCallback, useMemo, useReducer} from 'react';
import {isInputError} from '../../errors.js';
import {
	checkField, checkMaster, defaultAnswers, defaultEndpoints, fieldOrder, importConfigFile, importEnvironment, review, suggestIp, suggestName, writeConfig,
	type Answers, type Check, type FieldId, type Imported, type Problem, type Review, type TextFieldId,
} from './model.js';

export type Stage =
	| {kind: 'source'}
	| {kind: 'import'; from: 'env' | 'file'; value: string; error?: string}
	| {kind: 'field'; id: TextFieldId; value: string}
	| {kind: 'masters'}
	| {kind: 'master'; part: 'name' | 'ip'; index: number; name: string; value: string}
	| {kind: 'review'; writeError?: Problem};

export type WizardState = {
	stage: Stage;
	/** sequence: question after question; edit: one answer changed from the review, then back there. */
	mode: 'sequence' | 'edit';
	answers: Answers;
	extras: Record<string, unknown>;
	notes: string[];
	encryptionKey?: string;
	origin?: string;
	/** Enter was pressed on an answer with an error: the error is shown as blocking. */
	attempted: boolean;
};

export type WizardAction =
	| {type: 'source'; choice: 'questions' | 'env' | 'file'}
	| {type: 'imported'; imported: Imported}
	| {type: 'import-failed'; error: string}
	| {type: 'change'; value: string}
	| {type: 'submit'; check: Check}
	| {type: 'back'}
	| {type: 'edit'; field: FieldId}
	| {type: 'masters'; choice: 'add' | 'remove' | 'done'}
	| {type: 'write-failed'; problem: Problem};

export function initialWizard(seed?: Imported): WizardState {
	if (seed) {
		return {stage: {kind: 'review'}, mode: 'edit', answers: seed.answers, extras: seed.extras, notes: seed.notes, encryptionKey: seed.encryptionKey, origin: seed.origin, attempted: false};
	}

	return {stage: {kind: 'source'}, mode: 'sequence', answers: {...defaultAnswers, masters: []}, extras: {}, notes: [], attempted: false};
}

/** The stage that asks for a field, with the current answer (or a good default) filled in. */
export function stageFor(id: FieldId, answers: Answers): Stage {
	if (id === 'masters') {
		return answers.masters.length === 0 ? masterStage(answers, 'name', 0) : {kind: 'masters'};
	}

	const value = id === 'etcdEndpoints' && answers.etcdEndpoints.trim() === '' ? defaultEndpoints(answers.masters) : answers[id];
	return {kind: 'field', id, value};
}

function masterStage(answers: Answers, part: 'name' | 'ip', index: number, name = ''): Extract<Stage, {kind: 'master'}> {
	return {kind: 'master', part, index, name, value: part === 'name' ? suggestName(answers.masters) : suggestIp(answers.masters)};
}

function after(state: WizardState, id: FieldId): WizardState {
	if (state.mode === 'edit') {
		return {...state, stage: {kind: 'review'}, attempted: false};
	}

	const next = fieldOrder[fieldOrder.indexOf(id) + 1];
	return {...state, stage: next ? stageFor(next, state.answers) : {kind: 'review'}, attempted: false};
}

function before(state: WizardState, id: FieldId): WizardState {
	if (state.mode === 'edit') {
		return {...state, stage: {kind: 'review'}, attempted: false};
	}

	const previous = fieldOrder[fieldOrder.indexOf(id) - 1];
	return {...state, stage: previous ? stageFor(previous, state.answers) : {kind: 'source'}, attempted: false};
}

/** The wizard's transitions. Pure: checks arrive with the actions, files are read by the hook. */
export function wizardReducer(state: WizardState, action: WizardAction): WizardState {
	const {stage} = state;
	switch (action.type) {
		case 'source': {
			if (action.choice === 'questions') {
				return {...state, mode: 'sequence', stage: stageFor(fieldOrder[0]!, state.answers)};
			}

			return {...state, stage: {kind: 'import', from: action.choice, value: action.choice === 'env' ? './environment.sh' : ''}};
		}

		case 'imported': {
			const {imported} = action;
			return {...state, mode: 'edit', answers: imported.answers, extras: imported.extras, notes: imported.notes, encryptionKey: imported.encryptionKey, origin: imported.origin, stage: {kind: 'review'}, attempted: false};
		}

		case 'import-failed': {
			return stage.kind === 'import' ? {...state, stage: {...stage, error: action.error}} : state;
		}

		case 'change': {
			if (stage.kind === 'field' || stage.kind === 'master' || stage.kind === 'import') {
				return {...state, stage: {...stage, value: action.value, ...(stage.kind === 'import' ? {error: undefined} : {})}, attempted: false};
			}

			return state;
		}

		case 'submit': {
			if (action.check.error) {
				return {...state, attempted: true};
			}

			if (stage.kind === 'field') {
				return after({...state, answers: {...state.answers, [stage.id]: stage.value.trim()}}, stage.id);
			}

			if (stage.kind === 'master') {
				if (stage.part === 'name') {
					return {...state, stage: {...masterStage(state.answers, 'ip', stage.index), name: stage.value.trim()}, attempted: false};
				}

				const masters = [...state.answers.masters];
				masters[stage.index] = {name: stage.name, ip: stage.value.trim()};
				return {...state, answers: {...state.answers, masters}, stage: {kind: 'masters'}, attempted: false};
			}

			return state;
		}

		case 'back': {
			switch (stage.kind) {
				case 'import': {
					return {...state, stage: {kind: 'source'}};
				}

				case 'field': {
					return before(state, stage.id);
				}

				case 'master': {
					if (stage.part === 'ip') {
						return {...state, stage: {...masterStage(state.answers, 'name', stage.index), value: stage.name}, attempted: false};
					}

					return state.answers.masters.length > 0 ? {...state, stage: {kind: 'masters'}, attempted: false} : before(state, 'masters');
				}

				case 'masters': {
					return before(state, 'masters');
				}

				default: {
					return state;
				}
			}
		}

		case 'edit': {
			return {...state, mode: 'edit', stage: stageFor(action.field, state.answers), attempted: false};
		}

		case 'masters': {
			if (action.choice === 'add') {
				return {...state, stage: masterStage(state.answers, 'name', state.answers.masters.length)};
			}

			if (action.choice === 'remove') {
				return {...state, answers: {...state.answers, masters: state.answers.masters.slice(0, -1)}};
			}

			return after(state, 'masters');
		}

		case 'write-failed': {
			return {...state, stage: {kind: 'review', writeError: action.problem}};
		}
	}
}

export type WizardOptions = {
	/** The config file to write (absolute). */
	target: string;
	cwd: string;
	/** Start from this file's content (an invalid config being corrected). */
	seedFile?: string;
	onWritten: (file: string, proceed: boolean) => void;
	onQuit: () => void;
};

/** The wizard's state, the live check of what is being typed, and its side effects (reading, writing). */
export function useWizard(options: WizardOptions) {
	const {target, cwd, seedFile, onWritten, onQuit} = options;
	const [state, dispatch] = useReducer(wizardReducer, undefined, () => {
		if (seedFile) {
			try {
				return initialWizard(importConfigFile(seedFile, cwd));
			} catch {
				return initialWizard();
			}
		}

		return initialWizard();
	});
	const context = useMemo(() => ({cwd, extras: state.extras}), [cwd, state.extras]);
	const {stage} = state;

	const check: Check | undefined = useMemo(() => {
		if (stage.kind === 'field') {
			return checkField(stage.id, stage.value, state.answers, context);
		}

		if (stage.kind === 'master') {
			return checkMaster(stage.part, stage.value, state.answers.masters, stage.index, context);
		}

		return undefined;
	}, [stage, state.answers, context]);

	const reviewed: Review | undefined = useMemo(
		() => (stage.kind === 'review' ? review(state.answers, state.extras, cwd, target, state.encryptionKey) : undefined),
		[stage, state.answers, state.extras, cwd, target, state.encryptionKey],
	);

	const submit = useCallback(() => {
		if (stage.kind === 'import') {
			try {
				const imported = stage.from === 'env' ? importEnvironment(stage.value, cwd, target) : importConfigFile(stage.value, cwd);
				dispatch({type: 'imported', imported});
			} catch (error) {
				dispatch({type: 'import-failed', error: error instanceof Error ? error.message : String(error)});
			}

			return;
		}

		if (check) {
			dispatch({type: 'submit', check});
		}
	}, [stage, check, cwd, target]);

	const write = useCallback((proceed: boolean) => {
		try {
			writeConfig(state.answers, state.extras, cwd, target, state.encryptionKey);
		} catch (error) {
			dispatch({type: 'write-failed', problem: isInputError(error) && 'field' in error ? {field: error.field, text: error.message} : {field: target, text: error instanceof Error ? error.message : String(error)}});
			return;
		}

		onWritten(target, proceed);
	}, [state, cwd, target, onWritten]);

	return {
		state,
		check,
		review: reviewed,
		target,
		choose: (choice: 'questions' | 'env' | 'file') => dispatch({type: 'source', choice}),
		change: (value: string) => dispatch({type: 'change', value}),
		submit,
		back: () => dispatch({type: 'back'}),
		edit: (field: FieldId) => dispatch({type: 'edit', field}),
		masters: (choice: 'add' | 'remove' | 'done') => dispatch({type: 'masters', choice}),
		write,
		quit: onQuit,
	};
}

export type WizardController = ReturnType<typeof useWizard>;
