/**
 * CONNECT (SPEC §3 `forwardProxy.connect`): after the target checks, a
 * plain TCP tunnel to the checked address, opened within the default
 * `timeouts.connect`. A refused target gets 502 and a timed-out one 504, as
 * problem bodies on the socket, never a silently dropped connection; each
 * tunnel attempt is one call of the target's breaker; a target that does
 * not accept within the timeout is UPSTREAM_CONNECT_FAILED, as on the HTTP
 * path (it was UPSTREAM_TIMEOUT). Once open, bytes flow
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
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, Server } from 'node:http';
import net from 'node:net';
import tls from 'node:tls';
import { Duplex } from 'node:stream';
import { BreakwaterError } from '../errors/breakwater-error.js';
import { ClientClosedError } from '../errors/client-closed.js';
import type { AttemptResult, ExchangeRecord } from '../policy/context.js';
import { Cancellation } from '../lib/signal.js';
import { classifyConnectTimeout, classifyError, classifyStatus } from '../upstream/classify.js';
import { clientRequestId } from '../upstream/headers.js';
import { MAX_HELLO_BYTES, peekClientHello } from '../tls/client-hello.js';
import { markIntercepted } from '../tls/interceptor.js';
import { Exchange, type ServerDeps } from './exchange.js';

/** `host:port` of a CONNECT request target, IPv6 in brackets. */
function parseAuthority(authority: string): { host: string; port: number } | undefined {
  const match = /^(\[[^\]]+\]|[^:]+):(\d{1,5})$/.exec(authority);
  if (!match) return undefined;
  const port = Number(match[2]);
  return port > 0 && port < 65536 ? { host: match[1]!, port } : undefined;
}

/** How long an intercepted client may take to send its ClientHello, and then to finish the handshake. */
const HELLO_TIMEOUT_MS = 10_000;

export function handleConnect(req: IncomingMessage, socket: Duplex, head: Buffer, deps: ServerDeps, server?: Server): void {
  const runtime = deps.runtime();
  const { config } = runtime;
  const { metrics, logger } = deps;
  const requestId = clientRequestId(req.headers['x-request-id']) ?? randomUUID();
  const authority = req.url ?? '';
  let status = 200;
  const record: ExchangeRecord = { requestId, method: 'CONNECT', path: '', host: authority, startedAt: deps.now(), attempts: 0, flags: new Set() };
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
    exchange.matched = { route: '', target: name, plainErrors: false };
  };

  void (async () => {
    const target = parseAuthority(authority);
    if (!target) {
      refuse(new BreakwaterError('BAD_REQUEST', `CONNECT needs host:port, not "${authority}".`));
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
    const intercepting = config.forwardProxy.connect.mode === 'intercept' && runtime.interceptor !== null;
    let buffered = head;
    if (intercepting && runtime.interceptor!.matches(check.host)) {
      // The CONNECT host (normalised by the target check) is the identity: its leaf, its 421 checks.
      const host = check.host;
      targetIs(`${host.includes(':') ? `[${host}]` : host}:${check.port}`);
      socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      established = true;
      const hello = await readHello(socket, head);
      if (!hello) return; // the client left, or never spoke
      buffered = hello.data;
      if (hello.peek.kind === 'hello' && (hello.peek.alpn.length === 0 || hello.peek.alpn.includes('http/1.1'))) {
        let context: tls.SecureContext;
        try {
          context = await runtime.interceptor!.contextFor(host);
        } catch (error) {
          logger.error({ requestId, host, err: (error as Error).message }, `cannot mint a certificate for ${host}: the intercepted connection is closed`);
          socket.destroy();
          return;
        }
        if (socket.destroyed) return;
        terminate(socket, hello.data, context, { host, port: check.port }, server!, deps, requestId);
        return;
      }
      logger.warn(
        { requestId, host: check.host, alpn: hello.peek.kind === 'hello' ? hello.peek.alpn : undefined },
        hello.peek.kind === 'hello'
          ? `client offered only ${hello.peek.alpn.join(', ')} for ${check.host}: tunnelled without policies (interception serves HTTP/1.1); leave ${check.host} out of intercept.hosts, or let the client use HTTP/1.1`
          : `client did not start TLS to ${check.host}: tunnelled without policies`,
      );
    }
    if (intercepting) metrics.tlsIntercept.inc({ result: 'tunnelled' });
    const { target: upstream, breaker } = runtime.forwardTarget(check.host, check.port);
    targetIs(upstream.name);
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
          resolve({ classification: classifyConnectTimeout(`Target ${authority} could not be connected to within ${connectMs} ms (connect timeout).`) });
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
    let result: AttemptResult;
    try {
      result = await breaker.call(record, cancellation, attempt);
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
    // (An intercept candidate that is tunnelled after all was already told 200.)
    if (!established) socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
    if (buffered.length > 0) upstreamSocket.write(buffered);
    socket.resume();
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

/** Reads the client's first bytes until its ClientHello is complete (or clearly not one); undefined if the client leaves or stays silent. */
function readHello(socket: Duplex, head: Buffer): Promise<{ data: Buffer; peek: ReturnType<typeof peekClientHello> } | undefined> {
  return new Promise((resolve) => {
    let data = head;
    const done = (result: { data: Buffer; peek: ReturnType<typeof peekClientHello> } | undefined) => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('close', onClose);
      socket.pause();
      if (!result) socket.destroy();
      resolve(result);
    };
    const check = () => {
      const peek = peekClientHello(data);
      if (peek.kind !== 'partial' || data.length >= MAX_HELLO_BYTES) done({ data, peek: peek.kind === 'partial' ? { kind: 'not-tls' } : peek });
    };
    const onData = (chunk: Buffer) => {
      data = data.length === 0 ? chunk : Buffer.concat([data, chunk]);
      check();
    };
    const onClose = () => done(undefined);
    const timer = setTimeout(() => done(undefined), HELLO_TIMEOUT_MS);
    socket.on('data', onData);
    socket.once('close', onClose);
    if (data.length > 0) check();
  });
}

/** Terminates the client's TLS with the leaf for its CONNECT host and hands the decrypted connection to the HTTP server. */
function terminate(socket: Duplex, hello: Buffer, context: tls.SecureContext, target: { host: string; port: number }, server: Server, deps: ServerDeps, requestId: string): void {
  const { metrics, logger } = deps;
  const secure = new tls.TLSSocket(replaying(socket, hello), { isServer: true, secureContext: context, ALPNProtocols: ['http/1.1'] });
  // The HTTP server logs and forwards the client's address.
  Object.defineProperty(secure, 'remoteAddress', { value: (socket as net.Socket).remoteAddress });
  Object.defineProperty(secure, 'remotePort', { value: (socket as net.Socket).remotePort });
  markIntercepted(secure, target);
  let settled = false;
  // A client that sends its ClientHello and then nothing must not hold the connection.
  const handshake = setTimeout(() => secure.destroy(new Error(`no TLS handshake within ${HELLO_TIMEOUT_MS} ms`)), HELLO_TIMEOUT_MS);
  secure.once('secure', () => {
    clearTimeout(handshake);
    settled = true;
    metrics.tlsIntercept.inc({ result: 'intercepted' });
  });
  // A client that rejects our leaf sends an alert (an error here) or just
  // hangs up before the handshake ends: either way, refused, counted once.
  const refused = (reason: string) => {
    if (settled) return;
    settled = true;
    metrics.tlsIntercept.inc({ result: 'refused' });
    logger.warn(
      { requestId, host: target.host, err: reason },
      `client refused the intercepted TLS for ${target.host} (pinned certificate, or the CA is not trusted): trust the CA in the app, or leave ${target.host} out of intercept.hosts`,
    );
  };
  secure.on('error', (error: Error) => {
    refused(error.message);
    secure.destroy();
  });
  secure.once('close', () => {
    clearTimeout(handshake);
    refused('closed during the handshake');
    socket.destroy();
  });
  server.emit('connection', secure);
}

/**
 * The client's socket with the bytes already read (its ClientHello) put
 * back in front. (A TLSSocket over a net.Socket reads from the handle and
 * would never see bytes unshifted into the JS stream.)
 */
function replaying(socket: Duplex, first: Buffer): Duplex {
  const duplex = new Duplex({
    read: () => {
      socket.resume();
    },
    write: (chunk: Buffer, _encoding, callback) => {
      socket.write(chunk, callback);
    },
    final: (callback) => {
      socket.end();
      callback();
    },
    destroy: (error, callback) => {
      socket.destroy();
      callback(error);
    },
  });
  duplex.push(first);
  socket.on('data', (chunk: Buffer) => {
    if (!duplex.push(chunk)) socket.pause();
  });
  socket.once('end', () => duplex.push(null));
  socket.once('close', () => duplex.destroy());
  socket.resume();
  return duplex;
}
