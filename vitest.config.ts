import {defineConfig} from 'vitest/config';

export default defineConfig({
	test: {
		projects: [
			{test: {name: 'unit', include: ['test/unit/**/*.test.{ts,tsx}'], testTimeout: 30_000}},
			// The lab's hosts are shared: end-to-end files run one after the other.
			{test: {name: 'e2e', include: ['test/e2e/**/*.test.ts'], globalSetup: ['test/e2e/global-setup.ts'], testTimeout: 600_000, hookTimeout: 600_000, fileParallelism: false}},
		],
	},
});
