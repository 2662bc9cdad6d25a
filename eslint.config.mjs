// @ts-check
// Lint for src/ and test/ (npm test runs it): typescript-eslint's
// recommended rules; formatting is prettier's job (.prettierrc.json).
import eslint from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', 'coverage/', 'deploy/', '**/*.cjs'] },
  eslint.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { process: 'readonly', console: 'readonly', Buffer: 'readonly', setTimeout: 'readonly', clearTimeout: 'readonly', setInterval: 'readonly', clearInterval: 'readonly', setImmediate: 'readonly', URL: 'readonly', performance: 'readonly', fetch: 'readonly', AbortController: 'readonly', TextEncoder: 'readonly', TextDecoder: 'readonly', structuredClone: 'readonly', queueMicrotask: 'readonly', NodeJS: 'readonly' } },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
    },
  },
  {
    // Sizes a reader can hold (docs/architecture.md): a module over 300
    // lines or a function over 80 does several jobs; split it.
    files: ['src/**/*.ts'],
    rules: {
      'max-lines': ['error', { max: 300 }],
      'max-lines-per-function': ['error', { max: 80, IIFEs: true }],
    },
  },
  {
    // One clock (src/lib/clock.ts), injected: no reading of the system's
    // elsewhere, so tests can hand in one whose sleeps pass at once. The
    // demo's load generator and flaky upstream measure real time.
    files: ['src/**/*.ts'],
    ignores: ['src/lib/clock.ts', 'src/demo/**'],
    rules: {
      'no-restricted-properties': [
        'error',
        { object: 'Date', property: 'now', message: 'Read the injected clock (deps.wall / deps.now, src/lib/clock.ts).' },
        { object: 'performance', property: 'now', message: 'Read the injected clock (deps.now, src/lib/clock.ts).' },
      ],
      'no-restricted-syntax': ['error', { selector: "NewExpression[callee.name='Date'][arguments.length=0]", message: 'new Date() reads the system clock: new Date(deps.wall()).' }],
    },
  },
);
