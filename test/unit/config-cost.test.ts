/**
 * The config of quotas in several dimensions (SPEC §15): every mistake in
 * `pacing.cost`, `pacing.quotaHeaders`, `rateLimit.cost` and `settle` is a
 * problem with its position, and a good file resolves as written.
 */
import { describe, expect, it } from 'vitest';
import { formatProblem, parseConfig } from '../../src/config/index.js';

function file(pacing: string, route = ''): string {
  return `version: 1
upstreams:
  u: { url: "http://127.0.0.1:1", pacing: ${pacing} }
routes:
  - name: r
    upstream: u
${route ? `    ${route}\n` : ''}`;
}

function problems(text: string): string {
  const result = parseConfig(text, 'c.yaml', { env: {} });
  return result.ok ? '' : result.problems.map(formatProblem).join('\n');
}

describe('quota dimensions and costs in the config', () => {
  it.each([
    ['{ enabled: true, cost: { requests: openai } }', /pacing\.cost\.requests: requests always cost 1 per attempt/],
    [
      '{ enabled: true, headers: x-ratelimit, cost: openai }',
      /pacing\.cost: headers: x-ratelimit never announces a "tokens" dimension \(it announces requests\)/,
    ],
    [
      '{ enabled: true, headers: openai, cost: { points: "json:cost" } }',
      /pacing\.cost\.points: headers: openai never announces a "points" dimension/,
    ],
    ['{ enabled: true, headers: custom }', /pacing\.headers: headers: custom reads only pacing\.quotaHeaders/],
    ['{ enabled: true, cost: { tokens: "json:a..b" } }', /pacing\.cost\.tokens: "a\.\.b" is not a JSON path/],
    ['{ enabled: true, cost: { tokens: "json:__proto__.x" } }', /"__proto__\.x" is not a JSON path/],
    ['{ enabled: true, cost: { tokens: opena } }', /"opena" is not a cost; did you mean "openai"\?/],
    ['{ enabled: true, cost: { tokens: "header:bad name" } }', /"bad name" is not a valid header name/],
    ['{ enabled: true, cost: { Tokens: openai } }', /pacing\.cost.*Tokens/],
    ['{ enabled: true, cost: { constructor: openai } }', /pacing\.cost.*constructor/],
    ['{ enabled: true, quotaHeaders: [{ dimension: points, remaining: X-Left }] }', /quotaHeaders\[0\].*reset/],
    [
      '{ enabled: true, quotaHeaders: [{ dimension: p, remaining: a, reset: b }, { dimension: p, remaining: c, reset: d }] }',
      /quotaHeaders\[1\]\.dimension: dimension "p" is mapped twice/,
    ],
  ])('explains pacing %s', (pacing, expected) => {
    expect(problems(file(pacing))).toMatch(expected);
  });

  it.each([
    ['rateLimit: { maxConcurrent: 5, cost: openai }', /rateLimit\.cost: cost needs a rate/],
    ['rateLimit: { rate: 5/s, settle: usage }', /rateLimit\.settle: settle: usage needs a cost/],
    ['rateLimit: { rate: 5/s, cost: "json:" }', /rateLimit\.cost: "" is not a JSON path/],
    ['rateLimit: { rate: 5/s, settle: sometimes }', /rateLimit\.settle: must be one of none, usage/],
  ])('explains %s', (route, expected) => {
    expect(problems(file('{ enabled: false }', route))).toMatch(expected);
  });

  it('accepts and resolves the SPEC §15 example', () => {
    const result = parseConfig(
      file(
        `{ enabled: true, headers: custom, cost: { points: "json:cost.requested", tokens: anthropic },
       quotaHeaders: [{ dimension: points, limit: X-Points-Limit, remaining: X-Points-Remaining, reset: X-Points-Reset, resetFormat: delta },
                      { dimension: tokens, remaining: X-Tokens-Left, reset: X-Tokens-Reset }] }`,
        'rateLimit: { rate: 40000/min, burst: 40000, key: "header:x-tenant", cost: openai, settle: usage }',
      ),
      'c.yaml',
      { env: {} },
    );
    if (!result.ok) throw new Error(result.problems.map(formatProblem).join('\n'));
    const pacing = result.loaded.config.upstreams.u!.pacing;
    expect(pacing.cost).toEqual({ points: 'json:cost.requested', tokens: 'anthropic' });
    expect(pacing.quotaHeaders).toEqual([
      {
        dimension: 'points',
        limit: 'x-points-limit',
        remaining: 'x-points-remaining',
        reset: 'x-points-reset',
        resetFormat: 'delta',
      },
      {
        dimension: 'tokens',
        limit: undefined,
        remaining: 'x-tokens-left',
        reset: 'x-tokens-reset',
        resetFormat: 'auto',
      },
    ]);
    const limit = result.loaded.config.routes[0]!.rateLimit!;
    expect([limit.rate, limit.burst, limit.cost, limit.settle]).toEqual([40000 / 60, 40000, 'openai', 'usage']);
  });
});
