/** Bad input from the operator: names the field, the value and the fix. Exit code 2. */
export class InputError extends Error {
	readonly field: string;
	readonly value: string;
	readonly fix: string;

	constructor(field: string, value: unknown, problem: string, fix: string) {
		const shown = typeof value === 'string' ? value : JSON.stringify(value);
		super(`${field}: ${problem} (got ${shown ?? 'nothing'}). Fix: ${fix}`);
		this.name = 'InputError';
		this.field = field;
		this.value = shown ?? '';
		this.fix = fix;
	}
}

/** Several input errors found at once, reported together. */
export class InputErrors extends Error {
	readonly errors: InputError[];

	constructor(errors: InputError[]) {
		super(errors.map(error => error.message).join('\n'));
		this.name = 'InputErrors';
		this.errors = errors;
	}
}

/** A remote or local command that failed while a step ran on a host. */
export class StepError extends Error {
	readonly step: string;
	readonly host: string;
	readonly command: string;
	readonly output: string;
	readonly fix: string | undefined;

	constructor(options: {step: string; host: string; message: string; command?: string; output?: string; fix?: string}) {
		super(`${options.step} on ${options.host}: ${options.message}`);
		this.name = 'StepError';
		this.step = options.step;
		this.host = options.host;
		this.command = options.command ?? '';
		this.output = options.output ?? '';
		this.fix = options.fix;
	}
}

/** Checks failed on a host; each failure was already reported as a check result. */
export class ChecksFailed extends StepError {
	constructor(options: {step: string; host: string; message: string; fix?: string}) {
		super(options);
		this.name = 'ChecksFailed';
	}
}

/** The operator declined, or a prompt could not be answered without a terminal. */
export class PromptRefused extends Error {
	readonly option: string | undefined;

	constructor(message: string, option?: string) {
		super(message);
		this.name = 'PromptRefused';
		this.option = option;
	}
}

export function isInputError(error: unknown): error is InputError | InputErrors {
	return error instanceof InputError || error instanceof InputErrors;
}
