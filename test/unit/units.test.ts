import { describe, expect, it } from 'vitest';
import { formatDuration, parseDuration, parseRate, parseShare, parseSize } from '../../src/config/units.js';

function value<T>(parsed: { ok: true; value: T } | { ok: false; message: string }): T {
  if (!parsed.ok) throw new Error(`expected ok, got: ${parsed.message}`);
  return parsed.value;
}

function message(parsed: { ok: true; value: unknown } | { ok: false; message: string }): string {
  if (parsed.ok) throw new Error(`expected a failure, got ${String(parsed.value)}`);
  return parsed.message;
}

describe('parseDuration', () => {
  it.each([
    ['250ms', 250],
    ['2s', 2000],
    ['1m', 60_000],
    ['1h', 3_600_000],
    ['1m30s', 90_000],
    ['1.5s', 1500],
    ['0s', 0],
    ['0.5ms', 0.5],
    [' 3s ', 3000],
  ])('reads %j as %d ms', (text, ms) => {
    expect(value(parseDuration(text))).toBe(ms);
  });

  it.each(['10 seconds', '5', '', 's', '2x', '1.s', '.5s', '2S', '1d', 'ms', '1m 30s', '2s3', 'NaNs', '1e3ms'])(
    'refuses %j with the accepted forms',
    (text) => {
      expect(message(parseDuration(text))).toMatch(/not a duration|empty string/);
    },
  );

  it('refuses negative durations as negative', () => {
    expect(message(parseDuration('-1s'))).toMatch(/negative/);
  });
});

describe('parseSize', () => {
  it.each([
    ['512KiB', 512 * 1024],
    ['1MiB', 1024 * 1024],
    ['10MiB', 10 * 1024 * 1024],
    ['1GiB', 1024 ** 3],
    ['16KB', 16_000],
    ['1MB', 1_000_000],
    ['100B', 100],
    ['0B', 0],
    ['1.5KiB', 1536],
  ])('reads %j as %d bytes', (text, bytes) => {
    expect(value(parseSize(text))).toBe(bytes);
  });

  it.each(['10mb', '1 megabyte', '1024', '1Mi', 'MiB', '1.MiB', '1TiB'])('refuses %j', (text) => {
    expect(message(parseSize(text))).toMatch(/not a size/);
  });

  it('refuses negative sizes', () => {
    expect(message(parseSize('-1MiB'))).toMatch(/negative/);
  });
});

describe('parseRate', () => {
  it.each([
    ['25/s', 25],
    ['60/min', 1],
    ['3600/h', 1],
    ['0.2/s', 0.2],
    ['30/min', 0.5],
  ])('reads %j as %d per second', (text, rate) => {
    expect(value(parseRate(text))).toBeCloseTo(rate, 10);
  });

  it.each(['25/sec', '25', '25/m', '/s', '25 per second', '25/S', '25/day'])('refuses %j', (text) => {
    expect(message(parseRate(text))).toMatch(/not a rate/);
  });

  it('refuses negative rates', () => {
    expect(message(parseRate('-5/s'))).toMatch(/negative/);
  });
});

describe('parseShare', () => {
  it.each([
    ['50%', 0.5],
    ['5%', 0.05],
    ['0%', 0],
    ['100%', 1],
    ['12.5%', 0.125],
  ])('reads %j as %d', (text, share) => {
    expect(value(parseShare(text))).toBeCloseTo(share, 10);
  });

  it.each(['50', '0.5', 'half', '%'])('refuses %j', (text) => {
    expect(message(parseShare(text))).toMatch(/not a share/);
  });

  it('refuses shares above 100%', () => {
    expect(message(parseShare('150%'))).toMatch(/above 100%/);
  });
});

describe('formatDuration', () => {
  it.each([
    [250, '250ms'],
    [1500, '1.5s'],
    [30_000, '30s'],
    [60_000, '1m'],
    [7_200_000, '2h'],
  ])('writes %d ms as %j', (ms, text) => {
    expect(formatDuration(ms)).toBe(text);
    expect(value(parseDuration(text))).toBe(ms);
  });
});
