import {cleanup} from 'ink-testing-library';
import {afterEach, expect, test} from 'vitest';
import {baseConfig, writeConfig} from '../../helpers/fixture.js';
import {mount, setup} from './helpers.js';

afterEach(cleanup);

test('the plan screen says which master leaves and what that changes, before Start', async () => {
	const {session, headless, dir, tarball, cluster} = setup();
	await (await headless()).apply({confirm: false});
	const config = baseConfig(tarball);
	writeConfig(dir, {...config, masters: config.masters.slice(0, 2)});
	const calls = cluster.calls.length;
	const app = mount(session());
	const plan = await app.until('Masters that join or leave');
	expect(plan).toMatch(/• k8smaster03 \(172\.24\.8\.73\) leaves: first out of kube-nginx on every master that stays/);
	expect(plan).toMatch(/• etcd is external to this tool and is not changed/);
	// The plan reads the masters that stay; the leaving one is not contacted.
	expect(cluster.calls.slice(calls).filter(call => call.args.includes('172.24.8.73'))).toEqual([]);
});
