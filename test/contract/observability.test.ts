/**
 * deploy/grafana and deploy/prometheus speak only SPEC §6's metric names,
 * and the alert rules pass `promtool check rules` and `promtool test rules`
 * (Debian's prometheus package; .ci/run installs it).
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parse } from 'yaml';
import { describe, expect, it } from 'vitest';
import { ROOT } from '../helpers/cli.js';

/** SPEC §6 family names, read from the contract copy. */
function specFamilies(): Set<string> {
  const spec = readFileSync(path.join(ROOT, 'test/fixtures/SPEC.md'), 'utf8');
  const section = spec.slice(spec.indexOf('## 6. Metrics'), spec.indexOf('## 7.'));
  return new Set([...section.matchAll(/^\| `(breakwater_[a-z_]+)` \|/gm)].map((match) => match[1]!));
}

const PROMQL_WORDS = new Set([
  'sum',
  'max',
  'min',
  'avg',
  'count',
  'by',
  'without',
  'rate',
  'increase',
  'irate',
  'histogram_quantile',
  'le',
  'and',
  'or',
  'unless',
  'on',
  'ignoring',
  'group_left',
  'group_right',
  'label_values',
  'offset',
  'bool',
  'avg_over_time',
  'max_over_time',
  'min_over_time',
]);

/** Metric names an expression selects: identifiers before `{` or `[`, or standing alone, minus PromQL words and label names. */
export function metricNames(expr: string): string[] {
  const withoutStrings = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/label_values\(([^,()]+),\s*\w+\)/g, 'label_values($1)');
  const withoutLabels = withoutStrings
    .replace(/\{[^}]*\}/g, '{}')
    .replace(/\[[^\]]*\]/g, '[]')
    .replace(/\b(by|without|on|ignoring)\s*\([^)]*\)/g, '');
  const names = [...withoutLabels.matchAll(/[a-zA-Z_:][a-zA-Z0-9_:]*/g)]
    .map((match) => match[0])
    .filter((word) => !PROMQL_WORDS.has(word) && !/^\d/.test(word));
  return names.filter((word) => !/^[smhdwy]$/.test(word));
}

/** True when a name is a SPEC family or one of its histogram series. */
function known(name: string, families: Set<string>): boolean {
  return families.has(name) || families.has(name.replace(/_(bucket|sum|count)$/, ''));
}

const families = specFamilies();

describe('Grafana dashboard', () => {
  const dashboard = JSON.parse(readFileSync(path.join(ROOT, 'deploy/grafana/breakwater.json'), 'utf8')) as {
    panels: { title: string; targets: { expr: string }[] }[];
    templating: { list: { query?: string }[] };
  };
  const expressions = [
    ...dashboard.panels.flatMap((panel) => panel.targets.map((target) => target.expr)),
    ...dashboard.templating.list.map((variable) => variable.query ?? '').filter((query) => query.includes('(')),
  ];

  it('uses only SPEC §6 metric names in every query', () => {
    expect(expressions.length).toBeGreaterThan(8);
    for (const expr of expressions) {
      const names = metricNames(expr);
      expect(names.length, expr).toBeGreaterThan(0);
      for (const name of names) expect(known(name, families), `${name} in ${expr}`).toBe(true);
    }
  });

  it('has panels for requests, errors, retries, breakers, rate limits and latency', () => {
    const titles = dashboard.panels.map((panel) => panel.title.toLowerCase()).join(' | ');
    for (const word of ['requests', 'errors', 'retries', 'breaker', 'rate limiting', 'latency'])
      expect(titles).toContain(word);
  });

  it('catches a query that names a metric SPEC §6 lacks', () => {
    const names = metricNames(
      'sum by (route) (rate(breakwater_requests_failed_total{route="x"}[5m])) / sum(rate(breakwater_requests_total[5m]))',
    );
    expect(names.filter((name) => !known(name, families))).toEqual(['breakwater_requests_failed_total']);
  });
});

describe('Prometheus alert rules', () => {
  const dir = path.join(ROOT, 'deploy/prometheus');

  it('use only SPEC §6 metric names', () => {
    const rules = parse(readFileSync(path.join(dir, 'alerts.yaml'), 'utf8')) as {
      groups: { rules: { alert: string; expr: string }[] }[];
    };
    const all = rules.groups.flatMap((group) => group.rules);
    expect(all.map((rule) => rule.alert)).toEqual(
      expect.arrayContaining([
        'BreakwaterUpstreamDown',
        'BreakwaterUpstreamShedding',
        'BreakwaterUpstreamErrorRatio',
        'BreakwaterRetryBudgetExhausted',
        'BreakwaterRateLimitingSustained',
        'BreakwaterConfigReloadFailed',
      ]),
    );
    for (const rule of all)
      for (const name of metricNames(rule.expr)) expect(known(name, families), `${name} in ${rule.alert}`).toBe(true);
  });

  it('pass promtool check rules and promtool test rules', () => {
    const check = execFileSync('promtool', ['check', 'rules', 'alerts.yaml'], { cwd: dir, encoding: 'utf8' });
    expect(check).toMatch(/SUCCESS: \d+ rules found/);
    const test = execFileSync('promtool', ['test', 'rules', 'alerts.test.yaml'], { cwd: dir, encoding: 'utf8' });
    expect(test).toMatch(/SUCCESS/);
  });
});
