/**
 * CONNECT (SPEC §3 `forwardProxy.connect.mode: tunnel`): after the target
 * checks, a plain TCP tunnel to the checked address, opened within the
 * default `timeouts.connect`. A refused target gets 502 and a timed-out one
 * 504, as problem bodies on the socket, never a silently dropped
 * connection; each tunnel attempt is one call of the target's breaker.
 * Once open, bytes flow both ways untouched (no policy sees inside) and
 * either side closing closes both.
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import { BreakwaterError } from '../errors/breakwater-error.js';
import { ClientClosedError } from '../errors/client-closed.js';
import { renderProblem } from '../errors/problem.js';
import { logAccess } from '../observe/access-log.js';
import type { AttemptResult, RequestContext } from '../policy/context.js';
import { Cancellation } from '../policy/signal.js';
import { flagForCode } from '../policy/context.js';
import { classifyError, classifyStatus } from '../upstream/classify.js';
import { clientRequestId } from '../upstream/headers.js';
import type { ProxyServerDeps } from './proxy-server.js';
import { writeRawResponse } from './proxy-server.js';

/** `host:port` of a CONNECT request target, IPv6 in brackets. */
function parseAuthority(authority: string): { host: string; port: number } | undefined {
  const match = /^(\[[^\]]+\]|[^:]+):(\d{1,5})$/.exec(authority);
  if (!match) return undefined;
  const port = Number(match[2]);
  return port > 0 && port < 65536 ? { host: match[1]!, port } : undefined;
}

export function handleConnect(req: IncomingMessage, socket: Duplex, head: Buffer, deps: ProxyServerDeps): void {
  const runtime = deps.runtime();
  const { config } = runtime;
  const { metrics, logger, now } = deps;
  const startedAt = now();
  const requestId = clientRequestId(req.headers['x-request-id']) ?? randomUUID();
  const authority = req.url ?? '';
  let status = 200;
  let upstreamName = '';
  const flags: string[] = [];
  socket.on('error', () => socket.destroy());
  socket.once('close', () => {
    metrics.requestsTotal.inc({ route: '', method: 'CONNECT', code: String(status) });
    metrics.requestDuration.observe({ route: '', method: 'CONNECT' }, (now() - startedAt) / 1000);
    if (config.logging.accessLog) {
      logAccess(logger, {
        requestId, method: 'CONNECT', host: authority, path: '', route: '', upstream: upstreamName, status,
        durationMs: Math.round((now() - startedAt) * 1000) / 1000, attempts: upstreamName ? 1 : 0, flags,
      });
    }
  });

  const refuse = (error: BreakwaterError) => {
    status = error.status;
    const flag = flagForCode(error.code);
    if (flag) flags.push(flag);
    metrics.errors.inc({ route: '', code: error.code });
    writeRawResponse(socket, renderProblem(error, { instance: authority, route: null, upstream: upstreamName || null, attempts: upstreamName ? 1 : 0, requestId }));
  };

  void (async () => {
    const target = parseAuthority(authority);
    if (!target) {
      refuse(new BreakwaterError('BAD_REQUEST', `CONNECT needs host:port, not "${authority}".`));
      return;
    }
    if (config.forwardProxy.connect.mode !== 'tunnel') {
      refuse(new BreakwaterError('BAD_REQUEST', 'CONNECT is not served in this mode.'));
      return;
    }
    const check = await runtime.targets.check(target.host, target.port);
    if (!check.ok) {
      refuse(
        check.dnsFailed
          ? new BreakwaterError('UPSTREAM_CONNECT_FAILED', `The target ${authority} cannot be connected to: ${check.reason}.`)
          : new BreakwaterError('HOST_NOT_ALLOWED', `The target ${authority} is not allowed: ${check.reason}.`),
      );
      return;
    }
    const { target: upstream, breaker } = runtime.forwardTarget(check.host, check.port);
    upstreamName = upstream.name;
    const connectMs = config.defaults.timeouts.connect;
    const cancellation = new Cancellation();
    socket.once('close', () => cancellation.abort(new ClientClosedError()));
    let tunnel: net.Socket | undefined;
    // One breaker call per tunnel attempt: a refused or silent target is a
    // connect failure, an open tunnel a success.
    const attempt = (): Promise<AttemptResult> =>
      new Promise((resolve) => {
        const connection = net.connect({ host: check.address, port: check.port, family: check.family });
        const timer = setTimeout(() => {
          connection.destroy();
          resolve({ classification: { outcome: 'timeout', code: 'UPSTREAM_TIMEOUT', detail: `Target ${authority} did not accept the connection within ${connectMs} ms.` } });
        }, connectMs);
        connection.once('connect', () => {
          clearTimeout(timer);
          tunnel = connection;
          resolve({ classification: classifyStatus(200) });
        });
        connection.once('error', (error) => {
          clearTimeout(timer);
          const classification = classifyError(error, { connected: false });
          resolve({ classification: { ...classification, detail: `Target ${authority} ${classification.detail ?? ''}`.trim() } });
        });
      });
    const ctx = { flags: new Set<string>(), signal: cancellation } as unknown as RequestContext;
    let result: AttemptResult;
    try {
      result = await breaker.run(ctx, cancellation, attempt);
    } catch (error) {
      if (error instanceof BreakwaterError) refuse(error);
      else socket.destroy();
      return;
    }
    if (!tunnel) {
      const { code = 'UPSTREAM_CONNECT_FAILED', detail = `Target ${authority} could not be connected to.` } = result.classification;
      refuse(new BreakwaterError(code, detail));
      return;
    }
    const upstreamSocket = tunnel;
    if (socket.destroyed) {
      upstreamSocket.destroy();
      return;
    }
    upstreamSocket.on('error', () => socket.destroy());
    socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
    if (head.length > 0) upstreamSocket.write(head);
    socket.pipe(upstreamSocket);
    upstreamSocket.pipe(socket);
    // Either side closing closes both.
    upstreamSocket.once('close', () => socket.destroy());
    socket.once('close', () => upstreamSocket.destroy());
  })().catch((error: unknown) => {
    logger.error({ err: error, requestId }, 'internal error in CONNECT');
    refuse(new BreakwaterError('INTERNAL_ERROR', 'Breakwater failed while opening the tunnel.'));
  });
}
