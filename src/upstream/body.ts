/**
 * The request body as the attempts see it. The first attempt streams the
 * live request (with `limits.maxBodySize` enforced while streaming when no
 * Content-Length announced the size); a body can be opened again only when
 * it is replayable. Buffering for replay comes with the retry layer.
 */
import type { IncomingMessage } from 'node:http';
import { Readable, Transform, type TransformCallback } from 'node:stream';
import { BreakwaterError } from '../errors/breakwater-error.js';

export interface RequestBody {
  /** True when the request carries no body at all. */
  readonly empty: boolean;
  /** True when open() may be called again for another attempt. */
  readonly replayable: boolean;
  /**
   * The body for the next attempt: undefined means "pipe the live request"
   * (first attempt only); a Readable otherwise.
   */
  open(): Readable | undefined;
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
      callback(new BreakwaterError('PAYLOAD_TOO_LARGE', `The request body is larger than limits.maxBodySize (${this.limit} bytes).`));
      return;
    }
    callback(null, chunk);
  }
}

export function hasBody(req: IncomingMessage): boolean {
  const length = req.headers['content-length'];
  if (length !== undefined) return length !== '0';
  return req.headers['transfer-encoding'] !== undefined;
}

export function requestBody(req: IncomingMessage, maxBodySize: number): RequestBody {
  if (!hasBody(req)) {
    let opened = false;
    return {
      empty: true,
      replayable: true,
      open() {
        if (!opened) {
          opened = true;
          return undefined;
        }
        return Readable.from([]);
      },
    };
  }
  let opened = false;
  const announced = req.headers['content-length'] !== undefined;
  return {
    empty: false,
    replayable: false,
    open() {
      if (opened) throw new Error('the request body was already sent and is not replayable');
      opened = true;
      if (announced) return undefined; // the parser holds it to Content-Length, checked before forwarding
      const limit = new SizeLimit(maxBodySize);
      // An error listener for the whole life of the stream: a limit hit after
      // the attempt settled must not become an unhandled 'error' event.
      limit.on('error', () => req.unpipe(limit));
      return req.pipe(limit);
    },
  };
}
