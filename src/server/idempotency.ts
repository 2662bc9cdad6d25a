/**
 * Idempotency keys for the app (SPEC §18 `idempotencyKeys`): on an upstream
 * with them on, a POST or PATCH that came without the header gets a random
 * UUID, made once per client request and then sent on every attempt and to
 * every failover target (attempts build their headers from the client's),
 * so that it is retried and failed over like a request that brought a key
 * (§3 `retry.methods` looks for the same header). A key the app sent is kept.
 */
import { randomUUID } from 'node:crypto';
import type { RouteRuntime } from '../runtime.js';
import type { ServerContext } from './exchange.js';

export function addIdempotencyKey(ctx: ServerContext, route: RouteRuntime): void {
  const keys = route.upstream?.config.idempotencyKeys;
  if (!keys?.enabled || (ctx.method !== 'POST' && ctx.method !== 'PATCH')) return;
  if (ctx.clientHeaders[keys.header] !== undefined) return;
  ctx.clientHeaders[keys.header] = randomUUID();
  ctx.flags.add('IDEMPOTENCY_KEY_ADDED');
}
