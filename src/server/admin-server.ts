/**
 * The admin port (SPEC §2, §7). For now it answers `/healthz`; `/readyz`,
 * `/metrics`, `/config`, `/status` and the dashboard come with the proxy.
 */
import http from 'node:http';

export interface AdminServerOptions {
  readonly host: string;
  readonly port: number;
}

export interface AdminServer {
  readonly server: http.Server;
  /** The bound port (useful when the config asked for port 0). */
  readonly port: number;
  close(): Promise<void>;
}

function handle(req: http.IncomingMessage, res: http.ServerResponse): void {
  const path = (req.url ?? '/').split('?')[0];
  if (path === '/healthz' && (req.method === 'GET' || req.method === 'HEAD')) {
    res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' });
    res.end(req.method === 'HEAD' ? undefined : 'ok\n');
    return;
  }
  res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' });
  res.end('not found\n');
}

export async function startAdminServer(options: AdminServerOptions): Promise<AdminServer> {
  const server = http.createServer(handle);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : options.port;
  return {
    server,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
