/**
 * The batched log destination (observe/logger.ts) loses no line when the
 * reader is slow: lines gathered while a write waits on a full pipe go out
 * once the pipe drains, with no later line to push them.
 */
import { execFileSync } from 'node:child_process';
import { closeSync, constants, mkdtempSync, openSync, readSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { batchedDestination } from '../../src/observe/logger.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('batched log destination', () => {
  const cleanups: (() => void)[] = [];
  afterEach(() => cleanups.splice(0).forEach((cleanup) => cleanup()));

  it('writes lines gathered behind a write blocked on a full pipe', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'bw-log-'));
    const fifo = join(dir, 'pipe');
    execFileSync('mkfifo', [fifo]);
    // Read end first (non-blocking), then the write end: nobody reads yet, so the pipe fills.
    const reader = openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK);
    const writer = openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK);
    const destination = batchedDestination(writer);
    cleanups.push(() => {
      destination.destroy();
      closeSync(reader);
      rmSync(dir, { recursive: true, force: true });
    });

    // 25 lines of exactly 4096 bytes (100 KiB) overfill the 64 KiB pipe:
    // a write is left waiting on it, retried until the pipe drains.
    const big = (i: number) => `${String(i).padStart(4, '0')}${'x'.repeat(4091)}\n`;
    for (let i = 0; i < 25; i++) destination.write(big(i));
    await sleep(50);
    // Two short lines behind it, and nothing after them.
    destination.write('tail-1\n');
    destination.write('tail-2\n');
    await sleep(300); // past the 100 ms batch timer, with the write still blocked

    let received = '';
    const chunk = Buffer.alloc(65536);
    const deadline = Date.now() + 5_000;
    while (!received.includes('tail-2\n') && Date.now() < deadline) {
      try {
        const n = readSync(reader, chunk, 0, chunk.length, null);
        received += chunk.subarray(0, n).toString();
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EAGAIN') throw error;
        await sleep(20);
      }
    }
    const lines = received.split('\n').filter(Boolean);
    expect(lines).toHaveLength(27);
    expect(lines.slice(0, 25).map((line) => line.slice(0, 4))).toEqual(
      Array.from({ length: 25 }, (_, i) => String(i).padStart(4, '0')),
    );
    expect(lines.slice(25)).toEqual(['tail-1', 'tail-2']);
  });
});
