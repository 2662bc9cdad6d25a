/**
 * A request's route, once matched (plain requests and WebSocket upgrades
 * alike): where its attempts go, what the exchange and the trace name, its
 * priority class, its idempotency key; refused when it carries another
 * upstream's secret (SPEC §18).
 */
import type { LeakGuard } from '../credentials/leak-guard.js';
import type { RouteRuntime } from '../runtime.js';
import type { Exchange, ServerContext } from './exchange.js';
import { addIdempotencyKey } from './idempotency.js';
import { leakRefusal } from './leak-check.js';

/** The route and the upstream (or forward target) it sends to, as the exchange names them. */
const matched = (ctx: ServerContext, route: RouteRuntime) => ({
  route: route.name,
  upstream: route.upstream?.config.name ?? ctx.destination?.target.name ?? null,
  plainErrors: route.plainErrors,
});

export function matchedTo(ctx: ServerContext, exchange: Exchange, route: RouteRuntime, guard: LeakGuard | null): void {
  ctx.destination ??= route.destination;
  ctx.route = route.name;
  exchange.matched = matched(ctx, route);
  if (route.classify) ctx.priority = route.classify(ctx.req.headers);
  const destination = route.upstream?.config.name ?? null;
  const leak = leakRefusal(guard, { headers: ctx.req.headers, url: ctx.req.url ?? '', destination }, ctx);
  if (leak) throw leak;
  addIdempotencyKey(ctx, route);
  ctx.trace?.route(ctx.method, route.name);
}
