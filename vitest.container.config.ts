import { defineConfig } from 'vitest/config';

/** `npm run test:container`: the image built and run with podman (see test/container). */
export default defineConfig({
  test: {
    include: ['test/container/**/*.test.ts'],
    globalSetup: ['test/setup/build.ts'],
    testTimeout: 120_000,
    hookTimeout: 900_000,
  },
});
