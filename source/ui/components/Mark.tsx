import Spinner from 'ink-spinner';
import type {Mark as MarkKind} from '../run-model.js';
import {Txt} from '../theme.js';
import {markGlyph, markTone} from '../wording.js';

/** A status mark: ○ pending, a spinner while running, ✔ done, ↷ already in place, ✘ failed, ■ stopped, – left out. */
export function Mark({mark}: {mark: MarkKind}) {
	if (mark === 'running') {
		return <Txt tone="info"><Spinner type="dots" /></Txt>;
	}

	return <Txt tone={markTone[mark]}>{markGlyph[mark]}</Txt>;
}
