/** @type {import('jest').Config} */
module.exports = {
  preset: 'ts-jest',
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  // Real servers and Python processes start inside the tests, so the default 5 s is too short.
  testTimeout: 120_000,
  // Suites share one Temporal dev server and two CPU cores; running them one at a time keeps timings honest.
  maxWorkers: 1,
  setupFiles: ['<rootDir>/test/support/runtime-logger.ts'],
  globalSetup: '<rootDir>/test/support/global-setup.ts',
  globalTeardown: '<rootDir>/test/support/global-teardown.ts',
  // The Temporal SDK's native runtime keeps handles open after its environments are torn down (sdk-typescript #928).
  forceExit: true,
  transform: {
    '^.+\\.ts$': ['ts-jest', { tsconfig: 'tsconfig.json' }],
  },
};
