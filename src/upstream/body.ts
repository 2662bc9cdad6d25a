/**
 * The request body as the attempts see it (SPEC §3 `retry.bufferLimit`).
 * A body whose Content-Length is within `bufferLimit` is read into memory
 * before the first attempt and replayed byte for byte on every attempt.
 * Larger bodies, and bodies of unknown length (chunked), stream through the
 * first attempt only (with `limits.maxBodySize` enforced while streaming
 * when no Content-Length announced the size) and are never retried. On a
 * route that reads a cost from the body (SPEC §15) a chunked body is read
 * too, within `bufferLimit`, so that no client can send one uncounted.
 */
import type { IncomingMessage } from 'node:http';
import { PassThrough, Readable, Transform, type TransformCallback } from 'node:stream';
import { BreakwaterError } from '../errors/breakwater-error.js';
import { ClientClosedError } from '../errors/client-closed.js';

export interface RequestBody {
  /** True when open() may be called again for another attempt. */
  readonly replayable: boolean;
  /**
   * The body for the next attempt: undefined when there is none; bytes held
   * for replay, or a stream of the attempt's own (its first and only one).
   */
  open(): Readable | Buffer | undefined;
}

/** Counts bytes on their way upstream and fails with PAYLOAD_TOO_LARGE past the limit. */
class SizeLimit extends Transform {
  private seen = 0;
  constructor(private readonly limit: number) {
    super();
  }
  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.seen += chunk.length;
    if (this.seen > this.limit) {
      callback(
        new BreakwaterError(
          'PAYLOAD_TOO_LARGE',
          `The request body is larger than limits.maxBodySize (${this.limit} bytes).`,
        ),
      );
      return;
    }
    callback(null, chunk);
  }
}

/** A request without a body: every attempt sends none. */
const NO_BODY: RequestBody = { replayable: true, open: () => undefined };

export function hasBody(req: IncomingMessage): boolean {
  const length = req.headers['content-length'];
  if (length !== undefined) return length !== '0';
  return req.headers['transfer-encoding'] !== undefined;
}

export function requestBody(req: IncomingMessage, maxBodySize: number): RequestBody {
  if (!hasBody(req)) return NO_BODY;
  let opened = false;
  const announced = req.headers['content-length'] !== undefined;
  return {
    replayable: false,
    open() {
      if (opened) throw new Error('the request body was already sent and is not replayable');
      opened = true;
      // undici destroys a body it gives up on: a stream between it and the
      // client's request keeps the client's connection alive for the answer.
      // The parser holds an announced body to its Content-Length, checked before forwarding.
      if (announced) return req.pipe(new PassThrough());
      const limit = new SizeLimit(maxBodySize);
      // An error listener for the whole life of the stream: a limit hit after
      // the attempt settled must not become an unhandled 'error' event.
      limit.on('error', () => req.unpipe(limit));
      return req.pipe(limit);
    },
  };
}

export interface BodyOptions {
  readonly maxBodySize: number;
  /** Bodies up to this many bytes (by Content-Length) are buffered for replay. */
  readonly bufferLimit: number;
  /** False when the route never retries: then nothing is buffered. */
  readonly replay: boolean;
  /**
   * The route reads a cost from the body (SPEC §15): a body of unknown length (chunked) is read too, up to
   * `bufferLimit` (beyond: PAYLOAD_TOO_LARGE), so that it cannot go uncounted.
   */
  readonly costed?: boolean;
  /** The body is signed (SigV4, SPEC §18): read whole, up to maxBodySize, whatever its length. */
  readonly whole?: boolean;
}

/** A body held in memory, replayed on every attempt. */
function bufferedBody(buffer: Buffer): RequestBody {
  return { replayable: true, open: () => buffer };
}

/**
 * The body of `req` for its attempts: buffered when it may be replayed and
 * its announced length is within `bufferLimit`, streamed otherwise. A
 * promise only when there is a body to read first; it rejects with
 * ClientClosedError when the client goes away while it is read.
 */
export function prepareRequestBody(req: IncomingMessage, options: BodyOptions): RequestBody | Promise<RequestBody> {
  const length = req.headers['content-length'];
  if (hasBody(req) && options.whole) return readBody(req, options.maxBodySize, 'signed');
  if (hasBody(req) && length === undefined && options.costed) return readBody(req, options.bufferLimit);
  if (!hasBody(req) || !options.replay || length === undefined || Number(length) > options.bufferLimit) {
    return requestBody(req, options.maxBodySize);
  }
  return readBody(req);
}

/** The whole body in memory; `cap`: a body of unknown length past it is refused (PAYLOAD_TOO_LARGE). */
async function readBody(
  req: IncomingMessage,
  cap = Infinity,
  why: 'costed' | 'signed' = 'costed',
): Promise<RequestBody> {
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of req) {
      chunks.push(chunk as Buffer);
      size += (chunk as Buffer).length;
      if (size > cap) break;
    }
  } catch {
    throw new ClientClosedError();
  }
  if (size > cap && why === 'signed')
    throw new BreakwaterError(
      'PAYLOAD_TOO_LARGE',
      `The request body is larger than limits.maxBodySize (${cap} bytes).`,
    );
  if (size > cap)
    throw new BreakwaterError(
      'PAYLOAD_TOO_LARGE',
      `This route reads the request's cost from its body: a body of unknown length (chunked) must fit retry.bufferLimit (${cap} bytes); send it with a Content-Length.`,
    );
  if (!req.complete) throw new ClientClosedError();
  return bufferedBody(Buffer.concat(chunks, size));
}
