/**
 * CONNECT (SPEC §3 `forwardProxy.connect`): after the target checks, a
 * plain TCP tunnel to the checked address, opened within the default
 * `timeouts.connect`. A refused target, and one that does not accept
 * within the timeout, get 502 UPSTREAM_CONNECT_FAILED (as on the HTTP
 * path), as problem bodies on the socket, never a silently dropped
 * connection; each tunnel attempt is one call of the target's breaker.
 * Once open, bytes flow
 * both ways untouched (no policy sees inside) and either side closing
 * closes both.
 *
 * With `mode: intercept`, a target in `intercept.hosts` is not tunnelled:
 * Breakwater answers 200 itself, reads the client's ClientHello, terminates
 * TLS with a leaf minted for the CONNECT host and hands the decrypted
 * connection to the same HTTP server as plain requests (marked with its
 * CONNECT target), where routes, retries, breakers, limits and pacing apply.
 * A client that offers only h2, or does not speak TLS, is tunnelled
 * instead; one that refuses the leaf is counted and logged.
 */
import { leakRefusal } from './leak-check.js';
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, Server } from 'node:http';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import { BreakwaterError } from '../errors/breakwater-error.js';
import { ClientClosedError } from '../errors/client-closed.js';
import type { AttemptResult } from '../policy/context.js';
import type { ExchangeRecord } from './exchange-record.js';
import type { UpstreamBreaker } from '../policy/breaker/types.js';
import { Cancellation } from '../lib/signal.js';
import { classifyConnectTimeout, classifyError, classifyStatus } from '../upstream/classify.js';
import { clientRequestId } from '../upstream/headers.js';
import { Exchange, type ServerDeps } from './exchange.js';
import { interceptOrNot } from './intercept-connect.js';
import type { Runtime } from '../runtime.js';
import type { TargetCheck } from '../router/target-check.js';

/** `host:port` of a CONNECT request target, IPv6 in brackets. */
function parseAuthority(authority: string): { host: string; port: number } | undefined {
  const match = /^(\[[^\]]+\]|[^:]+):(\d{1,5})$/.exec(authority);
  if (!match) return undefined;
  const port = Number(match[2]);
  return port > 0 && port < 65536 ? { host: match[1]!, port } : undefined;
}

/** A CONNECT's exchange record: its authority as host, no path (the tunnel's bytes are not seen). */
function connectRecord(requestId: string, authority: string, startedAt: number): ExchangeRecord {
  return {
    requestId,
    method: 'CONNECT',
    path: '',
    host: authority,
    startedAt,
    attempts: 0,
    target: null,
    flags: new Set(),
  };
}

/**
 * The CONNECT target after the target checks (SPEC §19.3), its caller and the allow-list's decision recorded;
 * the refusal when it may not be reached.
 */
async function checkedTarget(
  runtime: Runtime,
  req: IncomingMessage,
  record: ExchangeRecord,
  authority: string,
): Promise<Extract<TargetCheck, { ok: true }> | BreakwaterError> {
  const target = parseAuthority(authority);
  if (!target) return new BreakwaterError('BAD_REQUEST', `CONNECT needs host:port, not "${authority}".`);
  // A tunnel goes to no upstream: every managed secret in its headers or authority is a leak (SPEC §18).
  const leak = leakRefusal(runtime.leakGuard, { headers: req.headers, url: authority, destination: null }, record);
  if (leak) return leak;
  const check = await runtime.targets.check(target.host, target.port, {
    headers: req.headers,
    remoteAddress: req.socket.remoteAddress,
  });
  record.caller = check.caller;
  record.egress =
    !check.ok && !check.dnsFailed ? 'denied' : !check.ok || check.wouldDeny === undefined ? 'allowed' : 'would_deny';
  if (check.ok && check.wouldDeny !== undefined) record.flags.add('WOULD_DENY');
  if (check.ok) return check;
  return check.dnsFailed
    ? new BreakwaterError('UPSTREAM_CONNECT_FAILED', `The target ${authority} cannot be connected to: ${check.reason}.`)
    : new BreakwaterError('HOST_NOT_ALLOWED', `The target ${authority} is not allowed: ${check.reason}.`);
}

export function handleConnect(
  req: IncomingMessage,
  socket: Duplex,
  head: Buffer,
  deps: ServerDeps,
  server?: Server,
): void {
  const runtime = deps.runtime();
  const { config } = runtime;
  const { metrics, logger } = deps;
  const requestId = clientRequestId(req.headers['x-request-id']) ?? randomUUID();
  const authority = req.url ?? '';
  let status = 200;
  const record = connectRecord(requestId, authority, deps.now());
  const exchange = new Exchange(deps, runtime, record, authority);
  socket.on('error', () => socket.destroy());
  socket.once('close', () => exchange.finish(status));

  /** Set once the client was told 200: from then on a failure closes the socket (the client already speaks TLS). */
  let established = false;
  const refuse = (error: BreakwaterError) => {
    if (established) {
      socket.destroy();
      return;
    }
    status = exchange.refuse(error, socket);
  };
  /** The target is known: it answers for the exchange, with one attempt. */
  const targetIs = (name: string) => {
    record.attempts = 1;
    record.target = name;
    exchange.matched = { route: '', upstream: name, plainErrors: false };
  };

  void (async () => {
    const check = await checkedTarget(runtime, req, record, authority);
    if (check instanceof BreakwaterError) {
      refuse(check);
      return;
    }
    const intercepting = config.forwardProxy.connect.mode === 'intercept' && runtime.interceptor !== null;
    let buffered = head;
    if (intercepting && runtime.interceptor!.matches(check.host)) {
      // The CONNECT host (normalised by the target check) is the identity: its leaf, its 421 checks.
      const host = check.host;
      targetIs(`${host.includes(':') ? `[${host}]` : host}:${check.port}`);
      socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      established = true;
      const rest = await interceptOrNot(
        socket,
        head,
        { host, port: check.port },
        runtime.interceptor!,
        server!,
        deps,
        requestId,
      );
      if (!rest) return; // intercepted, or the client left
      buffered = rest;
    }
    if (intercepting) metrics.tlsIntercept.inc({ result: 'tunnelled' });
    const { target: upstream, breaker } = runtime.forwardTarget(check.host, check.port);
    targetIs(upstream.name);
    const tunnel = await openTunnel(breaker, record, socket, check, authority, config.defaults.timeouts.connect);
    if (tunnel instanceof BreakwaterError) return refuse(tunnel);
    // No tunnel (the client left while it opened), or no client left for it.
    if (!tunnel || socket.destroyed) {
      (tunnel ?? socket).destroy();
      return;
    }
    // (An intercept candidate that is tunnelled after all was already told 200.)
    if (!established) socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
    splice(socket, tunnel, buffered);
  })().catch((error: unknown) => {
    logger.error({ err: error, requestId }, 'internal error in CONNECT');
    refuse(new BreakwaterError('INTERNAL_ERROR', 'Breakwater failed while opening the tunnel.'));
  });
}

/**
 * The tunnel's upstream connection, opened through the target's breaker:
 * its socket, the refusal (breaker, connect failure), or undefined for
 * any other error (the client left; the socket is then destroyed).
 */
async function openTunnel(
  breaker: UpstreamBreaker,
  record: ExchangeRecord,
  socket: Duplex,
  check: { address: string; port: number; family: number },
  authority: string,
  connectMs: number,
): Promise<net.Socket | BreakwaterError | undefined> {
  const cancellation = new Cancellation();
  socket.once('close', () => cancellation.abort(new ClientClosedError()));
  let tunnel: net.Socket | undefined;
  let result: AttemptResult;
  try {
    result = await breaker.call(record, cancellation, () =>
      dial(check, authority, connectMs, (connection) => (tunnel = connection)),
    );
  } catch (error) {
    return error instanceof BreakwaterError ? error : undefined;
  }
  if (tunnel) return tunnel;
  const { code = 'UPSTREAM_CONNECT_FAILED', detail = `Target ${authority} could not be connected to.` } =
    result.classification;
  return new BreakwaterError(code, detail);
}

/**
 * One connection attempt to a checked target, within `connectMs`: one
 * breaker call, a refused or silent target a connect failure, an open
 * tunnel a success (`onOpen` gets its socket).
 */
function dial(
  check: { address: string; port: number; family: number },
  authority: string,
  connectMs: number,
  onOpen: (connection: net.Socket) => void,
): Promise<AttemptResult> {
  return new Promise((resolve) => {
    const connection = net.connect({ host: check.address, port: check.port, family: check.family });
    const timer = setTimeout(() => {
      connection.destroy();
      resolve({
        classification: classifyConnectTimeout(
          `Target ${authority} could not be connected to within ${connectMs} ms (connect timeout).`,
        ),
      });
    }, connectMs);
    connection.once('connect', () => {
      clearTimeout(timer);
      onOpen(connection);
      resolve({ classification: classifyStatus(200) });
    });
    connection.once('error', (error) => {
      clearTimeout(timer);
      const classification = classifyError(error, { connected: false });
      resolve({
        classification: { ...classification, detail: `Target ${authority} ${classification.detail ?? ''}`.trim() },
      });
    });
  });
}

/** Bytes flow both ways untouched (what the client sent before, first); either side closing closes both. */
function splice(socket: Duplex, upstreamSocket: net.Socket, buffered: Buffer): void {
  upstreamSocket.on('error', () => socket.destroy());
  if (buffered.length > 0) upstreamSocket.write(buffered);
  socket.resume();
  socket.pipe(upstreamSocket);
  upstreamSocket.pipe(socket);
  upstreamSocket.once('close', () => socket.destroy());
  socket.once('close', () => upstreamSocket.destroy());
}
