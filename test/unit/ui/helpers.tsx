import {render} from 'ink-testing-library';
import {loadConfig} from '../../../source/config/load.js';
import {Engine} from '../../../source/engine/engine.js';
import {headlessPrompter} from '../../../source/engine/prompts.js';
import {Runner, type Executor} from '../../../source/runner.js';
import {InstallerApp} from '../../../source/ui/app.js';
import {Session, type EngineFactory} from '../../../source/ui/session.js';
import type {Theme} from '../../../source/ui/theme.js';
import {Workspace} from '../../../source/workspace.js';
import {FakeCluster} from '../../helpers/fake-hosts.js';
import {baseConfig, makeFixture, writeConfig} from '../../helpers/fixture.js';

export const ips = ['172.24.8.71', '172.24.8.72', '172.24.8.73'];

export const keys = {
	enter: '\r',
	down: '\u001B[B',
	up: '\u001B[A',
	escape: '\u001B',
	ctrlC: '\u0003',
	ctrlU: '\u0015',
	backspace: '\u007F',
};

export const delay = async (ms: number) => new Promise(resolve => {
	setTimeout(resolve, ms);
});

/** A fixture folder, the fake three-master cluster, and an engine factory that records every apply. */
export function setup(options: {config?: boolean; executor?: (cluster: FakeCluster) => Executor} = {}) {
	const fixture = makeFixture();
	const configFile = options.config === false ? `${fixture.dir}/cluster.yaml` : writeConfig(fixture.dir, baseConfig(fixture.tarball));
	const cluster = new FakeCluster(ips);
	const applies: Array<{confirm: boolean; skipHosts?: string[]}> = [];
	const executor = options.executor?.(cluster) ?? cluster.executor;
	const createEngine: EngineFactory = ({config, prompter, logFile, rotate}) => {
		const engine = new Engine({config, workspace: new Workspace(fixture.stateDir, config.name), runner: new Runner({executor, logFile}), prompter, probe: cluster.probe, api: cluster.api, rotate});
		const apply = engine.apply.bind(engine);
		engine.apply = async applyOptions => {
			applies.push(applyOptions);
			return apply(applyOptions);
		};

		return engine;
	};

	/** A headless engine on the same cluster and state, to prepare a situation before the UI starts. */
	const headless = async (overwrite = true) => {
		const config = await loadConfig(configFile);
		return new Engine({config, workspace: new Workspace(fixture.stateDir, config.name), runner: new Runner({executor: cluster.executor}), prompter: headlessPrompter({yes: true, overwrite}), probe: cluster.probe, api: cluster.api});
	};

	const session = () => new Session({configFile, stateDir: fixture.stateDir, createEngine, cwd: fixture.dir});
	return {...fixture, configFile, cluster, applies, createEngine, headless, session};
}

/** Mounts the app on ink-testing-library's fake terminal (100 columns). */
export function mount(session: Session, theme: Theme = {color: false}) {
	let resolveExit: (code: number) => void = () => undefined;
	const exited = new Promise<number>(resolve => {
		resolveExit = resolve;
	});
	const instance = render(<InstallerApp session={session} theme={theme} onExit={code => resolveExit(code)} />);
	const frame = () => instance.lastFrame() ?? '';

	/** Waits until the frame shows text (or matches), failing with the last frame. */
	const until = async (expected: string | RegExp, timeoutMs = 20_000): Promise<string> => {
		const started = Date.now();
		for (;;) {
			const current = frame();
			if (typeof expected === 'string' ? current.includes(expected) : expected.test(current)) {
				return current;
			}

			if (Date.now() - started > timeoutMs) {
				throw new Error(`timed out waiting for ${String(expected)}; last frame:\n${current}`);
			}

			await delay(20);
		}
	};

	/** Presses keys after a pause, so that the component on screen has subscribed to input. */
	const press = async (...sequence: string[]) => {
		for (const key of sequence) {
			await delay(60);
			instance.stdin.write(key);
		}

		await delay(30);
	};

	/** Types text into the field on screen, first clearing what is prefilled. */
	const type = async (text: string) => {
		await press(keys.ctrlU, text);
	};

	return {...instance, frame, until, press, type, exited};
}
