/**
 * The leak guard's reading of a request (credentials/leak-guard.ts): each
 * text built once per request, and still exact: the header that holds a
 * secret is named (a value as sent or percent-decoded), a header name is
 * never named, no match spans two headers, and the secret's own upstream
 * is let through.
 */
import { describe, expect, it } from 'vitest';
import { LeakGuard } from '../../src/credentials/leak-guard.js';
import type { Credential } from '../../src/credentials/credential.js';

const SECRET = 'Sk-Guard-0123456789';
const guard = new LeakGuard([{ owner: 'openai', credential: { secrets: () => [SECRET] } as unknown as Credential }]);
const encoded = [...SECRET].map((c) => `%${c.charCodeAt(0).toString(16)}`).join('');

describe('LeakGuard.find', () => {
  it('names the header whose value holds it, as sent or percent-decoded', () => {
    expect(guard.find({ a: '1', 'x-key': `k=${SECRET}` }, '/', null)?.where).toBe('x-key');
    expect(guard.find({ a: '1', referer: `?k=${encoded}` }, '/', null)?.where).toBe('referer');
    expect(guard.find({ a: ['1', SECRET] }, '/', null)?.where).toBe('a');
  });

  it('never names a header name that holds it (names arrive lower-cased)', () => {
    expect(guard.find({ [`x-${SECRET.toLowerCase()}`]: '1' }, '/', null)?.where).toBe("a header's name");
  });

  it('finds it in the URL, raw or decoded; not across two headers; not to its own upstream', () => {
    expect(guard.find({}, `/v1?k=${encoded.toUpperCase()}`, null)?.where).toBe('url');
    const half = SECRET.length / 2;
    expect(guard.find({ a: SECRET.slice(0, half), b: SECRET.slice(half) }, '/', null)).toBeUndefined();
    expect(guard.find({ authorization: `Bearer ${SECRET}` }, `/${SECRET}`, 'openai')).toBeUndefined();
  });

  it('masks a path and a lower-cased host', () => {
    expect(guard.mask(`/bot${encoded}/send`)).toBe('/bot<redacted>/send');
    expect(guard.mask(`${SECRET.toLowerCase()}.example`)).toBe('<redacted>.example');
    expect(guard.mask('/plain')).toBe('/plain');
  });
});
