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
import { readFile, stat } from 'node:fs/promises';
import type { SecretRef } from '../config/credential-checks.js';
import { MAX_SECRET_FILE_BYTES } from '../config/credential-checks.js';
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

export class SecretSource {
  /** When the value in use was read (epoch ms). */
  since: number;
  /** The last failure to read the file (null while it reads well). */
  error: string | null = null;
  private signature = '';
  private listeners: (() => void)[] = [];

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

  /** One look at the file: a changed good value is taken; a failure keeps the last one. */
  async poll(full: boolean): Promise<void> {
    if (!('file' in this.ref)) return;
    const file = this.ref.file;
    let text: string;
    try {
      const info = await stat(file);
      const signature = `${info.ino}:${info.size}:${info.mtimeMs}:${info.ctimeMs}`;
      if (!full && signature === this.signature && this.error === null) return;
      // A FIFO or a device would hold a thread of the pool on the read.
      if (!info.isFile()) throw Object.assign(new Error(), { code: 'not a regular file' });
      if (info.size > MAX_SECRET_FILE_BYTES) throw Object.assign(new Error(), { code: 'larger than 64 KiB' });
      text = (await readFile(file, 'utf8')).trimEnd();
      this.signature = signature;
      if (text === '') throw Object.assign(new Error(), { code: 'empty' });
    } catch (error) {
      this.failed(file, (error as NodeJS.ErrnoException).code ?? 'unreadable');
      return;
    }
    const recovered = this.error !== null;
    this.error = null;
    if (text === this.current) {
      if (recovered) this.deps.logger?.info({ upstream: this.owner, path: file }, 'secret file readable again');
      return;
    }
    this.current = text;
    this.since = this.deps.wall();
    this.deps.metrics.credentialRotations.inc({ upstream: this.owner, result: 'success' });
    this.deps.logger?.info({ upstream: this.owner, path: file }, 'secret file changed: the new value is in use');
    for (const listener of this.listeners) listener();
  }

  private failed(file: string, reason: string): void {
    const error = `cannot read ${file}: ${reason}; the last good value stays in use`;
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

  add(source: SecretSource): SecretSource {
    if (source.source !== 'file') return source;
    this.sources.push(source);
    this.timer ??= setInterval(() => void this.pollAll(), SECRET_POLL_MS).unref();
    // The first look records the file's signature (its content was read at load).
    void source.poll(true);
    return source;
  }

  private async pollAll(): Promise<void> {
    if (this.polling) return;
    this.polling = true;
    const full = ++this.ticks % FULL_READ_EVERY === 0;
    try {
      await Promise.all(this.sources.map((source) => source.poll(full)));
    } finally {
      this.polling = false;
    }
  }

  close(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }
}
