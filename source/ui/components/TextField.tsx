import {useEffect, useState} from 'react';
import {Text, useInput} from 'ink';

type Props = {
	value: string;
	onChange: (value: string) => void;
	onSubmit: () => void;
	onCancel?: () => void;
	focus?: boolean;
};

/**
 * A one-line input: type, ← → to move, Backspace, Ctrl-U to clear, Enter to accept, Esc to go
 * back. Written here rather than taken from ink-text-input for Ctrl-U and Esc, and because that
 * one colours its placeholder regardless of NO_COLOR.
 */
export function TextField({value, onChange, onSubmit, onCancel, focus = true}: Props) {
	const [cursor, setCursor] = useState(value.length);
	useEffect(() => {
		setCursor(position => Math.min(position, value.length));
	}, [value]);

	useInput((input, key) => {
		if (key.return) {
			onSubmit();
			return;
		}

		if (key.escape) {
			onCancel?.();
			return;
		}

		if (key.ctrl && input === 'u') {
			onChange('');
			setCursor(0);
			return;
		}

		if (key.leftArrow) {
			setCursor(Math.max(0, cursor - 1));
			return;
		}

		if (key.rightArrow) {
			setCursor(Math.min(value.length, cursor + 1));
			return;
		}

		if (key.home || (key.ctrl && input === 'a')) {
			setCursor(0);
			return;
		}

		if (key.end || (key.ctrl && input === 'e')) {
			setCursor(value.length);
			return;
		}

		if (key.backspace || key.delete) {
			if (cursor > 0) {
				onChange(value.slice(0, cursor - 1) + value.slice(cursor));
				setCursor(cursor - 1);
			}

			return;
		}

		if (key.ctrl || key.meta || key.tab || key.upArrow || key.downArrow || key.pageUp || key.pageDown || !input) {
			return;
		}

		// A paste arrives as one string; line breaks in it are dropped.
		const text = input.replaceAll(/[\r\n]/g, '');
		onChange(value.slice(0, cursor) + text + value.slice(cursor));
		setCursor(cursor + text.length);
	}, {isActive: focus});

	const at = value[cursor] ?? ' ';
	return (
		<Text>
			{value.slice(0, cursor)}
			<Text inverse>{at}</Text>
			{value.slice(cursor + 1)}
		</Text>
	);
}
