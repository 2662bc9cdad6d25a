/**
 * The proxy port (SPEC §2, §4): the HTTP server and its four entries,
 * requests (request.ts), WebSocket upgrades (websocket.ts), CONNECT
 * (connect.ts) and requests node's parser refuses (here), each answered
 * through its Exchange (exchange.ts: the one place problems are rendered
 * and exchanges observed); and the drain on shutdown.
 */
import { randomUUID } from 'node:crypto';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { BreakwaterError } from '../errors/breakwater-error.js';
import type { ErrorCode } from '../errors/catalog.js';
import { handleConnect } from './connect.js';
import { CLIENT_CLOSED_STATUS, Exchange, type ServerDeps } from './exchange.js';
import { handleRequest } from './request.js';
import { handleUpgrade } from './websocket.js';

export type ProxyServerDeps = ServerDeps;

export interface ProxyServer {
  readonly server: http.Server;
  listen(host: string, port: number): Promise<number>;
  /**
   * Drains: stops accepting, closes idle keep-alive connections, answers
   * requests that still arrive PROXY_DRAINING, closes busy connections after
   * their current response, and cuts whatever is left after `graceMs`.
   */
  close(graceMs: number): Promise<void>;
  /** True once close() was called. */
  draining(): boolean;
}

export { CLIENT_CLOSED_STATUS };

/**
 * A request node's parser refused (SPEC §4): BAD_REQUEST or HEADERS_TOO_LARGE on the raw socket, counted under
 * route "".
 */
function refuseUnparsed(error: NodeJS.ErrnoException, socket: Duplex, deps: ProxyServerDeps): void {
  if (error.code === 'ECONNRESET' || !socket.writable) {
    socket.destroy();
    return;
  }
  const code: ErrorCode = error.code === 'HPE_HEADER_OVERFLOW' ? 'HEADERS_TOO_LARGE' : 'BAD_REQUEST';
  const runtime = deps.runtime();
  const detail =
    code === 'HEADERS_TOO_LARGE'
      ? `The request headers are larger than limits.maxHeaderSize (${runtime.config.limits.maxHeaderSize} bytes).`
      : `The request is not valid HTTP: ${error.message.replace(/^Parse Error: /, '')}.`;
  const exchange = new Exchange(deps, runtime, {
    requestId: randomUUID(),
    method: '',
    path: '',
    host: '',
    startedAt: deps.now(),
    attempts: 0,
    target: null,
    flags: new Set(),
  });
  exchange.finish(exchange.refuse(new BreakwaterError(code, detail), socket));
}

export function createProxyServer(deps: ProxyServerDeps): ProxyServer {
  const initialConfig = deps.runtime().config;

  let isDraining = false;
  const server = http.createServer({
    maxHeaderSize: initialConfig.limits.maxHeaderSize,
    // Our deadlines own request timing; node's 5-minute request timeout
    // would cut long uploads. Slow headers are still bounded (headersTimeout).
    requestTimeout: 0,
  });

  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    void handleRequest(req, res, deps, isDraining);
  });

  // Requests node's parser refuses never reach 'request': answer them here
  // with the same body, count them under route "", and close.
  server.on('clientError', (error: NodeJS.ErrnoException, socket: Duplex) => refuseUnparsed(error, socket, deps));

  // Upgraded connections leave node's connection tracking: keep them so
  // that close() can end them after the grace period.
  // They count as in flight on their runtime until they close.
  const upgraded = new Set<Duplex>();
  const track =
    (handle: (req: IncomingMessage, socket: Duplex, head: Buffer) => void) =>
    (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      upgraded.add(socket);
      const runtime = deps.runtime();
      runtime.enter();
      socket.once('close', () => {
        upgraded.delete(socket);
        runtime.leave();
      });
      handle(req, socket, head);
    };
  server.on(
    'upgrade',
    track((req, socket, head) => handleUpgrade(req, socket, head, deps, isDraining)),
  );
  server.on(
    'connect',
    track((req, socket, head) => handleConnect(req, socket, head, deps, server)),
  );

  return {
    server,
    listen: (host, port) =>
      new Promise<number>((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => {
          server.off('error', reject);
          resolve((server.address() as { port: number }).port);
        });
      }),
    draining: () => isDraining,
    close: (graceMs) =>
      new Promise<void>((resolve) => {
        isDraining = true;
        const timer = setTimeout(() => {
          server.closeAllConnections();
          for (const socket of upgraded) socket.destroy();
        }, graceMs);
        server.close(() => {
          clearTimeout(timer);
          resolve();
        });
        server.closeIdleConnections();
      }),
  };
}
