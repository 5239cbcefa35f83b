import type {ResolvedConfig} from '../../source/config/load.js';
import {Engine, type EngineOptions} from '../../source/engine/engine.js';
import {headlessPrompter} from '../../source/engine/prompts.js';
import {Runner} from '../../source/runner.js';
import {Workspace} from '../../source/workspace.js';
import type {FakeCluster} from './fake-hosts.js';

/** An engine on the fake masters, as most tests build one: headless, answering yes, never overwriting; `options` replace any of it. */
export function fakeEngine(cluster: FakeCluster, config: ResolvedConfig, stateDir: string, options: Partial<EngineOptions> = {}): Engine {
	return new Engine({config, workspace: new Workspace(stateDir, config.name), runner: new Runner({executor: cluster.executor}), prompter: headlessPrompter({yes: true, overwrite: false}), probe: cluster.probe, api: cluster.api, ...options});
}
