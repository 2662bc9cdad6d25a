/**
 * What SPEC §16 reads of an event stream (upstream/event-stream.ts): the
 * first line that is neither blank nor a comment, across chunk boundaries;
 * what ends the line and event under way before an event of Breakwater's
 * own; which answers are event streams.
 */
import { describe, expect, it } from 'vitest';
import { FirstEventLine, isEventStream, StreamTail } from '../../src/upstream/event-stream.js';

/** Feeds `chunks` one by one; the index of the chunk in which the first event line began, or -1. */
function firstEventIn(chunks: readonly string[]): number {
  const finder = new FirstEventLine();
  return chunks.findIndex((chunk) => finder.feed(Buffer.from(chunk, 'latin1')));
}

function closing(chunks: readonly string[]): string {
  const tail = new StreamTail();
  for (const chunk of chunks) tail.see(Buffer.from(chunk, 'latin1'));
  return tail.closing();
}

const raw = (...pairs: string[]) => pairs.map((text) => Buffer.from(text, 'latin1'));
const lower = (name: Buffer) => name.toString('latin1').toLowerCase();

describe('the first event line', () => {
  it.each([
    [['data: 1\n\n'], 0],
    [[': keep-alive\n\n', ': ping\n\n', 'data: 1\n\n'], 2],
    [['\n\n\r\n', 'event: x\n'], 1],
    [[':a comment with data: inside\n', '\n'], -1],
    [[': split', ' comment\r', '\ndata: 1'], 2],
    // A CR then an LF in the next chunk is one line end: the LF starts no line.
    [[': c\r', '\n', 'id: 7\n'], 2],
    // A CR alone ends a line too.
    [[': c\rdata: x'], 0],
    [['\xef\xbb\xbf: bom, then a comment\n', 'retry: 10\n'], 1],
    [['\xef\xbb', '\xbf', 'data: after a split bom\n'], 2],
    [[''], -1],
  ])('%j begins in chunk %i', (chunks, index) => {
    expect(firstEventIn(chunks)).toBe(index);
  });
});

describe('ending a cut stream on an event boundary', () => {
  it.each([
    [[], ''],
    [['data: 1\n\n'], ''],
    [['data: 1\r\n\r\n'], ''],
    [['data: 1\r\r'], ''],
    [['data: 1\n\r'], ''],
    [['data: 1\n'], '\n'],
    [['data: 1\r\n'], '\n'],
    [['data: par'], '\n\n'],
    // An LF of ours after a trailing CR would only complete a CRLF: a second one makes the blank line.
    [['data: 1\r'], '\n\n'],
    [['data: 1', '\n', '\n'], ''],
    [['data: 1\r', '\n'], '\n'],
    [['\n'], ''],
    [['x'], '\n\n'],
  ])('%j needs %j', (chunks, expected) => {
    expect(closing(chunks)).toBe(expected);
  });
});

describe('which answers are event streams', () => {
  it.each([
    [raw('Content-Type', 'text/event-stream'), true],
    [raw('content-type', 'Text/Event-Stream; charset=utf-8'), true],
    [raw('Content-Type', 'text/event-stream', 'Content-Encoding', 'identity'), true],
    [raw('Content-Type', 'text/event-stream', 'Content-Encoding', 'gzip'), false],
    [raw('Content-Type', 'text/event-streamx'), false],
    [raw('Content-Type', 'application/json'), false],
    // The first Content-Type counts, as node and the client read it.
    [raw('Content-Type', 'text/plain', 'Content-Type', 'text/event-stream'), false],
    [raw(), false],
  ])('%#', (headers, expected) => {
    expect(isEventStream(headers, lower)).toBe(expected);
  });
});
