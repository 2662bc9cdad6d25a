/**
 * Issue 32 (SPEC §20.5): the dialects read a hostile error body of 256 KiB
 * (the read cap) in time linear in its size, and still find what a
 * well-formed one says. The bodies are the worst cases of the patterns the
 * dialects used: a lazy `<title[^>]*>([\s\S]*?)<\/title>` or
 * `<Message>([\s\S]*?)</Message>` restarted at every opening tag, `<[^>]+>`
 * at every `<` (0.2 s to 97 s each before, one core); the JSON ones were
 * linear already and are kept as guards. 500 ms is some 50 times what each
 * takes now.
 */
import { describe, expect, it } from 'vitest';
import { readErrorText } from '../../src/errors/dialects/index.js';

const CAP = 256 * 1024;
/** `unit` repeated to fill 256 KiB, between `before` and `after`. */
const fill = (unit: string, before = '', after = '') =>
  before + unit.repeat(Math.floor((CAP - before.length - after.length) / unit.length)) + after;

function timed<T>(read: () => T): { result: T; ms: number } {
  const start = performance.now();
  const result = read();
  return { result, ms: performance.now() - start };
}

describe('a hostile body of 256 KiB is read in linear time', () => {
  const cases: {
    name: string;
    contentType: string;
    body: string;
    dialect: string;
    message: (body: string) => string | undefined;
  }[] = [
    {
      name: '<title> without a closing tag',
      contentType: 'text/html',
      body: fill('<title>'),
      dialect: 'text',
      message: (body) => body.slice(0, 500),
    },
    {
      name: '<TITLE x=1> in any case',
      contentType: 'text/html',
      body: fill('<TITLE x=1>'),
      dialect: 'text',
      message: (body) => body.slice(0, 500),
    },
    {
      name: '<h1> without a closing tag',
      contentType: 'text/html',
      body: fill('<h1>', '<!doctype html>'),
      dialect: 'text',
      message: (body) => body.slice(0, 500),
    },
    {
      name: 'a title of `<` without `>`',
      contentType: 'text/html',
      body: fill('<', '<title>', '</title>'),
      dialect: 'html',
      message: (body) => body.slice(7, -8),
    },
    {
      name: 'a title of `<a` without `>`',
      contentType: 'text/html',
      body: fill('<a', '<title>', '</title>'),
      dialect: 'html',
      message: (body) => body.slice(7, -8),
    },
    {
      name: 'a title of whitespace runs',
      contentType: 'text/html',
      body: fill(' \t\n', '<title>', 'x</title>'),
      dialect: 'html',
      message: () => 'x',
    },
    {
      name: 'AWS XML <Message> without its end',
      contentType: 'application/xml',
      body: fill('<Message>', '<Error>'),
      dialect: 'text',
      message: (body) => body.slice(0, 500),
    },
    {
      name: 'AWS XML <Code> without its end',
      contentType: 'application/xml',
      body: fill('<Code>', '<Error>'),
      dialect: 'text',
      message: (body) => body.slice(0, 500),
    },
    {
      name: 'a run of `"`',
      contentType: 'application/json',
      body: fill('"'),
      dialect: 'text',
      message: (body) => body.slice(0, 500),
    },
    {
      name: 'a run of `{`',
      contentType: 'application/json',
      body: fill('{'),
      dialect: 'text',
      message: (body) => body.slice(0, 500),
    },
    {
      name: 'repeated `"message":`',
      contentType: 'application/json',
      body: fill('"message":', '{'),
      dialect: 'text',
      message: (body) => body.slice(0, 500),
    },
    {
      name: 'nested arrays, valid',
      contentType: 'application/json',
      body: '['.repeat(CAP / 2 - 1) + ']'.repeat(CAP / 2 - 1),
      dialect: 'text',
      message: (body) => body.slice(0, 500),
    },
    {
      name: 'a message of 256 KiB',
      contentType: 'application/json',
      body: JSON.stringify({ message: 'x'.repeat(CAP - 20) }),
      dialect: 'json',
      message: () => 'x'.repeat(CAP - 20),
    },
    {
      name: 'spaces, then a word',
      contentType: 'text/plain',
      body: fill(' ', '', 'x'),
      dialect: 'text',
      message: () => 'x',
    },
    {
      name: 'blank lines, then a word',
      contentType: 'text/plain',
      body: fill('\r\n', '', 'x'),
      dialect: 'text',
      message: () => 'x',
    },
  ];

  for (const { name, contentType, body, dialect, message } of cases) {
    it(`${name}: ${dialect}, under 500 ms`, () => {
      const { result, ms } = timed(() => readErrorText(body, contentType));
      expect(result.said.dialect).toBe(dialect);
      expect(result.said.message).toBe(message(body));
      expect(ms).toBeLessThan(500);
    });
  }
});

describe('what a well-formed body says is found as before', () => {
  it('an HTML title: its tags removed, whitespace made one space; the first <h1> when there is no title', () => {
    expect(
      readErrorText('<html><head><TITLE lang="en">\n  502 <b>Bad</b>\tGateway </title></head></html>', 'text/html')
        .said,
    ).toEqual({ dialect: 'html', message: '502 Bad Gateway' });
    expect(
      readErrorText(
        '<!DOCTYPE html><body><h1 class="x">Service <em>Unavailable</em></h1></body>',
        'text/html; charset=utf-8',
      ).said,
    ).toEqual({ dialect: 'html', message: 'Service Unavailable' });
    expect(readErrorText('<html><title>a <> b <c</title>', 'text/html').said.message).toBe('a <> b <c');
    expect(readErrorText('<html><title></title><p>Oops</p>', 'text/html').said).toEqual({
      dialect: 'text',
      message: '<html><title></title><p>Oops</p>',
    });
  });

  it('AWS XML: the first <Code> and <Message>, entities decoded', () => {
    const xml =
      '<?xml version="1.0"?><Error><Code>SlowDown</Code><Message>Reduce your &lt;request&gt; rate &amp; retry</Message><Message>second</Message></Error>';
    expect(readErrorText(xml, 'application/xml').said).toEqual({
      dialect: 'aws-xml',
      code: 'SlowDown',
      message: 'Reduce your <request> rate & retry',
    });
  });

  it('Stripe by its `_error` type; plain text by its first non-blank line', () => {
    const stripe = {
      error: {
        type: 'card_error',
        code: 'card_declined',
        message: 'Your card was declined.',
        doc_url: 'https://stripe.com',
      },
    };
    expect(readErrorText(JSON.stringify(stripe), 'application/json').said).toEqual({
      dialect: 'stripe',
      code: 'card_declined',
      message: 'Your card was declined.',
    });
    expect(readErrorText('\r\n  \n  upstream connect error  \r\nsecond', 'text/plain').said).toEqual({
      dialect: 'text',
      message: 'upstream connect error',
    });
  });
});
