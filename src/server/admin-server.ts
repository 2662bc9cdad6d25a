/**
 * The admin port (SPEC §2, §7): `/metrics`, `/healthz`, `/readyz`.
 * `/config`, `/status` and the dashboard come with the operations issue.
 */
import http from 'node:http';
import type { Metrics } from '../observe/metrics.js';

export interface AdminServerOptions {
  readonly host: string;
  readonly port: number;
  readonly metrics: Metrics;
  /** True once the config is loaded and the proxy port is bound; false while draining. */
  readonly ready: () => boolean;
}

export interface AdminServer {
  readonly server: http.Server;
  /** The bound port (useful when the config asked for port 0). */
  readonly port: number;
  close(): Promise<void>;
}

function text(res: http.ServerResponse, status: number, body: string, head: boolean): void {
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store', 'content-length': Buffer.byteLength(body) });
  res.end(head ? undefined : body);
}

export async function startAdminServer(options: AdminServerOptions): Promise<AdminServer> {
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const head = req.method === 'HEAD';
    if (req.method !== 'GET' && !head) {
      res.setHeader('allow', 'GET, HEAD');
      text(res, 405, 'method not allowed\n', head);
      return;
    }
    switch (path) {
      case '/healthz':
        text(res, 200, 'ok\n', head);
        return;
      case '/readyz':
        if (options.ready()) text(res, 200, 'ready\n', head);
        else text(res, 503, 'not ready\n', head);
        return;
      case '/metrics': {
        const openMetrics = (req.headers.accept ?? '').includes('application/openmetrics-text');
        options.metrics.render(openMetrics).then(
          ({ contentType, body }) => {
            res.writeHead(200, { 'content-type': contentType, 'cache-control': 'no-store', 'content-length': Buffer.byteLength(body) });
            res.end(head ? undefined : body);
          },
          (error: unknown) => text(res, 500, `metrics failed: ${(error as Error).message}\n`, head),
        );
        return;
      }
      default:
        text(res, 404, 'not found\n', head);
    }
  });
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
