/**
 * An upstream's answer as the rest of Breakwater reads it: status, headers
 * (lower-cased names, combined as node:http combines them) and the body as
 * a Readable with backpressure. It is fed by the attempt's undici handler
 * (forward.ts): a full buffer pauses the connection's parser, reading
 * resumes it, and destroying the response before its end aborts the
 * upstream request (its socket is closed, never reused).
 */
import type { IncomingHttpHeaders } from 'node:http';
import { Readable } from 'node:stream';
import { util as undiciUtil } from 'undici';

/** Headers node:http keeps once (the first wins), as IncomingMessage does. */
const SINGLE = new Set([
  'age',
  'authorization',
  'content-length',
  'content-type',
  'etag',
  'expires',
  'from',
  'host',
  'if-modified-since',
  'if-unmodified-since',
  'last-modified',
  'location',
  'max-forwards',
  'proxy-authorization',
  'referer',
  'retry-after',
  'server',
  'user-agent',
]);

/** Raw header pairs as undici hands them over, as node:http would give them in `headers`. */
export function parseRawHeaders(raw: readonly Buffer[]): IncomingHttpHeaders {
  const headers: Record<string, string | string[]> = Object.create(null) as Record<string, string | string[]>;
  for (let i = 0; i < raw.length; i += 2) {
    const name = undiciUtil.headerNameToString(raw[i]!);
    const value = raw[i + 1]!.toString('latin1');
    const existing = headers[name];
    if (existing === undefined) headers[name] = name === 'set-cookie' ? [value] : value;
    else if (Array.isArray(existing)) existing.push(value);
    else if (!SINGLE.has(name)) headers[name] = `${existing}${name === 'cookie' ? '; ' : ', '}${value}`;
  }
  return headers as IncomingHttpHeaders;
}

export class UpstreamResponse extends Readable {
  /** The whole body arrived (as IncomingMessage.complete). */
  complete = false;

  constructor(
    readonly statusCode: number,
    readonly statusMessage: string,
    readonly headers: IncomingHttpHeaders,
    private readonly resumeUpstream: () => void,
    private readonly abortUpstream: (reason?: Error) => void,
  ) {
    super();
  }

  override _read(): void {
    this.resumeUpstream();
  }

  /** A body chunk from upstream; false asks undici to pause the connection. */
  deliver(chunk: Buffer): boolean {
    return this.push(chunk);
  }

  finish(): void {
    this.complete = true;
    this.push(null);
  }

  /** The upstream failed mid-body: an 'error' only for a reader that listens for one (as node:http does). */
  fail(error: Error): void {
    if (this.destroyed) return;
    this.destroy(this.listenerCount('error') > 0 ? error : undefined);
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    if (!this.complete) this.abortUpstream(error ?? undefined);
    callback(error);
  }
}
