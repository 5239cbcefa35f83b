import {formatBytes} from '../../reporters/format.js';
import {percent} from '../run-model.js';
import {Txt} from '../theme.js';

/** [██████░░░░░░]  48%  12.3 MiB of 25.6 MiB */
export function progressText(bytes: number, total: number, width = 20): string {
	const share = percent(bytes, total) ?? 0;
	const filled = Math.round((share / 100) * width);
	return `[${'█'.repeat(filled)}${'░'.repeat(width - filled)}] ${String(share).padStart(3)}%  ${formatBytes(bytes)} of ${formatBytes(total)}`;
}

export function ProgressBar({bytes, total}: {bytes: number; total: number}) {
	return <Txt tone="info">{progressText(bytes, total)}</Txt>;
}
