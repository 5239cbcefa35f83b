/** A line diff (longest common subsequence) in unified style, for showing a changed file before overwriting it. */
export function createTwoFilesPatch(oldName: string, newName: string, oldText: string, newText: string, context = 2): string {
	const a = oldText.split('\n');
	const b = newText.split('\n');
	if (a.length * b.length > 4_000_000) {
		return `--- ${oldName}\n+++ ${newName}\n(files too large to compare line by line)`;
	}

	const lengths = Array.from({length: a.length + 1}, () => new Uint32Array(b.length + 1));
	for (let i = a.length - 1; i >= 0; i--) {
		for (let j = b.length - 1; j >= 0; j--) {
			lengths[i]![j] = a[i] === b[j] ? lengths[i + 1]![j + 1]! + 1 : Math.max(lengths[i + 1]![j]!, lengths[i]![j + 1]!);
		}
	}

	const lines: Array<{mark: ' ' | '-' | '+'; text: string}> = [];
	let i = 0;
	let j = 0;
	while (i < a.length || j < b.length) {
		if (i < a.length && j < b.length && a[i] === b[j]) {
			lines.push({mark: ' ', text: a[i++]!});
			j++;
		} else if (j < b.length && (i >= a.length || lengths[i]![j + 1]! >= lengths[i + 1]![j]!)) {
			lines.push({mark: '+', text: b[j++]!});
		} else {
			lines.push({mark: '-', text: a[i++]!});
		}
	}

	const near = (index: number) => lines.slice(Math.max(0, index - context), index + context + 1).some(line => line.mark !== ' ');
	const shown = lines.map((line, index) => (line.mark === ' ' && !near(index) ? undefined : `${line.mark}${line.text}`));
	const body = shown.filter((line, index) => line !== undefined || shown[index - 1] !== undefined).map(line => line ?? '…');
	return [`--- ${oldName}`, `+++ ${newName}`, ...body].join('\n');
}

/**
 * A unified diff as the prompt and plan show it: the two header lines apart, and in each run of changed
 * lines the removed ones (what is on the master) before the added ones, as diff -u orders them.
 */
export function orderDiff(diff: string): {header: string[]; body: string[]; removed: number; added: number} {
	const lines = diff.split('\n');
	const header = lines.length >= 2 && lines[0]!.startsWith('--- ') && lines[1]!.startsWith('+++ ') ? lines.slice(0, 2) : [];
	const body: string[] = [];
	let minus: string[] = [];
	let plus: string[] = [];
	const flush = () => {
		body.push(...minus, ...plus);
		minus = [];
		plus = [];
	};

	for (const line of lines.slice(header.length)) {
		if (line.startsWith('-')) {
			minus.push(line);
		} else if (line.startsWith('+')) {
			plus.push(line);
		} else {
			flush();
			body.push(line);
		}
	}

	flush();
	return {header, body, removed: body.filter(line => line.startsWith('-')).length, added: body.filter(line => line.startsWith('+')).length};
}
