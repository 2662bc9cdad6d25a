import type { UpstreamResponse } from './response.js';

/** Small bodies are read and dropped so their keep-alive socket returns to the pool; anything else is destroyed. */
const DRAIN_LIMIT_BYTES = 64 * 1024;

/**
 * Gets rid of the response of an attempt that will not be sent to the
 * client (a retried one), without leaking its pooled socket.
 */
export function discardResponse(response: UpstreamResponse): void {
  const length = Number(response.headers['content-length']);
  if (Number.isFinite(length) && length <= DRAIN_LIMIT_BYTES) {
    response.on('error', () => {});
    response.resume();
  } else {
    response.destroy();
  }
}
