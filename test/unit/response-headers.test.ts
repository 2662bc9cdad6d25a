/**
 * The response headers sent to the client, built from the upstream's raw
 * lines (the path of every streamed answer): hop-by-hop lines and those the
 * Connection header names are dropped, edits applied, Breakwater's own
 * headers written by Breakwater only, repeated lines kept as lines.
 */
import { describe, expect, it } from 'vitest';
import { buildResponseHeaderList, buildResponseHeaders, compileHeaderEdits } from '../../src/upstream/headers.js';
import { headerName, parseRawHeaders } from '../../src/upstream/response.js';

const raw = (...lines: string[]) => lines.map((line) => Buffer.from(line));
const pairs = (list: readonly string[]) =>
  Array.from({ length: list.length / 2 }, (_, i) => [list[2 * i], list[2 * i + 1]]);

describe('buildResponseHeaderList', () => {
  const edits = compileHeaderEdits({ remove: ['Server'], set: { 'Cache-Control': 'no-store' } });
  const upstream = raw(
    'Content-Type',
    'application/json',
    'Connection',
    'keep-alive, X-Hop',
    'Keep-Alive',
    'timeout=5',
    'Transfer-Encoding',
    'chunked',
    'X-Hop',
    'dropped',
    'Server',
    'nginx',
    'Cache-Control',
    'max-age=60',
    'Set-Cookie',
    'a=1',
    'Set-Cookie',
    'b=2',
    'X-Request-Id',
    'the-upstream-s',
    'X-Breakwater-Attempts',
    '9',
    'X-Kept',
    'yes',
  );

  it('drops hop-by-hop and Connection-named lines, applies edits, writes its own headers', () => {
    const list = buildResponseHeaderList(upstream, headerName, {
      requestId: 'req-1',
      attempts: 2,
      edits,
      target: 'eu',
    });
    expect(pairs(list)).toEqual([
      ['content-type', 'application/json'],
      ['set-cookie', 'a=1'],
      ['set-cookie', 'b=2'],
      ['x-kept', 'yes'],
      ['cache-control', 'no-store'],
      ['x-request-id', 'req-1'],
      ['x-breakwater-attempts', '2'],
      ['x-breakwater-target', 'eu'],
    ]);
  });

  it('says what the object form says', () => {
    const list = buildResponseHeaderList(upstream, headerName, {
      requestId: 'req-1',
      attempts: 1,
      edits,
      target: null,
    });
    const fromList: Record<string, string | string[]> = {};
    for (const [name, value] of pairs(list)) {
      const existing = fromList[name!];
      fromList[name!] =
        existing === undefined
          ? name === 'set-cookie'
            ? [value!]
            : value!
          : ([] as string[]).concat(existing, value!);
    }
    expect(fromList).toEqual({
      ...buildResponseHeaders(parseRawHeaders(upstream), { requestId: 'req-1', attempts: 1, edits, target: null }),
    });
  });
});
