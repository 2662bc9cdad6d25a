/**
 * Issue 32 (SPEC §20.7, §20.5): what the error journal keeps of a provider's
 * answer is bounded whatever the provider sent (message 1,024 characters
 * ending in `…`, code 128, each header value 256, body 4 KiB of text), and
 * reading it is linear in its size (256 KiB of undecodable bytes: the
 * pattern `\uFFFD+$` took seconds on it).
 */
import type { IncomingHttpHeaders } from 'node:http';
import { describe, expect, it } from 'vitest';
import { cutString, journalHeaders, providerOf, type AnswerNote } from '../../src/server/journal-entry.js';

const answer = (status: number, headers: IncomingHttpHeaders, body: Buffer | string): AnswerNote => ({
  status,
  headers,
  start: { raw: Buffer.from(body), complete: true },
  decision: undefined,
});

describe('providerOf', () => {
  it('cuts a 250,000-character message at 1,024 characters ending in …, a 10,000-character code at 128, the body at 4 KiB', () => {
    const message = 'Quota exceeded for this project. '.padEnd(250_000, 'Details follow. ');
    const body = JSON.stringify({ error: { message, code: 'E'.repeat(10_000) } });
    const provider = providerOf(answer(400, { 'content-type': 'application/json' }, body));
    expect(provider.message).toBe(`${message.slice(0, 1023)}…`);
    expect(provider.code).toBe('E'.repeat(128));
    expect(provider.body).toBe(body.slice(0, 4096));
    expect(Buffer.byteLength(JSON.stringify(provider))).toBeLessThan(6 * 1024);
  });

  it('keeps a short message, code and JSON body whole', () => {
    const body = { error: { message: 'database unavailable', code: 'db_down' } };
    expect(providerOf(answer(503, { 'content-type': 'application/json' }, JSON.stringify(body)))).toEqual({
      status: 503,
      code: 'db_down',
      message: 'database unavailable',
      body,
    });
  });

  it('gives a JSON body that is longer written again (1e20 is 21 digits) as its text', () => {
    const body = `[${Array.from({ length: 800 }, () => '1e20').join(',')}]`;
    expect(Buffer.byteLength(body)).toBeLessThan(4096);
    expect(providerOf(answer(400, { 'content-type': 'application/json' }, body)).body).toBe(body);
  });

  it('keeps control characters from making an entry large: their escapes count', () => {
    const provider = providerOf(answer(400, { 'content-type': 'text/plain' }, '\u0001'.repeat(200_000)));
    expect(Buffer.byteLength(JSON.stringify(provider.message))).toBeLessThanOrEqual(3 * 1024 + 2);
    expect(Buffer.byteLength(JSON.stringify(provider.body))).toBeLessThanOrEqual(8 * 1024 + 2);
  });

  it('reads 256 KiB of undecodable bytes in linear time', () => {
    const raw = Buffer.concat([Buffer.alloc(256 * 1024 - 1, 0xff), Buffer.from('a')]);
    const start = performance.now();
    const provider = providerOf(answer(400, { 'content-type': 'text/plain' }, raw));
    expect(performance.now() - start).toBeLessThan(500);
    expect(provider.message).toBe('\uFFFD'.repeat(500));
    expect(Buffer.byteLength(provider.body as string)).toBeLessThanOrEqual(4096);
  });
});

describe('journalHeaders', () => {
  it('cuts each value at 256 characters', () => {
    const headers = journalHeaders({
      'x-request-id': 'r'.repeat(10_000),
      ratelimit: 'limit=1'.padEnd(10_000, '0'),
      'retry-after': '30',
      'set-cookie': ['a=b'],
    });
    expect(headers).toEqual({
      'x-request-id': 'r'.repeat(256),
      ratelimit: 'limit=1'.padEnd(256, '0'),
      'retry-after': '30',
    });
  });

  it('keeps a provider’s usual dozen rate-limit headers, not a flood of them', () => {
    const usual = Object.fromEntries(
      Array.from({ length: 12 }, (_, i) => [`anthropic-ratelimit-${i}`, '2024-06-01T12:00:00Z']),
    );
    const openai = Object.fromEntries(
      Array.from({ length: 12 }, (_, i) => [`x-ratelimit-remaining-${i}`, String(1000 - i)]),
    );
    expect(
      Object.keys(journalHeaders({ ...usual, ...openai, 'x-request-id': 'req_1', 'retry-after-ms': '1500' })),
    ).toHaveLength(26);
    const flood = Object.fromEntries(Array.from({ length: 60 }, (_, i) => [`x-ratelimit-${i}`, 'v'.repeat(256)]));
    expect(JSON.stringify(journalHeaders(flood)).length).toBeLessThanOrEqual(2048 + 60 * 6);
  });
});

describe('cutString', () => {
  it('counts the mark in the bound and never cuts a surrogate pair in two', () => {
    expect(cutString('abcdef', 4, '…')).toBe('abc…');
    expect(cutString('abcd', 4, '…')).toBe('abcd');
    expect(cutString('ab😀cd', 3)).toBe('ab');
    expect(cutString('ab😀cd', 4)).toBe('ab😀');
  });

  it('bounds the JSON size: a control character is six bytes there', () => {
    expect(cutString('\u0001'.repeat(100), 100, '', 60)).toHaveLength(10);
    expect(cutString('é'.repeat(100), 100)).toHaveLength(100);
  });
});
