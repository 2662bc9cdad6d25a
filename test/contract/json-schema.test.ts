/**
 * config/breakwater.schema.json is what `breakwater schema` prints (the
 * validator's own schema), kept equal by this test, and the shipped configs
 * point editors at it.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { configJsonSchema } from '../../src/config/json-schema.js';
import { ROOT } from '../helpers/cli.js';

describe('committed JSON Schema', () => {
  it('equals what breakwater schema prints', () => {
    const committed = JSON.parse(readFileSync(path.join(ROOT, 'config/breakwater.schema.json'), 'utf8')) as unknown;
    expect(committed).toEqual(configJsonSchema());
  });

  it.each([
    'config/breakwater.yaml',
    'config/examples/stripe.yaml',
    'config/examples/github.yaml',
    'config/examples/forward-proxy.yaml',
    'config/examples/openai.yaml',
    'config/examples/intercept.yaml',
  ])('%s carries the yaml-language-server modeline', (file) => {
    const first = readFileSync(path.join(ROOT, file), 'utf8').split('\n')[0]!;
    const match = /^# yaml-language-server: \$schema=(\S+)$/.exec(first);
    expect(match).not.toBeNull();
    expect(readFileSync(path.resolve(path.dirname(path.join(ROOT, file)), match![1]!), 'utf8')).toContain(
      '"title": "Breakwater config"',
    );
  });
});
