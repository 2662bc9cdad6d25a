/**
 * WebSocket upgrades (server/websocket.ts) go through http-proxy-3: an
 * upgraded connection is a byte pipe after the handshake, and undici's
 * upgrade path would save nothing there. Loaded on the first upgrade, so a
 * process that never proxies a WebSocket never loads it.
 */
import { createRequire } from 'node:module';
import type { ProxyServer } from 'http-proxy-3';

let proxy: ProxyServer | undefined;

/** The process's one http-proxy-3 server for upgrades; it holds no per-upstream state. */
export function upgradeProxy(): ProxyServer {
  if (proxy) return proxy;
  const { ProxyServer: Server } = createRequire(import.meta.url)('http-proxy-3') as typeof import('http-proxy-3');
  // Errors always go to the per-call callback, but an 'error' listener must exist or http-proxy throws.
  const created = new Server({ changeOrigin: true, xfwd: false, prependPath: true });
  created.on('error', () => {});
  created.on('econnreset', () => {});
  proxy = created;
  return created;
}
