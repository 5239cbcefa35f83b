import {defineConfig} from 'vitest/config';

export default defineConfig({
	test: {
		projects: [
			// Ink renders only a final frame under CI=true; the UI tests play a person at a terminal, as
			// the CLI does before it mounts the UI.
			{test: {name: 'unit', include: ['test/unit/**/*.test.{ts,tsx}'], setupFiles: ['test/helpers/cleanup.ts'], testTimeout: 30_000, env: {CI: 'false', CONTINUOUS_INTEGRATION: 'false'}}},
			// The lab's hosts are shared: end-to-end files run one after the other.
			{test: {name: 'e2e', include: ['test/e2e/**/*.test.ts'], setupFiles: ['test/helpers/cleanup.ts'], globalSetup: ['test/e2e/global-setup.ts'], testTimeout: 600_000, hookTimeout: 600_000, fileParallelism: false}},
		],
	},
});
