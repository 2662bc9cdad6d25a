/**
 * SPEC §18: an OAuth2 401. The token the request carried is dropped (when
 * it is still the current one: a 401 for a token already replaced fetches
 * nothing), whatever happens next; the request is then sent once more with
 * a new one when its body can be replayed. Not a retry: no `maxRetries`,
 * budget or backoff; counted in the attempts, flagged
 * CREDENTIALS_REFRESHED. The layer sits below the breaker, which sees one
 * call and the second answer (a 401 is never a breaker failure), and above
 * the per-try timeout, so the second send has a timer of its own.
 */
import { discardResponse } from '../upstream/discard.js';
import type { Policy } from './context.js';

export const credentialRefresh: Policy = {
  async run(ctx, signal, next) {
    const result = await next(ctx, signal);
    const credential = ctx.destination?.credential;
    if (!credential?.unauthorized || result.response?.statusCode !== 401) return result;
    credential.unauthorized(ctx.sentCredential);
    if (ctx.flags.has('CREDENTIALS_REFRESHED') || !ctx.body.replayable || ctx.handshake)
      return { ...result, tokenRefused: true };
    ctx.flags.add('CREDENTIALS_REFRESHED');
    discardResponse(result.response);
    const again = await next(ctx, signal);
    return again.response?.statusCode === 401 ? { ...again, tokenRefused: true } : again;
  },
  close() {},
};
