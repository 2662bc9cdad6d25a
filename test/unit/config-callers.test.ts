/**
 * `forwardProxy.callers` (SPEC §19.3): every mistake is a problem with its
 * position, and a good list resolves with the global list's ports and mode
 * where a caller names none.
 */
import { describe, expect, it } from 'vitest';
import { formatProblem, parseConfig } from '../../src/config/index.js';

function file(callers: string): string {
  return `version: 1
forwardProxy:
  enabled: true
  allowHosts: ["api.example.com"]
  mode: report
  callers: ${callers}
routes:
  - { name: out, match: { pathPrefix: / } }
`;
}

function problems(text: string): string {
  const result = parseConfig(text, 'c.yaml', { env: {} });
  return result.ok ? '' : result.problems.map(formatProblem).join('\n');
}

describe('forwardProxy.callers in the config', () => {
  it.each([
    ['[{ name: a, match: {}, allowHosts: [] }]', /c\.yaml:\d+:\d+: forwardProxy\.callers\[0\]\.match: names no key/],
    [
      '[{ name: a, match: { source: ["10.0.0.0/33"] }, allowHosts: [] }]',
      /forwardProxy\.callers\[0\]\.match\.source\[0\]: "10\.0\.0\.0\/33" is not a CIDR/,
    ],
    [
      '[{ name: a, match: { source: ["billing"] }, allowHosts: [] }]',
      /forwardProxy\.callers\[0\]\.match\.source\[0\]: "billing" is not a CIDR/,
    ],
    [
      '[{ name: a, match: { proxyUser: x }, allowHosts: [] }, { name: a, match: { proxyUser: y }, allowHosts: [] }]',
      /forwardProxy\.callers\[1\]\.name: duplicate caller name "a"/,
    ],
    ['[{ name: a, match: { proxyUser: x }, allowHosts: [], mode: shadow }]', /forwardProxy\.callers\[0\]\.mode/],
    ['[{ match: { proxyUser: x }, allowHosts: [] }]', /forwardProxy\.callers\[0\].*name/],
  ])('explains callers %s', (callers, expected) => {
    expect(problems(file(callers))).toMatch(expected);
  });

  it('resolves a caller with the global ports and mode where it names none', () => {
    const result = parseConfig(
      file('[{ name: batch, match: { source: ["10.0.0.0/8"] }, allowHosts: ["*.example.com"] }]'),
      'c.yaml',
      { env: {} },
    );
    expect(result.ok && result.loaded.config.forwardProxy.callers).toEqual([
      expect.objectContaining({ name: 'batch', allowHosts: ['*.example.com'], allowPorts: [80, 443], mode: 'report' }),
    ]);
  });
});
