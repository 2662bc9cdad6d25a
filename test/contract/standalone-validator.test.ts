/**
 * A built Breakwater checks configs with the standalone code `npm run build`
 * generates (dist/config/validate-file.cjs); tests of the sources compile
 * the schema with ajv. Both must judge every config alike, word for word:
 * same verdict, same errors (which the messages are made of).
 */
import { readFileSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import type { ValidateFunction } from 'ajv';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { ajvFormats, type AjvFormat } from '../../src/config/ajv-setup.js';
import { compileValidator } from '../../src/config/validate-compile.js';
import { ROOT } from '../helpers/cli.js';

const create = createRequire(import.meta.url)(path.join(ROOT, 'dist/config/validate-file.cjs')) as (
  formats: Record<string, AjvFormat>,
) => ValidateFunction;
const standalone = create(ajvFormats());
const compiled = compileValidator();

const examples = readdirSync(path.join(ROOT, 'config/examples')).map(
  (name) =>
    [
      `config/examples/${name}`,
      parse(readFileSync(path.join(ROOT, 'config/examples', name), 'utf8')) as unknown,
    ] as const,
);

const BAD: readonly (readonly [string, unknown])[] = [
  ['an unknown key', { version: 1, routes: [{ name: 'a', upstrem: 'x' }] }],
  ['a number for a duration', { version: 1, routes: [{ name: 'a', upstream: 'x', timeouts: { perTry: 5 } }] }],
  [
    'a duration with no unit',
    {
      version: 1,
      upstreams: { x: { url: 'http://h' } },
      routes: [{ name: 'a', upstream: 'x', timeouts: { total: '30' } }],
    },
  ],
  ['a bad URL', { version: 1, upstreams: { x: { url: 'ftp://h' } }, routes: [{ name: 'a', upstream: 'x' }] }],
  [
    'a bad condition word',
    {
      version: 1,
      upstreams: { x: { url: 'http://h' } },
      routes: [{ name: 'a', upstream: 'x', retry: { retryOn: ['5xx', 'sometimes'] } }],
    },
  ],
  ['a wrong version', { version: 2, routes: [] }],
  ['no routes', { version: 1 }],
  ['a list for a map', { version: 1, upstreams: [], routes: [] }],
];

const asJson = (value: unknown): unknown => JSON.parse(JSON.stringify(value ?? null));

describe('the standalone validator and the compiled one', () => {
  it.each([...examples, ...BAD])('judge %s alike', (_name, config) => {
    const verdict = standalone(config);
    expect(verdict).toBe(compiled(config));
    // As JSON: the compiled side's schema objects also carry TypeBox's symbols.
    expect(asJson(standalone.errors)).toEqual(asJson(compiled.errors));
  });

  it('refuse the bad ones (the comparison is not of two that accept everything)', () => {
    for (const [, config] of BAD) expect(standalone(config)).toBe(false);
    expect(examples.length).toBeGreaterThan(0);
  });
});
