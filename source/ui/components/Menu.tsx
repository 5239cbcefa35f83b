import {Box, Text} from 'ink';
import SelectInput from 'ink-select-input';
import {toneColor, useTheme} from '../theme.js';

export type MenuItem<V extends string> = {label: string; value: V};

function Indicator({isSelected = false}: {isSelected?: boolean}) {
	const theme = useTheme();
	return <Box marginRight={1}><Text color={toneColor('accent', theme)}>{isSelected ? '❯' : ' '}</Text></Box>;
}

function Item({isSelected = false, label}: {isSelected?: boolean; label: string}) {
	const theme = useTheme();
	return <Text color={isSelected ? toneColor('accent', theme) : undefined} bold={isSelected}>{label}</Text>;
}

/** A choice list (↑↓ or j/k, Enter, or the item's number), coloured only when the theme allows. */
export function Menu<V extends string>({items, onSelect, isFocused = true}: {items: Array<MenuItem<V>>; onSelect: (value: V) => void; isFocused?: boolean}) {
	return (
		<SelectInput
			items={items.map(item => ({key: item.value, label: item.label, value: item.value}))}
			isFocused={isFocused}
			indicatorComponent={Indicator}
			itemComponent={Item}
			onSelect={item => onSelect(item.value)}
		/>
	);
}
