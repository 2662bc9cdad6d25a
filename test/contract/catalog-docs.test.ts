/**
 * The error catalogue and the metric registry are kept equal to the
 * project's docs and to the contract, in both directions (STYLE.md:
 * fastify's model). test/fixtures/SPEC.md is a copy of the contract as
 * this code was built to; a contract change lands there with the code.
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { CATALOG } from '../../src/errors/catalog.js';
import {
  OTHER_CLIENT_ERROR,
  OTHER_SERVER_ERROR,
  RULE_CODES,
  UPSTREAM_STATUSES,
} from '../../src/errors/upstream-catalog.js';
import { PROVIDER_RULES } from '../../src/errors/provider-table.js';
import { createMetrics } from '../../src/observe/metrics.js';
import { parseConfig } from '../../src/config/load.js';
import { createCa } from '../../src/tls/certificates.js';
import { ROOT } from '../helpers/cli.js';

/** Rows of the first Markdown table under `heading` whose first cell is `code`-quoted. */
function tableRows(file: string, heading: string): string[][] {
  const text = readFileSync(path.join(ROOT, file), 'utf8');
  const section = text.slice(text.indexOf(heading));
  const rows: string[][] = [];
  let inTable = false;
  for (const line of section.split('\n').slice(1)) {
    if (line.startsWith('|')) {
      inTable = true;
      const cells = line
        .split('|')
        .slice(1, -1)
        .map((cell) => cell.trim());
      if (/^`[^`]+`$/.test(cells[0]!)) rows.push([cells[0]!.slice(1, -1), ...cells.slice(1)]);
    } else if (inTable) break;
  }
  return rows;
}

describe('error catalogue ↔ docs/errors.md', () => {
  const rows = tableRows('docs/errors.md', '## Codes');

  it('documents every code with its status, retryability and responsibility', () => {
    for (const [code, entry] of Object.entries(CATALOG)) {
      const row = rows.find((r) => r[0] === code);
      expect(row, `${code} is missing from docs/errors.md`).toBeDefined();
      // The status first; a code sent inside an answer already under way says so after it (SPEC §16).
      expect(parseInt(row![1]!, 10)).toBe(entry.status);
      // Its default: a few codes name an exception in words (RATE_LIMITED's cost that can never fit, SPEC §15).
      expect(row![3]!.split(' ')[0]).toBe(String(entry.retryable));
      expect(row![4]).toBe(entry.responsibility);
    }
  });

  it('documents no code the catalogue lacks', () => {
    expect(rows.map((r) => r[0]).sort()).toEqual(Object.keys(CATALOG).sort());
  });

  it('gives every code a title and a hint that names a first step', () => {
    for (const [code, entry] of Object.entries(CATALOG)) {
      expect(entry.title.length, code).toBeGreaterThan(3);
      expect(entry.hint.length, code).toBeGreaterThan(30);
      expect(entry.hint, code).toMatch(/;|,/);
    }
  });
});

describe('upstream status table ↔ docs/errors.md', () => {
  const text = readFileSync(path.join(ROOT, 'docs/errors.md'), 'utf8');
  const section = text.slice(text.indexOf('## Upstream errors'));
  const rows = section
    .split('\n')
    .filter((line) => /^\| (\d{3}|other [45]xx) \|/.test(line))
    .map((line) =>
      line
        .split('|')
        .slice(1, -1)
        .map((cell) => cell.trim()),
    );
  const expected: string[][] = [
    ...Object.entries(UPSTREAM_STATUSES).map(([status, entry]) => [
      status,
      `\`${entry.code}\``,
      entry.responsibility,
      String(entry.retryable),
      entry.hint,
    ]),
    [
      'other 4xx',
      `\`${OTHER_CLIENT_ERROR.code}\``,
      OTHER_CLIENT_ERROR.responsibility,
      String(OTHER_CLIENT_ERROR.retryable),
      OTHER_CLIENT_ERROR.hint,
    ],
    [
      'other 5xx',
      `\`${OTHER_SERVER_ERROR.code}\``,
      OTHER_SERVER_ERROR.responsibility,
      String(OTHER_SERVER_ERROR.retryable),
      OTHER_SERVER_ERROR.hint,
    ],
  ];

  it('documents every status row as the table has it, and nothing else', () => {
    expect(rows).toEqual(expected);
  });

  it('names the codes SPEC §5 lists for normalize: all', () => {
    const spec = readFileSync(path.join(ROOT, 'test/fixtures/SPEC.md'), 'utf8');
    for (const [, code] of expected) expect(spec).toContain(code!);
  });
});

/**
 * SPEC rows of sections 15-19 whose features are not built yet, each with the
 * open issue that builds it. They are left out of the docs until they land
 * (docs describe what runs); the test fails if one is documented but still
 * listed here, or listed but gone from SPEC.
 */
const PENDING_METRICS: Record<string, string> = {};
/** Labels SPEC gives a built family for a feature still to be built. */
const PENDING_LABELS: Record<string, { label: string; issue: string }> = {};
const PENDING_CODES: Record<string, string> = {};
/** Codes whose SPEC row names a behaviour still to be built: the docs keep their wording until it lands (same status and responsibility). */
const PENDING_WORDING: Record<string, string> = {};

describe('docs ↔ SPEC', () => {
  it("carries SPEC §5's error table row for row, but for the codes of features still to be built", () => {
    const docs = tableRows('docs/errors.md', '## Codes');
    const spec = tableRows('test/fixtures/SPEC.md', '## 5. Normalized error body').filter((r) => r[1] !== '—');
    expect(
      Object.keys({ ...PENDING_CODES, ...PENDING_WORDING }).filter((code) => !spec.some((r) => r[0] === code)),
    ).toEqual([]);
    expect(docs.filter((r) => r[0]! in PENDING_CODES)).toEqual([]);
    const built = spec.filter((r) => !(r[0]! in PENDING_CODES));
    expect(docs.map((r) => r[0])).toEqual(built.map((r) => r[0]));
    for (const row of built) {
      const doc = docs.find((r) => r[0] === row[0])!;
      if (row[0]! in PENDING_WORDING) expect([doc[1], doc[4]], row[0]).toEqual([row[1], row[4]]);
      else expect(doc, row[0]).toEqual(row);
    }
  });

  it("carries SPEC §6's metric table row for row, but for the rows of features still to be built", () => {
    const spec = tableRows('test/fixtures/SPEC.md', '## 6. Metrics');
    const pending = Object.keys(PENDING_METRICS);
    expect(pending.filter((name) => !spec.some((r) => r[0] === name))).toEqual([]);
    const families = tableRows('docs/metrics.md', '## Families');
    expect(families.filter((r) => pending.includes(r[0]!))).toEqual([]);
    const built = spec.filter((r) => !pending.includes(r[0]!));
    expect(families.map((r) => r.slice(0, 2))).toEqual(built.map((r) => r.slice(0, 2)));
    const labelNames = (name: string, cell: string) =>
      cell
        .replace(/\([^)]*\)/g, '')
        .split(',')
        .map((part) => part.trim())
        .filter((label) => PENDING_LABELS[name]?.label !== label);
    expect(families.map((r) => labelNames(r[0]!, r[2]!))).toEqual(built.map((r) => labelNames(r[0]!, r[2]!)));
    for (const [name, { label }] of Object.entries(PENDING_LABELS)) {
      expect(spec.find((r) => r[0] === name)?.[2], name).toContain(label);
      expect(families.find((r) => r[0] === name)?.[2], name).not.toContain(label);
    }
  });
});

describe('metric registry ↔ docs/metrics.md', () => {
  const rows = tableRows('docs/metrics.md', '## Families');

  it('registers every documented family with its type and labels, and nothing undocumented', async () => {
    const metrics = createMetrics({ defaultMetrics: false });
    const registered = await metrics.registry.getMetricsAsJSON();
    const ours = registered.filter((m) => m.name.startsWith('breakwater_'));
    expect(ours.map((m) => m.name).sort()).toEqual(rows.map((r) => r[0]).sort());
    for (const [name, type, labels] of rows) {
      const metric = metrics.registry.getSingleMetric(name!) as unknown as
        { type: string; labelNames: string[] } | undefined;
      expect(metric, name).toBeDefined();
      expect(metric!.type, name).toBe(type);
      // A label in parentheses is only there when its feature is configured (`priority`, SPEC §13).
      expect([...metric!.labelNames].sort(), name).toEqual(
        labels!
          .replace(/[()]/g, ',')
          .split(',')
          .map((l) => l.trim())
          // A section reference (`§16`) says where the family is specified; it is not a label.
          .filter((l) => l !== '' && !l.startsWith('§'))
          .sort(),
      );
    }
  });
});

describe('docs/intercept.md example', () => {
  it('is a valid config once its CA files exist', async () => {
    const text = readFileSync(path.join(ROOT, 'docs/intercept.md'), 'utf8');
    // The block sits in a numbered list: indented by its item.
    const [, indent, raw] = /\n( *)```yaml\n([\s\S]*?) *```/.exec(text)!;
    const block = raw!
      .split('\n')
      .map((line) => line.slice(indent!.length))
      .join('\n');
    const dir = mkdtempSync(path.join(os.tmpdir(), 'bw-docs-ca-'));
    const ca = await createCa(['api.stripe.com', '*.github.com']);
    writeFileSync(path.join(dir, 'ca.crt'), ca.certPem);
    writeFileSync(path.join(dir, 'ca.key'), ca.keyPem, { mode: 0o600 });
    expect(block).toContain('/etc/breakwater/ca/ca.key');
    const result = parseConfig(
      `version: 1\n${block.replaceAll('/etc/breakwater/ca/', `${dir}/`)}`,
      path.join(dir, 'breakwater.yaml'),
    );
    expect(result.ok ? [] : result.problems).toEqual([]);
  });
});

describe('provider rules ↔ docs/errors.md ↔ SPEC §14', () => {
  const rowsOf = (file: string, heading: string, columns: number) => {
    const text = readFileSync(path.join(ROOT, file), 'utf8');
    const start = text.indexOf(heading);
    const section = text.slice(start, text.indexOf('\n## ', start + heading.length));
    return section
      .split('\n')
      .filter(
        (line) => line.startsWith('| ') && !line.startsWith('| ---') && !/^\| (provider answer|code) \|/.test(line),
      )
      .map((line) =>
        line
          .split(' | ')
          .map((cell) => cell.replace(/^\| |\s\|$/g, '').trim())
          .slice(0, columns),
      );
  };

  it('documents every built-in rule as the table has it, in order, and nothing else', () => {
    const docs = rowsOf('docs/errors.md', "## Provider rules: the body's code outranks the status", 3).filter(
      (row) => row.length === 3 && !row[0]!.startsWith('`UPSTREAM_'),
    );
    expect(docs).toEqual(PROVIDER_RULES.map((rule) => [rule.answer, rule.treatedAs, `\`${rule.name}\``]));
  });

  it('carries SPEC §14’s table row for row', () => {
    const spec = rowsOf('test/fixtures/SPEC.md', '## 14. Provider-aware decisions', 2);
    expect(spec).toEqual(PROVIDER_RULES.map((rule) => [rule.answer, rule.treatedAs]));
  });

  it('documents the codes only a rule gives', () => {
    const text = readFileSync(path.join(ROOT, 'docs/errors.md'), 'utf8');
    for (const entry of Object.values(RULE_CODES))
      expect(text).toContain(`| \`${entry.code}\` | ${entry.responsibility} | ${entry.retryable} | ${entry.hint} |`);
    expect(readFileSync(path.join(ROOT, 'test/fixtures/SPEC.md'), 'utf8')).toContain('UPSTREAM_QUOTA_EXHAUSTED');
  });
});
