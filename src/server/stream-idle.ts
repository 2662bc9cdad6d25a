/**
 * A response body that goes silent once it flows (SPEC §16 `timeouts.idle`):
 * past the limit the upstream request is aborted (its connection closed) and
 * the answer ended as what it is, an incomplete one. An event stream gets
 * one last event of Breakwater's own, `event: error` with the §5 problem, on
 * an event boundary, and ends normally; any other body is aborted, so that
 * it never looks complete. Silence is the upstream's only while the client
 * takes what is sent: a body held back by a slow client is not silent.
 */
import { formatDuration } from '../config/units.js';
import { BreakwaterError } from '../errors/breakwater-error.js';
import { watchSilence } from '../lib/silence.js';
import { classifyTimeout } from '../upstream/classify.js';
import type { UpstreamResponse } from '../upstream/response.js';
import type { Exchange, HttpContext, ServerDeps } from './exchange.js';

/** Watches `response` as it streams to the client, when the route sets `timeouts.idle`. */
export function watchStream(
  ctx: HttpContext,
  exchange: Exchange,
  response: UpstreamResponse,
  idleMs: number,
  deps: Pick<ServerDeps, 'now'> & { readonly read?: Buffer },
): void {
  if (response.complete) return;
  const { res } = ctx;
  const eventStream = response.eventStream;
  if (eventStream) response.keepTail(deps.read);
  const stop = watchSilence(
    {
      bytes: () => response.received,
      held: () => res.writableNeedDrain,
      over: () => response.complete || response.destroyed || res.destroyed,
    },
    idleMs,
    deps.now,
    (silentMs) => cut(ctx, exchange, response, eventStream, idleMs, silentMs),
  );
  res.once('close', stop);
}

function cut(
  ctx: HttpContext,
  exchange: Exchange,
  response: UpstreamResponse,
  eventStream: boolean,
  idleMs: number,
  silentMs: number,
): void {
  const error = new BreakwaterError(
    'UPSTREAM_STREAM_STALLED',
    `The upstream sent nothing for ${formatDuration(Math.round(silentMs))} (timeouts.idle ${formatDuration(idleMs)}) after ${response.received} bytes of its answer; Breakwater cut the stream.`,
  );
  // Flagged first: the response's and the client's close handlers then know Breakwater ended it.
  const problem = exchange.cutAnswer(error);
  ctx.destination?.breaker.failedLate?.(classifyTimeout(error.detail));
  const closing = eventStream ? response.closing() : '';
  response.cut();
  if (eventStream) ctx.res.end(`${closing}event: error\ndata: ${problem}\n\n`);
  // HTTP/1.0 reads a body to the connection's end: a reset, not a close, says it is incomplete.
  else if (ctx.req.httpVersion === '1.0') ctx.res.socket?.resetAndDestroy();
  else ctx.res.destroy();
}

/** The name/value list without Content-Length. */
export function withoutContentLength(headers: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < headers.length; i += 2)
    if (headers[i] !== 'content-length') out.push(headers[i]!, headers[i + 1]!);
  return out;
}
