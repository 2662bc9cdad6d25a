/**
 * The schema's `default` annotations (what `breakwater schema` and editors
 * show) are the defaults the resolver fills in (config/defaults.ts): each
 * section declares both side by side, and this keeps them equal.
 */
import { describe, expect, it } from 'vitest';
import { configJsonSchema } from '../../src/config/json-schema.js';
import { DEFAULTS } from '../../src/config/defaults.js';
import { unitOf } from '../../src/config/convert.js';
import { resolveConfig } from '../../src/config/resolve.js';

type Node = {
  properties?: Record<string, Node>;
  items?: Node;
  additionalProperties?: Node | boolean;
  default?: unknown;
};

/** Every annotated default, by its path in the file (`*` for a map's entries, `[]` for a list's items). */
function annotated(node: Node, path: string[] = [], out: [string[], unknown][] = []): [string[], unknown][] {
  if (node.default !== undefined && path.length > 0) out.push([path, node.default]);
  for (const [key, child] of Object.entries(node.properties ?? {})) annotated(child, [...path, key], out);
  if (node.items) annotated(node.items, [...path, '[]'], out);
  if (typeof node.additionalProperties === 'object') annotated(node.additionalProperties, [...path, '*'], out);
  return out;
}

/** Where the resolver takes a file path's default from. */
function defaultsPath(path: string[]): string[] | undefined {
  const [first, ...rest] = path;
  const policy = (keys: string[]) =>
    ['timeouts', 'retry', 'rateLimit', 'errors'].includes(keys[0]!) ? keys : undefined;
  if (first === 'defaults') return policy(rest);
  if (first === 'upstreams' && rest[0] === '*') return ['upstream', ...rest.slice(1)];
  if (first === 'routes' && rest[0] === '[]') {
    const keys = rest.slice(1);
    if (keys[0] === 'fallback' && keys[1] === 'stale') return ['stale', ...keys.slice(2)];
    if (keys[0] === 'cache') return keys;
    return policy(keys) ?? ['route', ...keys];
  }
  return path;
}

function at(value: unknown, keys: string[]): unknown {
  return keys.reduce<unknown>(
    (node, key) => (node && typeof node === 'object' ? (node as Record<string, unknown>)[key] : undefined),
    value,
  );
}

/**
 * Annotations that show a default the resolver does not fill, each for a
 * reason: tracing's protocol and service name come from the OTEL_*
 * environment first (observe/tracing.ts); an absent `upstreams` is no
 * upstream; Redis's TLS block and a caller have no defaults of their own
 * (the resolver reads an absent insecureSkipVerify as false, an absent
 * caller allowHosts as none).
 */
const SHOWN_ONLY = new Set([
  'tracing.protocol',
  'tracing.serviceName',
  'upstreams',
  'redis.tls.insecureSkipVerify',
  'forwardProxy.callers.[].allowHosts',
]);

describe('schema defaults', () => {
  const entries = annotated(configJsonSchema() as Node);

  it('annotates the defaults of every section', () => {
    expect(entries.length).toBeGreaterThan(60);
  });

  for (const [path, shown] of entries) {
    const name = path.join('.');
    if (SHOWN_ONLY.has(name)) continue;
    it(`${name} shows the default the resolver fills`, () => {
      const source = defaultsPath(path);
      expect(source, `${name}: no built-in default behind its annotation`).toBeDefined();
      expect(at(DEFAULTS, source!)).toEqual(shown);
    });
  }
});

describe('units by their defaults (config/convert.ts)', () => {
  /** What the `UnitText` template types accept, for the plain numbers defaults are written with. */
  const UNIT_TEXT = /^\d+(\.\d+)?(ms|s|m|h|B|KB|MB|GB|KiB|MiB|GiB|%)$|^\d+(\.\d+)?\/(s|min|h)$/;
  const leaves = (value: unknown, path: string[] = []): [string, string][] =>
    typeof value === 'string'
      ? [[path.join('.'), value]]
      : value && typeof value === 'object' && !Array.isArray(value)
        ? Object.entries(value).flatMap(([key, child]) => leaves(child, [...path, key]))
        : [];

  it.each(leaves(DEFAULTS))('%s (%j): converted at run time exactly when its type says a number', (_path, value) => {
    expect(unitOf(value) !== undefined).toBe(UNIT_TEXT.test(value));
  });

  it('converts every unit a resolved section holds', () => {
    const config = resolveConfig({ version: 1, routes: [{ name: 'r', fallback: { stale: {} } }] }, '.');
    expect(config.defaults.timeouts).toEqual({
      connect: 2000,
      perTry: 10_000,
      total: 30_000,
      firstByte: null,
      idle: null,
    });
    expect(config.defaults.retry.backoff).toEqual({ base: 500, max: 5000 });
    expect(config.defaults.retry.bufferLimit).toBe(1024 * 1024);
    expect(config.routes[0]!.fallback.stale).toEqual({
      maxStale: 600_000,
      maxEntries: 1000,
      maxEntryBytes: 262_144,
      maxBytes: 33_554_432,
    });
    expect(config.limits).toEqual({
      maxBodySize: 10 * 1024 * 1024,
      maxHeaderSize: 16 * 1024,
      clientBodyTimeout: 30_000,
    });
    expect(config.forwardProxy.circuitBreaker).toMatchObject({
      window: 10_000,
      openFor: 250,
      maxOpenFor: 1000,
      hold: 2000,
    });
  });
});
