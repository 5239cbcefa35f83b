import {PromptRefused} from '../errors.js';

/** Questions the engine asks; a view answers them (the terminal UI) or the options do (headless). */
export type PromptRequest =
	| {kind: 'confirm-apply'; message: string}
	| {kind: 'confirm-reset'; message: string}
	| {kind: 'overwrite'; host: string; path: string; message: string; diff?: string};

export type PromptAnswer<R extends PromptRequest> = R extends {kind: 'confirm-apply' | 'confirm-reset' | 'overwrite'} ? boolean : never;

export type Prompter = {
	ask: <R extends PromptRequest>(request: R) => Promise<PromptAnswer<R>>;
};

/** Without a terminal, prompts are answered from options, or fail naming the option to pass. */
export function headlessPrompter(options: {yes: boolean; overwrite: boolean}): Prompter {
	return {
		async ask(request) {
			if (request.kind === 'confirm-apply' || request.kind === 'confirm-reset') {
				if (!options.yes) {
					throw new PromptRefused(`${request.message} There is no terminal to confirm on.`, '--yes');
				}

				return true as never;
			}

			if (!options.overwrite) {
				throw new PromptRefused(`${request.message} Not overwritten.`, '--overwrite');
			}

			return true as never;
		},
	};
}
