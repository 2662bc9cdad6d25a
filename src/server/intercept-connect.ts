/**
 * CONNECT interception (SPEC §3 `forwardProxy.connect.mode: intercept`):
 * for a target in `intercept.hosts`, read the client's ClientHello,
 * terminate its TLS with a leaf minted for the CONNECT host and hand the
 * decrypted connection to the proxy's HTTP server (marked with its CONNECT
 * target), where routes and policies apply. A client that offers only h2,
 * or does not speak TLS, is tunnelled instead; one that refuses the leaf
 * is counted and logged.
 */
import type { Server } from 'node:http';
import type net from 'node:net';
import tls from 'node:tls';
import { Duplex } from 'node:stream';
import type { Runtime } from '../runtime.js';
import { MAX_HELLO_BYTES, peekClientHello } from '../tls/client-hello.js';
import { markIntercepted } from '../tls/interceptor.js';
import type { ServerDeps } from './exchange.js';

/** How long an intercepted client may take to send its ClientHello, and then to finish the handshake. */
const HELLO_TIMEOUT_MS = 10_000;

/**
 * An intercept candidate, already told 200: reads its ClientHello and
 * terminates its TLS when it offers HTTP/1.1 (undefined: handed to the
 * HTTP server, or the client left); else returns the bytes read so far, to
 * be tunnelled without policies.
 */
export async function interceptOrNot(
  socket: Duplex,
  head: Buffer,
  target: { host: string; port: number },
  interceptor: NonNullable<Runtime['interceptor']>,
  server: Server,
  deps: ServerDeps,
  requestId: string,
): Promise<Buffer | undefined> {
  const { host } = target;
  const hello = await readHello(socket, head);
  if (!hello) return undefined; // the client left, or never spoke
  if (hello.peek.kind === 'hello' && (hello.peek.alpn.length === 0 || hello.peek.alpn.includes('http/1.1'))) {
    let context: tls.SecureContext;
    try {
      context = await interceptor.contextFor(host);
    } catch (error) {
      deps.logger.error(
        { requestId, host, err: (error as Error).message },
        `cannot mint a certificate for ${host}: the intercepted connection is closed`,
      );
      socket.destroy();
      return undefined;
    }
    if (!socket.destroyed) terminate(socket, hello.data, context, target, server, deps, requestId);
    return undefined;
  }
  deps.logger.warn(
    { requestId, host, alpn: hello.peek.kind === 'hello' ? hello.peek.alpn : undefined },
    hello.peek.kind === 'hello'
      ? `client offered only ${hello.peek.alpn.join(', ')} for ${host}: tunnelled without policies (interception serves HTTP/1.1); leave ${host} out of intercept.hosts, or let the client use HTTP/1.1`
      : `client did not start TLS to ${host}: tunnelled without policies`,
  );
  return hello.data;
}

/**
 * Reads the client's first bytes until its ClientHello is complete (or clearly not one); undefined if the client
 * leaves or stays silent.
 */
function readHello(
  socket: Duplex,
  head: Buffer,
): Promise<{ data: Buffer; peek: ReturnType<typeof peekClientHello> } | undefined> {
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
      if (peek.kind !== 'partial' || data.length >= MAX_HELLO_BYTES)
        done({ data, peek: peek.kind === 'partial' ? { kind: 'not-tls' } : peek });
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

/**
 * Terminates the client's TLS with the leaf for its CONNECT host and hands the decrypted connection to the HTTP
 * server.
 */
function terminate(
  socket: Duplex,
  hello: Buffer,
  context: tls.SecureContext,
  target: { host: string; port: number },
  server: Server,
  deps: ServerDeps,
  requestId: string,
): void {
  const { metrics, logger } = deps;
  const secure = new tls.TLSSocket(replaying(socket, hello), {
    isServer: true,
    secureContext: context,
    ALPNProtocols: ['http/1.1'],
  });
  // The HTTP server logs and forwards the client's address.
  Object.defineProperty(secure, 'remoteAddress', { value: (socket as net.Socket).remoteAddress });
  Object.defineProperty(secure, 'remotePort', { value: (socket as net.Socket).remotePort });
  markIntercepted(secure, target);
  let settled = false;
  // A client that sends its ClientHello and then nothing must not hold the connection.
  const handshake = setTimeout(
    () => secure.destroy(new Error(`no TLS handshake within ${HELLO_TIMEOUT_MS} ms`)),
    HELLO_TIMEOUT_MS,
  );
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
