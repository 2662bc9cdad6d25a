/**
 * A secret as the credentials read it (SPEC §18): a variable's value, read
 * at load, or a file's content, re-read when the file changes, without a
 * reload. Files are polled (stat, then read when size, inode or times
 * moved, and every few seconds anyway): a Kubernetes Secret volume swaps a
 * `..data` symlink and editors rename over the file, which an inotify
 * watch on the file itself misses, and a poll of a few small files costs
 * nothing. A file that vanishes, turns empty or unreadable keeps the last
 * good value until a good one appears: logged and counted once per
 * failure, shown in `/status`.
 */
import { constants } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import type { SecretRef } from '../config/credential-checks.js';
import { MAX_SECRET_FILE_BYTES, secretText } from '../config/credential-checks.js';
import type { Logger } from '../observe/logger.js';
import type { Metrics } from '../observe/metrics.js';

/** How often secret files are looked at: a change is in use within this (plus a read). */
export const SECRET_POLL_MS = 250;
/** A file whose stat did not move is still read this often (a same-size rewrite within a timestamp's tick). */
const FULL_READ_EVERY = 20;

export interface SecretDeps {
  readonly metrics: Metrics;
  readonly logger?: Logger;
  readonly wall: () => number;
}

type Read = 'unchanged' | { ok: true; value: string; signature: string } | { ok: false; message: string };

/**
 * The file's secret, unless its stat still matches `signature`. Opened without blocking and checked on the
 * descriptor (a FIFO or a device would hold a thread of the pool), read at most 64 KiB + 1.
 */
async function readChanged(file: string, signature: string): Promise<Read> {
  let handle: FileHandle | undefined;
  try {
    handle = await open(file, constants.O_RDONLY | constants.O_NONBLOCK);
    const info = await handle.stat();
    const now = `${info.ino}:${info.size}:${info.mtimeMs}:${info.ctimeMs}`;
    if (now === signature) return 'unchanged';
    if (!info.isFile()) return { ok: false, message: `${file} is not a regular file` };
    const buffer = Buffer.alloc(MAX_SECRET_FILE_BYTES + 1);
    const { bytesRead } = await handle.read(buffer, 0, buffer.length, 0);
    if (bytesRead > MAX_SECRET_FILE_BYTES) return { ok: false, message: `${file} is larger than 64 KiB` };
    const read = secretText(file, buffer.subarray(0, bytesRead).toString('utf8'));
    return read.ok ? { ok: true, value: read.value, signature: now } : read;
  } catch (error) {
    return { ok: false, message: `cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? 'unreadable'}` };
  } finally {
    await handle?.close();
  }
}

export class SecretSource {
  /** When the value in use was read (epoch ms). */
  since: number;
  /** The last failure to read the file (null while it reads well). */
  error: string | null = null;
  private signature = '';
  /** A changed value read once, taken when the next look reads it again. */
  private pending: string | undefined;
  private looking = false;
  private listeners: (() => void)[] = [];
  /** The poller that looks at it (a reload's runtime takes it over). */
  files: SecretFiles | undefined;

  constructor(
    readonly ref: SecretRef,
    private current: string,
    /** The target the secret belongs to: the metrics' and logs' `upstream`. */
    private readonly owner: string,
    private readonly deps: SecretDeps,
  ) {
    this.since = deps.wall();
  }

  get value(): string {
    return this.current;
  }

  get source(): 'file' | 'env' {
    return 'file' in this.ref ? 'file' : 'env';
  }

  /** Called after the value changed. */
  onChange(listener: () => void): void {
    this.listeners.push(listener);
  }

  /**
   * One look at the file: a changed good value is taken once two looks in a row read it (a file written in place
   * may be read half-written once); a failure keeps the last one.
   */
  async poll(full: boolean): Promise<void> {
    // One look at a time: two at once (a reload's poller and the old one) must not count as two agreeing looks.
    if (!('file' in this.ref) || this.looking) return;
    this.looking = true;
    try {
      await this.look(this.ref.file, full);
    } finally {
      this.looking = false;
    }
  }

  private async look(file: string, full: boolean): Promise<void> {
    const read = await readChanged(
      file,
      full || this.error !== null || this.pending !== undefined ? '' : this.signature,
    );
    if (read === 'unchanged') return;
    if (!read.ok) {
      this.pending = undefined;
      this.failed(file, read.message);
      return;
    }
    this.signature = read.signature;
    const recovered = this.error !== null;
    this.error = null;
    if (read.value === this.current) {
      this.pending = undefined;
      if (recovered) this.deps.logger?.info({ upstream: this.owner, path: file }, 'secret file readable again');
      return;
    }
    if (this.pending !== read.value) {
      this.pending = read.value;
      return;
    }
    this.pending = undefined;
    this.current = read.value;
    this.since = this.deps.wall();
    this.deps.metrics.credentialRotations.inc({ upstream: this.owner, result: 'success' });
    this.deps.logger?.info({ upstream: this.owner, path: file }, 'secret file changed: the new value is in use');
    for (const listener of this.listeners) listener();
  }

  private failed(file: string, reason: string): void {
    const error = `${reason}; the last good value stays in use`;
    if (error === this.error) return;
    this.error = error;
    this.signature = '';
    this.deps.metrics.credentialRotations.inc({ upstream: this.owner, result: 'failure' });
    this.deps.logger?.warn({ upstream: this.owner, path: file, reason }, 'secret file unreadable: last value kept');
  }
}

/** The file secrets of one runtime, polled on one timer until it closes. */
export class SecretFiles {
  private readonly sources: SecretSource[] = [];
  private timer: NodeJS.Timeout | undefined;
  private polling = false;
  private ticks = 0;

  /** Looks at `source` from now on; a source another runtime's poller looked at is taken over (a reload). */
  add(source: SecretSource): SecretSource {
    if (source.source !== 'file' || source.files === this) return source;
    source.files?.drop(source);
    source.files = this;
    this.sources.push(source);
    this.timer ??= setInterval(() => void this.pollAll(), SECRET_POLL_MS).unref();
    // The first look records the file's signature (its content was read at load).
    source.poll(true).catch(() => {});
    return source;
  }

  private drop(source: SecretSource): void {
    const at = this.sources.indexOf(source);
    if (at >= 0) this.sources.splice(at, 1);
  }

  private async pollAll(): Promise<void> {
    if (this.polling) return;
    this.polling = true;
    const full = ++this.ticks % FULL_READ_EVERY === 0;
    try {
      await Promise.all(this.sources.map((source) => source.poll(full)));
    } catch {
      // A listener's fault must not become an unhandled rejection of the timer; the next tick looks again.
    } finally {
      this.polling = false;
    }
  }

  close(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }
}
