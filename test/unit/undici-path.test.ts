/**
 * Breakwater loads undici's Pool and header reader from their own files
 * (upstream/pools.ts, upstream/response.ts), not from the package's index,
 * to keep the process light. This test fails when an undici release moves
 * them, before anything else does.
 */
import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import { Pool, util } from 'undici';
import { parseRawHeaders } from '../../src/upstream/response.js';

const require = createRequire(import.meta.url);

describe("undici's files that Breakwater loads directly", () => {
  it('lib/dispatcher/pool.js is the Pool the package exports', () => {
    expect(require('undici/lib/dispatcher/pool.js')).toBe(Pool);
  });

  it("lib/core/util.js has the package's headerNameToString", () => {
    expect((require('undici/lib/core/util.js') as { headerNameToString: unknown }).headerNameToString).toBe(
      util.headerNameToString,
    );
  });

  it('reads raw headers as node:http does: lower-cased names, set-cookie a list, repeated single headers keep the first', () => {
    const raw = [
      'Content-Type',
      'text/plain',
      'X-A',
      '1',
      'x-a',
      '2',
      'Set-Cookie',
      'a=1',
      'Content-Length',
      '5',
      'content-length',
      '6',
      'Cookie',
      'a',
      'cookie',
      'b',
    ].map((text) => Buffer.from(text));
    expect({ ...parseRawHeaders(raw) }).toEqual({
      'content-type': 'text/plain',
      'x-a': '1, 2',
      'set-cookie': ['a=1'],
      'content-length': '5',
      cookie: 'a; b',
    });
  });
});
