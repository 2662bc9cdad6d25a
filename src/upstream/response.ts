/**
 * An upstream's answer as the rest of Breakwater reads it: status, headers
 * (lower-cased names, combined as node:http combines them) and the body as
 * a Readable with backpressure. It is fed by the attempt's undici handler
 * (forward.ts): a full buffer pauses the connection's parser, reading
 * resumes it, and destroying the response before its end aborts the
 * upstream request (its socket is closed, never reused).
 */
import type { IncomingHttpHeaders } from 'node:http';
import { Readable, type Writable } from 'node:stream';
import { createRequire } from 'node:module';
import { FirstEventLine, isEventStream, StreamTail } from './event-stream.js';

/** undici's header-name reader (lower-cased, interned for known names), from its own file: see pools.ts. */
const { headerNameToString } = createRequire(import.meta.url)('undici/lib/core/util.js') as {
  headerNameToString: (name: Buffer) => string;
};

/** A raw header name, lower-cased (undici's reader: interned strings for known names). */
export function headerName(raw: Buffer): string {
  return headerNameToString(raw);
}

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
    const name = headerName(raw[i]!);
    const value = raw[i + 1]!.toString('latin1');
    const existing = headers[name];
    if (existing === undefined) headers[name] = name === 'set-cookie' ? [value] : value;
    else if (Array.isArray(existing)) existing.push(value);
    else if (!SINGLE.has(name)) headers[name] = `${existing}${name === 'cookie' ? '; ' : ', '}${value}`;
  }
  return headers as IncomingHttpHeaders;
}

/**
 * How a body began (SPEC §16): its first byte arrived (an event stream: its first event line), or
 * it ended, or broke off or was dropped, before one.
 */
export type BodyBegin = 'started' | 'ended' | 'failed';

/** The first bytes of a body, as received (still encoded). */
export interface BodyStart {
  readonly chunks: Buffer[];
  size: number;
  readonly cap: number;
}

function takeStart(capture: BodyStart, chunk: Buffer): void {
  if (capture.size >= capture.cap) return;
  // A copy: the error path only, and never a view of a buffer that may be reused.
  const part = Buffer.from(chunk.subarray(0, capture.cap - capture.size));
  capture.chunks.push(part);
  capture.size += part.length;
}

/** Bytes held before anyone reads the body; past this, undici's parser pauses. */
const HOLD_BYTES = 64 * 1024;

/**
 * The body is held (not yet in the Readable's buffer) until someone reads
 * it: the Readable way (`pipe`, 'data', `resume`: its `_read`), or
 * {@link UpstreamResponse.sendTo}, which writes it straight into the
 * client's response as undici delivers it, without the stream machinery
 * (the path of most answers).
 */
export class UpstreamResponse extends Readable {
  /** The whole body arrived (as IncomingMessage.complete). */
  complete = false;
  /** Chunks that arrived before a reader. */
  private held: Buffer[] = [];
  private heldBytes = 0;
  /** A Readable reader asked for data: chunks go through push(). */
  private engaged = false;
  /** sendTo's client response, and what to do if the upstream breaks off. */
  private sink: Writable | undefined;
  private onBroken: (() => void) | undefined;

  private parsed: IncomingHttpHeaders | undefined;
  /** The start of the body, kept as it passes for the error journal (see {@link captureStart}). */
  private capture: BodyStart | undefined;
  /** Sees every body chunk as it passes (see {@link watch}). */
  private watcher: ((chunk: Buffer) => void) | undefined;
  /** Body bytes received from upstream so far. */
  received = 0;
  /** How the body began, once it did (see {@link whenBegun}). */
  private begun: BodyBegin | undefined;
  private onBegin: ((how: BodyBegin) => void) | undefined;
  /** An event stream's first-event finder; null when the body is not an event stream; undefined: not asked yet. */
  private firstLine: FirstEventLine | null | undefined;
  /** The last bytes, kept once asked for (see {@link keepTail}). */
  private tail: StreamTail | undefined;

  constructor(
    readonly statusCode: number,
    readonly statusMessage: string,
    /** The header lines as received (name, value, name, value...). */
    readonly rawHeaders: readonly Buffer[],
    private readonly resumeUpstream: () => void,
    private readonly abortUpstream: (reason?: Error) => void,
  ) {
    super();
  }

  /** The headers as node:http gives them, read from the raw lines on first use (most answers only pass them on). */
  get headers(): IncomingHttpHeaders {
    return (this.parsed ??= parseRawHeaders(this.rawHeaders));
  }

  override _read(): void {
    if (!this.engaged) {
      this.engaged = true;
      const held = this.held;
      this.held = [];
      this.heldBytes = 0;
      for (const chunk of held) this.push(chunk);
      if (this.complete) {
        this.push(null);
        return;
      }
    }
    this.resumeUpstream();
  }

  /**
   * Writes the body into `sink` (the client's response) and ends it,
   * with backpressure; `onBroken` when the upstream breaks off mid-body
   * (the sink is then destroyed: never a truncated body that looks
   * complete). Only before any other reader: false (nothing done) if the
   * body was already read as a stream.
   */
  sendTo(sink: Writable, onBroken: () => void): boolean {
    if (this.engaged) return false;
    this.sink = sink;
    this.onBroken = onBroken;
    const held = this.held;
    this.held = [];
    this.heldBytes = 0;
    if (this.complete && held.length <= 1) {
      sink.end(held[0]);
      return true;
    }
    for (const chunk of held) sink.write(chunk);
    if (this.complete) sink.end();
    else if (sink.writableNeedDrain) sink.once('drain', this.resumeUpstream);
    else this.resumeUpstream();
    return true;
  }

  /**
   * Keeps (references to) the first `cap` bytes of the body as received,
   * whichever way it is sent on: the error journal's view of an error
   * answer passed through (SPEC §12). Asked for only on an error status.
   */
  captureStart(cap: number): BodyStart {
    const capture: BodyStart = { chunks: [], size: 0, cap };
    this.capture = capture;
    for (const chunk of this.held) takeStart(capture, chunk);
    return capture;
  }

  /**
   * `watcher` sees every chunk of the body as received, whichever way it is sent on, from those already held on
   * (a usage reader, SPEC §15). One watcher per response.
   */
  watch(watcher: (chunk: Buffer) => void): void {
    this.watcher = watcher;
    for (const chunk of this.held) watcher(chunk);
  }

  /** `text/event-stream` without a Content-Encoding: its first event and its end are read per SSE (SPEC §16). */
  get eventStream(): boolean {
    if (this.firstLine === undefined)
      this.firstLine = isEventStream(this.rawHeaders, headerName) ? new FirstEventLine() : null;
    return this.firstLine !== null;
  }

  /**
   * `listener` learns, once, how the body began: at its first byte (an event stream: its first event
   * line), or when it ends or breaks before one; at once if that is known. One listener per response.
   */
  whenBegun(listener: (how: BodyBegin) => void): void {
    if (this.begun !== undefined) listener(this.begun);
    else this.onBegin = listener;
  }

  private began(how: BodyBegin): void {
    if (this.begun !== undefined) return;
    this.begun = how;
    const listener = this.onBegin;
    this.onBegin = undefined;
    listener?.(how);
  }

  /**
   * From now on the last bytes are kept (`read`: those already read from the body, then those held for a
   * reader): {@link closing} says how to end the stream on an event boundary. Asked before any byte went on.
   */
  keepTail(read?: Buffer): void {
    if (this.tail !== undefined) return;
    this.tail = new StreamTail();
    if (read !== undefined) this.tail.see(read);
    for (const chunk of this.held) this.tail.see(chunk);
  }

  /** What ends the line and event under way (an event stream cut by Breakwater, SPEC §16); '' on a boundary. */
  closing(): string {
    return this.tail?.closing() ?? '';
  }

  /**
   * Sends no more of the body anywhere and aborts the upstream request, its connection closed: a
   * stream Breakwater cut (SPEC §16). Neither the sink's end nor `onBroken` follows.
   */
  cut(): void {
    this.sink = undefined;
    this.onBroken = undefined;
    this.destroy();
  }

  /** A body chunk from upstream; false asks undici to pause the connection. */
  deliver(chunk: Buffer): boolean {
    this.received += chunk.length;
    if (this.begun === undefined && (this.eventStream ? this.firstLine!.feed(chunk) : chunk.length > 0))
      this.began('started');
    if (this.tail !== undefined) this.tail.see(chunk);
    if (this.capture !== undefined) takeStart(this.capture, chunk);
    if (this.watcher !== undefined) this.watcher(chunk);
    const sink = this.sink;
    if (sink) {
      if (sink.write(chunk)) return true;
      sink.once('drain', this.resumeUpstream);
      return false;
    }
    if (this.engaged) return this.push(chunk);
    this.held.push(chunk);
    this.heldBytes += chunk.length;
    if (this.heldBytes < HOLD_BYTES) return true;
    // An event stream that sent this much before its first event (padding comments) is flowing: it counts as
    // begun rather than be paused, unread, until a first-byte timer gives up on it.
    this.began('started');
    return false;
  }

  finish(): void {
    this.complete = true;
    this.began('ended');
    if (this.sink) this.sink.end();
    else if (this.engaged) this.push(null);
  }

  /** The upstream failed mid-body: an 'error' only for a reader that listens for one (as node:http does). */
  fail(error: Error): void {
    this.began('failed');
    if (this.sink) {
      const sink = this.sink;
      this.sink = undefined;
      if (!sink.destroyed) this.onBroken?.();
      sink.destroy();
    }
    if (this.destroyed) return;
    this.destroy(this.listenerCount('error') > 0 ? error : undefined);
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.began('failed');
    if (!this.complete) this.abortUpstream(error ?? undefined);
    this.held = [];
    callback(error);
  }
}
