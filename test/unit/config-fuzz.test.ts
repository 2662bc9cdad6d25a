/**
 * Mutates SPEC §3's example 500 times (keys renamed or deleted, values
 * swapped between types, lines dropped or duplicated) and checks that
 * validation never throws and either accepts the file or reports at least
 * one well-formed `FILE:LINE:COL: path: message` line inside the file.
 * The generator is seeded, so a failure names a reproducible case.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { formatProblem, parseConfig } from '../../src/config/index.js';
import { ROOT } from '../helpers/cli.js';
import { seededRandom } from '../../src/demo/prng.js';

const SPEC_EXAMPLE = readFileSync(path.join(ROOT, 'test/fixtures/spec-example.yaml'), 'utf8');
const RUNS = 500;
const SEED = 20261123;

const REPLACEMENT_VALUES = [
  'true',
  'yes',
  '3',
  '"3"',
  '-1',
  '0',
  '[]',
  '{}',
  'null',
  '~',
  '10 seconds',
  '25/sec',
  '"${env:NOPE}"',
  'ftp://x',
  '1e309',
  "'",
  '[1, [2',
  '*alias',
];

type Mutation = (lines: string[], random: () => number) => string;

function pick<T>(items: readonly T[], random: () => number): T {
  return items[Math.floor(random() * items.length)]!;
}

const KEY_LINE = /^(\s*(?:- )?)([A-Za-z][\w-]*)(:.*)$/;

const MUTATIONS: Record<string, Mutation> = {
  renameKey(lines, random) {
    const candidates = lines.map((line, index) => [line, index] as const).filter(([line]) => KEY_LINE.test(line));
    const [line, index] = pick(candidates, random);
    const [, indent, key, rest] = KEY_LINE.exec(line)!;
    const at = Math.floor(random() * key!.length);
    const renamed = pick(
      [
        key!.slice(0, at) + key!.slice(at + 1),
        key!.slice(0, at) + 'x' + key!.slice(at),
        key!.toUpperCase(),
        `${key}s`,
        key!.slice(0, at) + (key![at + 1] ?? '') + key![at] + key!.slice(at + 2),
      ],
      random,
    );
    lines[index] = `${indent}${renamed || 'k'}${rest}`;
    return `rename ${key} -> ${renamed} at line ${index + 1}`;
  },
  deleteLine(lines, random) {
    const index = Math.floor(random() * lines.length);
    lines.splice(index, 1);
    return `delete line ${index + 1}`;
  },
  duplicateLine(lines, random) {
    const index = Math.floor(random() * lines.length);
    lines.splice(index, 0, lines[index]!);
    return `duplicate line ${index + 1}`;
  },
  swapValue(lines, random) {
    const candidates = lines
      .map((line, index) => [line, index] as const)
      .filter(([line]) => /^\s*(?:- )?[A-Za-z][\w-]*: \S/.test(line));
    const [line, index] = pick(candidates, random);
    const value = pick(REPLACEMENT_VALUES, random);
    lines[index] = line.replace(/^(\s*(?:- )?[A-Za-z][\w-]*: ).*$/, `$1${value}`);
    return `value at line ${index + 1} -> ${value}`;
  },
  swapInlineValue(lines, random) {
    const candidates = lines
      .map((line, index) => [line, index] as const)
      .filter(([line]) => /\{ *\w+: [^,}]+/.test(line));
    const [line, index] = pick(candidates, random);
    const value = pick(REPLACEMENT_VALUES, random);
    lines[index] = line.replace(/(\{ *\w+: )[^,}]+/, `$1${value}`);
    return `inline value at line ${index + 1} -> ${value}`;
  },
  reindent(lines, random) {
    const index = Math.floor(random() * lines.length);
    lines[index] = pick(['  ', '\t', ' '], random) + lines[index];
    return `indent line ${index + 1}`;
  },
};

describe('config validation under mutation', () => {
  it(`never throws and always accepts or locates a problem (${RUNS} mutants, seed ${SEED})`, () => {
    const random = seededRandom(SEED);
    const names = Object.keys(MUTATIONS);
    let accepted = 0;
    let rejected = 0;
    for (let run = 0; run < RUNS; run++) {
      const lines = SPEC_EXAMPLE.split('\n');
      const steps: string[] = [];
      const count = 1 + Math.floor(random() * 3);
      for (let step = 0; step < count; step++) steps.push(MUTATIONS[pick(names, random)]!(lines, random));
      const text = lines.join('\n');
      const context = `mutant ${run}: ${steps.join('; ')}`;

      let result;
      try {
        result = parseConfig(text, 'mutant.yaml', { env: { STRIPE_KEY: 'sk' } });
      } catch (error) {
        throw new Error(`${context}: validation threw ${(error as Error).stack}`);
      }
      if (result.ok) {
        accepted++;
        continue;
      }
      rejected++;
      expect(result.problems.length, context).toBeGreaterThan(0);
      const lineCount = lines.length + 1;
      for (const problem of result.problems) {
        expect(formatProblem(problem), context).toMatch(/^mutant\.yaml:\d+:\d+: \S+: \S.*$/);
        expect(problem.line, context).toBeGreaterThanOrEqual(1);
        expect(problem.line, context).toBeLessThanOrEqual(lineCount);
        expect(problem.col, context).toBeGreaterThanOrEqual(1);
      }
    }
    // The mutations must exercise both outcomes, or the test proves little.
    expect(rejected).toBeGreaterThan(RUNS / 2);
    expect(accepted).toBeGreaterThan(0);
  });
});
