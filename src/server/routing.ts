/**
 * Where a request arriving on the proxy port goes (SPEC §3, §10, §20),
 * for plain requests and WebSocket upgrades alike: the request line's
 * target form, the front door (§20.1), the path normalized, and the route
 * matched: origin-form by path and Host, absolute-form through the
 * forward-proxy target checks, or decrypted from an intercepted CONNECT.
 */
import { leakRefusal } from './leak-check.js';
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { BreakwaterError } from '../errors/breakwater-error.js';
import type { Cancellation } from '../lib/signal.js';
import type { Destination, RequestContext } from '../policy/context.js';
import type { ServerContext } from './exchange.js';
import { normalizeTarget, rawTargetOf, type NormalizedTarget } from '../router/normalize-path.js';
import type { RouteRuntime, Runtime } from '../runtime.js';
import { authorityOf, checkIdentity, interceptedTarget, type InterceptedTarget } from '../tls/interceptor.js';
import { clientRequestId } from '../upstream/headers.js';
import { frontDoorRefusal, targetFormOf, unsendableTarget, type TargetForm } from './front-door.js';

/** The body before the route is known (a refusal then never reads it); replaced once a route matched. */
const NO_BODY_YET = { replayable: false, open: () => undefined } as const;

function parseAbsolute(url: string): URL | undefined {
  try {
    return new URL(url);
  } catch {
    return undefined;
  }
}

/** A forward target and its breaker's policy layer, for a route without an upstream. */
function forwardOf(runtime: Runtime, host: string, port: number, https = false): Destination {
  const { target, breaker } = runtime.forwardTarget(host, port, https);
  return { target, breaker: breaker.policy };
}

/**
 * The route of an absolute-form request, after the target checks; for a
 * route without an upstream, the request's own target becomes its upstream.
 */
async function forwardRoute(
  runtime: Runtime,
  ctx: ServerContext,
  target: URL | undefined,
): Promise<RouteRuntime | undefined> {
  if (!target) throw new BreakwaterError('BAD_REQUEST', 'The request target is not a valid absolute URL.');
  if (target.protocol !== 'http:') {
    throw new BreakwaterError(
      'BAD_REQUEST',
      `Absolute-form requests must be http://; send ${target.protocol.slice(0, -1)} through CONNECT (HTTPS_PROXY).`,
    );
  }
  const port = Number(target.port || 80);
  const route = runtime.matchForward({ host: ctx.host, method: ctx.method, path: ctx.path });
  // SPEC §18: before any name is resolved, or a secret in a host name would go out in a DNS query.
  const destination = route?.upstream?.config.name ?? null;
  const leak = leakRefusal(runtime.leakGuard, { headers: ctx.clientHeaders, url: ctx.req.url ?? '', destination }, ctx);
  if (leak) throw leak;
  const check = await runtime.targets.check(target.hostname, port, {
    headers: ctx.clientHeaders,
    remoteAddress: ctx.remoteAddress,
  });
  ctx.caller = check.caller;
  ctx.egress =
    !check.ok && !check.dnsFailed ? 'denied' : !check.ok || check.wouldDeny === undefined ? 'allowed' : 'would_deny';
  // Report mode (SPEC §19.2): forwarded, then routed as usual.
  if (check.ok && check.wouldDeny !== undefined) ctx.flags.add('WOULD_DENY');
  if (!check.ok) {
    if (check.dnsFailed)
      throw new BreakwaterError(
        'UPSTREAM_CONNECT_FAILED',
        `The target ${target.host} cannot be connected to: ${check.reason}.`,
      );
    throw new BreakwaterError('HOST_NOT_ALLOWED', `The target ${target.host} is not allowed: ${check.reason}.`);
  }
  if (route && !route.upstream) ctx.destination = forwardOf(runtime, check.host, check.port);
  return route;
}

/**
 * The route of a request decrypted from an intercepted CONNECT. The CONNECT
 * host is its identity: a TLS server name or Host header naming another
 * host gets 421. A route without an upstream sends it to that host over
 * verified TLS.
 */
function interceptRoute(runtime: Runtime, ctx: ServerContext, target: InterceptedTarget): RouteRuntime | undefined {
  checkIdentity(ctx.req, target);
  const route = runtime.matchForward({ host: ctx.host, method: ctx.method, path: ctx.path });
  if (route && !route.upstream) ctx.destination = forwardOf(runtime, target.host, target.port, true);
  return route;
}

/** What the request line and the connection say about where a request goes. */
export interface Arrival {
  readonly target: NormalizedTarget;
  /** The request line's target form (SPEC §20.2): origin, absolute, or one that cannot be sent. */
  readonly form: TargetForm;
  /** Absolute-form (`GET http://host/path`): a forward-proxy request whose target, not Host, names where it goes. */
  readonly absoluteForm: boolean;
  readonly absolute: URL | undefined;
  /** Decrypted from an intercepted CONNECT: its target names the host. */
  readonly intercepted: InterceptedTarget | undefined;
  readonly host: string;
}

export function arrivalOf(req: IncomingMessage): Arrival {
  const rawUrl = req.url ?? '/';
  const form = targetFormOf(rawUrl);
  const absoluteForm = form === 'absolute';
  const absolute = absoluteForm ? parseAbsolute(rawUrl) : undefined;
  // The path is normalized before anything matches it (SPEC §10).
  const target = normalizeTarget(absolute ? rawTargetOf(rawUrl) : rawUrl);
  const intercepted = interceptedTarget(req.socket);
  const host = intercepted
    ? authorityOf(intercepted)
    : absolute
      ? absolute.host
      : (req.headers.host ?? '').toLowerCase();
  return { target, form, absoluteForm, absolute, intercepted, host };
}

/**
 * The route for a request that may be proxied at all; throws the refusal otherwise. A promise only for
 * absolute-form requests (the target check may resolve a name).
 */
export function routeOf(
  runtime: Runtime,
  ctx: ServerContext,
  arrival: Arrival,
  draining: boolean,
): RouteRuntime | Promise<RouteRuntime> {
  if (draining)
    throw new BreakwaterError('PROXY_DRAINING', 'This Breakwater instance is shutting down and takes no new requests.');
  // node's parser reads a request line without a version as HTTP/0.9 (no headers, no Host): never forwarded.
  if (ctx.req.httpVersionMajor < 1)
    throw new BreakwaterError('BAD_REQUEST', 'The request line has no HTTP version (HTTP/0.9 is not proxied).');
  const { target, host } = arrival;
  if (arrival.form === 'other') throw unsendableTarget();
  // Who may call the proxy port (SPEC §20.1): origin-form requests only, before anything is matched or set.
  if (arrival.form === 'origin' && !arrival.intercepted) {
    const refusal = frontDoorRefusal(runtime.config, ctx.req.headers, host);
    if (refusal) throw refusal;
  }
  if (!target.ok)
    throw new BreakwaterError('BAD_REQUEST', `The request path ${target.path} cannot be routed: ${target.reason}.`);
  if (arrival.absoluteForm)
    return forwardRoute(runtime, ctx, arrival.absolute).then((route) => routed(route, ctx, host));
  return routed(
    arrival.intercepted
      ? interceptRoute(runtime, ctx, arrival.intercepted)
      : runtime.match({ host, method: ctx.method, path: ctx.path }),
    ctx,
    host,
  );
}

function routed(route: RouteRuntime | undefined, ctx: RequestContext, host: string): RouteRuntime {
  if (!route)
    throw new BreakwaterError(
      'NO_ROUTE',
      `No route matches ${ctx.method} ${ctx.path}${host ? ` for host ${host}` : ''}.`,
    );
  return route;
}

/**
 * The request's context, before any route: what every policy layer and the exchange read; `res` undefined for an
 * upgrade.
 */
export function contextOf<R extends ServerResponse | undefined>(
  req: IncomingMessage,
  res: R,
  arrival: Arrival,
  runtime: Runtime,
  cancellation: Cancellation,
  startedAt: number,
): ServerContext & { readonly res: R } {
  return {
    requestId: clientRequestId(req.headers['x-request-id']) ?? randomUUID(),
    method: req.method ?? 'GET',
    path: arrival.target.path,
    url: arrival.target.ok ? arrival.target.url : arrival.target.path,
    host: arrival.host,
    clientHeaders: req.headers,
    remoteAddress: req.socket.remoteAddress,
    proto: (req.socket as { encrypted?: boolean }).encrypted ? 'https' : 'http',
    req,
    res,
    body: NO_BODY_YET,
    startedAt,
    deadline: Infinity,
    signal: cancellation,
    attempts: 0,
    target: null,
    flags: new Set(),
    trace: runtime.tracing?.request(req.method ?? 'GET', arrival.target.path, req.headers, arrival.host) ?? null,
    destination: null,
    atExchangeEnd: [],
    handshake: undefined,
    route: '',
    // Set on a route with a cache (SPEC §17), or with timeouts.firstByte (§16); present from the start so every
    // context has one shape.
    cache: undefined,
    perTryTimer: undefined,
    revalidation: undefined,
    sentCredential: undefined,
  };
}
