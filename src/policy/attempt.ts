/**
 * The innermost step of a route's pipeline: one attempt upstream to the
 * request's destination, with the route's and the target's header edits;
 * an error answer a provider rule may match is read (within the cap) and
 * decided before any layer above sees it (SPEC §14); classified and counted.
 */
import type { ErrorRuleConfig, RouteConfig } from '../config/types.js';
import { ERROR_BODY_CAP_BYTES } from '../errors/normalize.js';
import { answerEntry, ProviderRules } from '../errors/provider-rules.js';
import type { Signal } from '../lib/signal.js';
import type { Metrics } from '../observe/metrics.js';
import type { AttemptResult, Next, RequestContext } from './context.js';
import { rewritePath } from '../router/match-route.js';
import { classifyAbort, classifyDecision } from '../upstream/classify.js';
import { decideAnswer } from '../upstream/error-answer.js';
import { joinTargetPath, type Forwarder, type UpstreamTarget } from '../upstream/forward.js';
import type { OutgoingHttpHeaders } from 'node:http';
import type { Readable } from 'node:stream';
import type { Credential } from '../credentials/credential.js';
import type { UpstreamResponse } from '../upstream/response.js';
import type { AttemptTrace } from '../observe/tracing.js';
import { firstByteOf, firstByteTimer, type FirstByteLimit } from './first-byte.js';
import { buildUpstreamHeaders, type CompiledHeaderEdits } from '../upstream/headers.js';

export interface AttemptDeps {
  readonly forwarder: Forwarder;
  readonly metrics: Metrics;
  readonly now: () => number;
  readonly wall: () => number;
}

/** An attempt as the error journal lists it: its target, the upstream's status, the error it amounts to. */
function logAttempt(ctx: RequestContext, target: string, result: AttemptResult, durationMs: number): void {
  const { classification, response } = result;
  const status = response?.statusCode ?? null;
  let code: string | null = null;
  if (classification.outcome !== 'success') {
    code = classification.code ?? answerEntry(status ?? 0, classification.rule).code;
  }
  (ctx.attemptLog ??= []).push({ target, status, code, durationMs: Math.round(durationMs * 1000) / 1000 });
}

/** An error answer a rule may match: read (within the cap) and decided before anything else sees it. */
async function decide(
  result: AttemptResult,
  response: UpstreamResponse,
  ctx: RequestContext,
  signal: Signal,
  rules: ProviderRules,
  wall: number,
): Promise<AttemptResult> {
  const { decision, buffered } = await decideAnswer(response, rules, ERROR_BODY_CAP_BYTES, wall, signal);
  // The read was cut by the per-try deadline (a timeout, as the forwarder says it) or by the client leaving.
  if (signal.aborted) {
    const timedOut = classifyAbort(signal.reason);
    if (timedOut) return { classification: timedOut };
    throw signal.reason;
  }
  if (decision) {
    ctx.rule = decision.rule;
    ctx.flags.add('PROVIDER_RULE');
  }
  return {
    ...result,
    buffered,
    classification: decision ? classifyDecision(response.statusCode ?? 0, decision) : result.classification,
  };
}

/**
 * The attempt's request headers: the route's and the target's edits; a target URL's user:pass@ as Basic unless
 * either sets Authorization.
 */
function headersOf(
  ctx: RequestContext,
  target: UpstreamTarget,
  requestEdits: CompiledHeaderEdits,
  routeSetsAuthorization: boolean,
) {
  const targetEdits = ctx.destination?.edits;
  const headers = buildUpstreamHeaders(ctx.clientHeaders, {
    remoteAddress: ctx.remoteAddress,
    proto: ctx.proto,
    requestId: ctx.requestId,
    edits: requestEdits,
    targetEdits,
    websocket: ctx.handshake !== undefined,
  });
  if (target.authorization && !routeSetsAuthorization && !targetEdits?.set.some(([name]) => name === 'authorization'))
    headers.authorization = target.authorization;
  // A cache's revalidation (SPEC §17): the stored answer's validator, on every attempt; the client's headers untouched.
  if (ctx.revalidation) Object.assign(headers, ctx.revalidation);
  return headers;
}

/**
 * The time to the body's first byte (SPEC §16), measured from `started`: observed, and given to the span, which
 * ends with it (or once the body ended or broke without one).
 */
function timeToFirstByte(
  deps: AttemptDeps,
  route: string,
  attempt: { response: UpstreamResponse; target: UpstreamTarget; started: number; span: AttemptTrace | undefined },
): void {
  const { response, target, started, span } = attempt;
  response.whenBegun((how) => {
    const ms = how === 'started' ? deps.now() - started : undefined;
    if (ms !== undefined) deps.metrics.upstreamFirstByte.observe({ route, upstream: target.name }, ms / 1000);
    span?.end(response.statusCode, undefined, ms);
  });
}

/**
 * SPEC §16: the per-try timer ends with the headers; the first-byte timer bounds the wait for the first byte and
 * the read of an error answer a rule decides (`decide`, when the status is one a rule reads).
 */
async function firstByteFor(
  attempt: { result: AttemptResult; response: UpstreamResponse; ctx: RequestContext; signal: Signal },
  limit: FirstByteLimit,
  now: () => number,
  decide: ((signal: Signal) => Promise<AttemptResult>) | undefined,
): Promise<AttemptResult> {
  const { result, response, ctx, signal } = attempt;
  const target = ctx.destination!.target;
  clearTimeout(ctx.perTryTimer);
  const timer = firstByteTimer(signal, response, target, limit, ctx.deadline - now());
  try {
    const failed = await firstByteOf(response, target, timer.signal);
    if (failed) return { classification: failed };
    return decide ? await decide(timer.signal) : result;
  } finally {
    timer.stop();
  }
}

/**
 * SPEC §18: the target's credentials, last, when the attempt goes; a token may be fetched first (refused before
 * anything is counted as an attempt when it cannot be).
 */
async function applyCredential(
  credential: Credential,
  headers: OutgoingHttpHeaders,
  attempt: {
    ctx: RequestContext;
    target: UpstreamTarget;
    path: string;
    body: Readable | Buffer | undefined;
    signal: Signal;
  },
): Promise<AttemptResult | undefined> {
  const { ctx, target, path, body, signal } = attempt;
  const sending = { method: ctx.method, url: target.url, path: joinTargetPath(target.url, path), body };
  const applying = credential.apply(headers, sending, signal);
  if (applying) {
    try {
      await applying;
    } catch (error) {
      // The per-try timer or the deadline ran out while a token was fetched: a timeout, as any other wait's.
      const timedOut = signal.aborted ? classifyAbort(signal.reason) : undefined;
      if (timedOut) return { classification: timedOut };
      throw error;
    }
  }
  // An OAuth2 401 names the token it refused (credential-refresh.ts).
  ctx.sentCredential = headers.authorization as string | undefined;
  return undefined;
}

export function createAttempt(
  config: RouteConfig,
  requestEdits: CompiledHeaderEdits,
  errorRules: readonly ErrorRuleConfig[],
  deps: AttemptDeps,
): Next {
  const { metrics, forwarder, now } = deps;
  const routeName = config.name;
  // Provider rules (SPEC §14): the upstream's errorRules, then the built-in table unless providerRules: off.
  const rules = new ProviderRules(errorRules, config.errors.providerRules === 'auto');
  const decided = (result: AttemptResult, response: UpstreamResponse, ctx: RequestContext, signal: Signal) =>
    decide(result, response, ctx, signal, rules, deps.wall());

  // A target URL's user:pass@, sent as Basic, gives way to an Authorization the route or the target sets.
  const routeSetsAuthorization = requestEdits.set.some(([name]) => name === 'authorization');
  const { firstByte, total } = config.timeouts;
  const firstByteLimit = firstByte === null ? null : { firstByte, total };

  return async (ctx: RequestContext, signal: Signal): Promise<AttemptResult> => {
    const target = ctx.destination?.target;
    if (!target) throw new Error(`route '${config.name}' has no upstream and the request no target`);
    const started = now();
    const headers = headersOf(ctx, target, requestEdits, routeSetsAuthorization);
    const path = rewritePath(ctx.url, config.match.pathPrefix, config.stripPrefix);
    const body = ctx.handshake ? undefined : ctx.body.open();
    const credential = ctx.destination?.credential;
    if (credential) {
      const waited = await applyCredential(credential, headers, { ctx, target, path, body, signal });
      if (waited) return waited;
    }
    ctx.attempts += 1;
    ctx.target = target.name;
    // This attempt's CLIENT span is the upstream's parent (SPEC §11).
    const span = ctx.trace?.attempt(ctx.method, target.url, target.name, ctx.attempts - 1);
    if (span) Object.assign(headers, span.headers);
    let result: AttemptResult;
    /** When the request went out on its connection: the first byte is timed from there (SPEC §16). */
    let sentAt: number | undefined;
    const onSent = () => void (sentAt = now());
    try {
      const connectTimeoutMs = config.timeouts.connect;
      // A WebSocket upgrade's attempt is its handshake (SPEC §20.3), with the same headers, target and timers.
      result = ctx.handshake
        ? await ctx.handshake({ upstream: target, path, headers, connectTimeoutMs }, signal)
        : await forwarder.forward(
            { method: ctx.method, upstream: target, path, headers, body, connectTimeoutMs, onSent },
            signal,
          );
      const response = result.response;
      // An answer with firstByte counts at its first byte (SPEC §16): until then it may still be a timeout.
      const ruled = response !== undefined && rules.applies(response.statusCode);
      if (response && firstByteLimit && !ctx.handshake) {
        const answered = result;
        const decide = ruled ? (bound: Signal) => decided(answered, response, ctx, bound) : undefined;
        result = await firstByteFor({ result, response, ctx, signal }, firstByteLimit, now, decide);
      } else if (response && ruled) result = await decided(result, response, ctx, signal);
      // Measured once the answer is decided: its span ends with the first byte, or with the error decided.
      if (result.response && !ctx.handshake)
        timeToFirstByte(deps, routeName, { response: result.response, target, started: sentAt ?? started, span });
    } catch (error) {
      span?.end(undefined, (error as { code?: string }).code ?? 'CLIENT_CLOSED');
      throw error;
    }
    // An answer's span ends with its first byte (timeToFirstByte); a failure's now.
    if (!result.response || ctx.handshake)
      span?.end(
        result.response?.statusCode,
        result.response ? undefined : (result.classification.code ?? result.classification.outcome),
      );
    // The error journal's view (SPEC §12): nothing for a first attempt that succeeds.
    if (result.classification.outcome !== 'success' || ctx.attemptLog !== undefined)
      logAttempt(ctx, target.name, result, now() - started);
    metrics.upstreamAttempts.inc({ route: routeName, upstream: target.name, outcome: result.classification.outcome });
    metrics.upstreamAttemptDuration.observe({ route: routeName, upstream: target.name }, (now() - started) / 1000);
    return result;
  };
}
