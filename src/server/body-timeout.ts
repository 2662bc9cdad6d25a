/**
 * A request body that stops arriving (SPEC §20.4, nginx's
 * `client_body_timeout`): silent for longer than `limits.clientBodyTimeout`
 * between two reads, counted from the end of the headers, it is cut. Not a
 * cap on the whole body: a slow upload that keeps moving is never cut.
 *
 * No listener is added to the request or its socket (a 'data' listener
 * would take node's parser off its fast path, and one on the request would
 * start reading it): a timer samples the socket's byte count a few times
 * per period (lib/silence.ts). Silence is the client's only while Breakwater would take
 * more: a body held back by a slow upstream (the request's buffer is full,
 * node stops reading the socket) is not silent.
 */
import type { IncomingMessage } from 'node:http';
import { BreakwaterError } from '../errors/breakwater-error.js';
import type { Cancellation } from '../lib/signal.js';
import { watchSilence } from '../lib/silence.js';
import type { Exchange, HttpContext } from './exchange.js';

/**
 * Watches `req`'s body until it is complete; calls `onSilent` once if it is
 * silent for `timeoutMs`. Returns the function that stops watching.
 */
export function watchBody(
  req: IncomingMessage,
  timeoutMs: number,
  now: () => number,
  onSilent: () => void,
): () => void {
  const socket = req.socket;
  return watchSilence(
    {
      bytes: () => socket.bytesRead,
      held: () => req.readableLength >= req.readableHighWaterMark,
      over: () => req.complete || socket.destroyed,
    },
    timeoutMs,
    now,
    onSilent,
  );
}

/**
 * The request body went silent past `limits.clientBodyTimeout` (SPEC §20.4):
 * 408 with Connection: close if nothing was answered yet, else the answer is
 * cut; the attempt streaming the body upstream is aborted, and a body read
 * for replay is never sent.
 */
export function cutSilentBody(
  ctx: HttpContext,
  exchange: Exchange,
  cancellation: Cancellation,
  timeoutMs: number,
): void {
  const error = new BreakwaterError(
    'REQUEST_BODY_TIMEOUT',
    `The request body sent nothing for ${timeoutMs} ms (limits.clientBodyTimeout); the request was cut.`,
  );
  if (ctx.res.headersSent) {
    exchange.countError(error.code, true);
    ctx.res.destroy();
  } else {
    exchange.refuse(error, ctx.res, { closeConnection: true });
  }
  cancellation.abort(error);
}
