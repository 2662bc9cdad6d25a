/**
 * The last net (SPEC §9): an unhandled rejection is logged with its stack,
 * counted, and nothing else happens. An EventEmitter stands in for
 * `process` (vitest fails a run on a real unhandled rejection); the CLI
 * installs the same function on `process` (src/cli.ts).
 */
import { EventEmitter } from 'node:events';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { installRejectionNet } from '../../src/observe/last-net.js';
import { createMetrics } from '../../src/observe/metrics.js';

describe('rejection net', () => {
  it('logs an unhandled rejection with its stack at error level and counts it', async () => {
    const lines: Record<string, unknown>[] = [];
    const logger = pino(
      { level: 'info' },
      new Writable({ write: (chunk, _encoding, done) => (lines.push(JSON.parse(String(chunk))), done()) }),
    );
    const metrics = createMetrics({ defaultMetrics: false });
    const source = new EventEmitter();
    const remove = installRejectionNet(source, logger, metrics);
    source.emit('unhandledRejection', new Error('redis said no'));
    source.emit('unhandledRejection', 'a string');
    const count = (await metrics.registry.getSingleMetric('breakwater_internal_errors_total')!.get()).values[0]!.value;
    expect(count).toBe(2);
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatchObject({
      level: 50,
      msg: expect.stringMatching(/^internal error: an unhandled promise rejection/),
    });
    expect((lines[0]!.err as { stack: string }).stack).toMatch(/redis said no\n\s+at /);
    expect((lines[1]!.err as { message: string }).message).toBe('non-Error rejection: a string');
    remove();
    expect(source.listenerCount('unhandledRejection')).toBe(0);
  });
});
