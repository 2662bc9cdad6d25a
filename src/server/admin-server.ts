/**
 * The admin port (SPEC §2, §7): `/metrics`, `/healthz`, `/readyz`,
 * `/config` (secrets redacted), `/status`, the error journal at `/errors`
 * and the routes' golden signals at `/stats` (SPEC §12), and the dashboard
 * at `/`. Who may read which is decided first (SPEC §19.1, admin-access.ts).
 */
import { randomUUID } from 'node:crypto';
import http from 'node:http';

import type { Metrics } from '../observe/metrics.js';
import { redactedConfig } from '../observe/redact.js';

import type { ErrorJournal } from '../observe/error-journal.js';
import type { TrafficReport } from '../observe/traffic.js';
import { BreakwaterError } from '../errors/breakwater-error.js';
import { renderProblem } from '../errors/problem.js';
import type { Logger } from '../observe/logger.js';
import { adminToken, cookieFor, decideAdmin, type AdminDecision } from './admin-access.js';
import { DASHBOARD_CSP, DASHBOARD_HTML } from './dashboard.js';
import { quotaRows, statusOf, type AdminStatusSource } from './admin-status.js';

export interface AdminServerOptions {
  readonly host: string;
  readonly port: number;
  readonly metrics: Metrics;
  /** True once the config is loaded and the proxy port is bound; false while draining. */
  readonly ready: () => boolean;
  /** What /config, /status and the dashboard show. */
  readonly status?: () => AdminStatusSource;
  /** `GET /errors` (SPEC §12). */
  readonly journal?: ErrorJournal;
  /** `GET /stats`: the routes' golden signals (SPEC §12's dashboard table, `breakwater stat`). */
  readonly traffic?: () => TrafficReport;
  /** The admin token now (SPEC §19.1; a reload may rotate it); null: loopback peers only. */
  readonly token?: () => string | null;
  /** Refusals are logged at info, with the peer and the path (never a token). */
  readonly logger?: Logger;
}

export interface AdminServer {
  readonly server: http.Server;
  /** The bound port (useful when the config asked for port 0). */
  readonly port: number;
  close(): Promise<void>;
}

function json(res: http.ServerResponse, value: unknown, head: boolean): void {
  const body = JSON.stringify(value, null, 2);
  res.writeHead(200, {
    'content-type': 'application/json',
    'cache-control': 'no-store',
    'content-length': Buffer.byteLength(body),
  });
  res.end(head ? undefined : body);
}

/** `GET /errors?route=&code=&limit=` (SPEC §12); a limit that is not a positive integer is refused with 400. */
function errors(res: http.ServerResponse, journal: ErrorJournal, query: URLSearchParams, head: boolean): void {
  const limit = query.get('limit');
  if (limit !== null && !/^[1-9][0-9]{0,5}$/.test(limit)) {
    text(res, 400, `limit must be a positive integer, not "${limit.slice(0, 40)}"\n`, head);
    return;
  }
  const filter = {
    route: query.get('route') ?? undefined,
    code: query.get('code') ?? undefined,
    limit: limit === null ? undefined : Number(limit),
  };
  json(
    res,
    { size: journal.size, recorded: journal.recorded, skipped: journal.skipped, errors: journal.list(filter) },
    head,
  );
}

function text(res: http.ServerResponse, status: number, body: string, head: boolean): void {
  res.writeHead(status, {
    'content-type': 'text/plain; charset=utf-8',
    'cache-control': 'no-store',
    'content-length': Buffer.byteLength(body),
  });
  res.end(head ? undefined : body);
}

/** Answers an admitted admin request. */
function serve(
  options: AdminServerOptions,
  req: http.IncomingMessage,
  res: http.ServerResponse,
  path: string,
  search: string | undefined,
  head: boolean,
): void {
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
          res.writeHead(200, {
            'content-type': contentType,
            'cache-control': 'no-store',
            'content-length': Buffer.byteLength(body),
          });
          res.end(head ? undefined : body);
        },
        (error: unknown) => text(res, 500, `metrics failed: ${(error as Error).message}\n`, head),
      );
      return;
    }
    case '/config':
    case '/status': {
      const source = options.status?.();
      if (!source) {
        text(res, 404, 'not found\n', head);
        return;
      }
      json(res, path === '/config' ? redactedConfig(source.loaded) : statusOf(source, !options.ready()), head);
      return;
    }
    case '/errors':
      if (options.journal) errors(res, options.journal, new URLSearchParams(search), head);
      else text(res, 404, 'not found\n', head);
      return;
    case '/stats':
      if (options.traffic) {
        const source = options.status?.();
        json(res, source ? { ...options.traffic(), quotas: quotaRows(source) } : options.traffic(), head);
      } else text(res, 404, 'not found\n', head);
      return;
    case '/':
      res.writeHead(200, {
        'content-type': 'text/html; charset=utf-8',
        'cache-control': 'no-store',
        'content-security-policy': DASHBOARD_CSP,
        'content-length': Buffer.byteLength(DASHBOARD_HTML),
      });
      res.end(head ? undefined : DASHBOARD_HTML);
      return;
    default:
      text(res, 404, 'not found\n', head);
  }
}

/**
 * A refused admin request (SPEC §19.1): the §5 body and nothing of what was
 * asked; not a proxy request, so not counted in breakwater_errors_total nor
 * journaled; logged at info with the peer and the path.
 */
function refuseAdmin(
  req: http.IncomingMessage,
  res: http.ServerResponse,
  path: string,
  decision: AdminDecision & { admitted: false },
  logger: Logger | undefined,
): void {
  const rendered = renderProblem(decision.error, {
    instance: path,
    route: null,
    upstream: null,
    target: null,
    attempts: 0,
    requestId: randomUUID(),
  });
  logger?.info(
    { peer: req.socket.remoteAddress, method: req.method, path, code: decision.error.code },
    'admin request refused',
  );
  res.writeHead(rendered.status, { ...rendered.headers, ...decision.headers, 'cache-control': 'no-store' });
  res.end(req.method === 'HEAD' ? undefined : rendered.body);
}

/** `GET /?token=`: the right token sets the dashboard's cookie and goes to `/`; a wrong one is 401, no cookie. */
function tokenLogin(
  req: http.IncomingMessage,
  res: http.ServerResponse,
  given: string,
  token: ReturnType<typeof adminToken>,
  logger: Logger | undefined,
): void {
  const cookie = cookieFor(given, token);
  if (cookie === undefined) {
    const error = new BreakwaterError('ADMIN_UNAUTHORIZED', 'The admin token given is not the configured one.');
    refuseAdmin(
      req,
      res,
      '/',
      { admitted: false, error, headers: { 'www-authenticate': 'Bearer realm="breakwater", error="invalid_token"' } },
      logger,
    );
    return;
  }
  res.writeHead(303, { location: '/', 'set-cookie': cookie, 'cache-control': 'no-store', 'content-length': 0 });
  res.end();
}

export async function startAdminServer(options: AdminServerOptions): Promise<AdminServer> {
  const server = http.createServer((req, res) => {
    const [path, search] = (req.url ?? '/').split('?', 2) as [string, string | undefined];
    const head = req.method === 'HEAD';
    res.setHeader('x-content-type-options', 'nosniff');
    const token = adminToken(options.token?.() ?? null);
    const given =
      path === '/' && req.method === 'GET' && token !== null && search !== undefined
        ? new URLSearchParams(search).get('token')
        : null;
    if (given !== null) return tokenLogin(req, res, given, token, options.logger);
    const decision = decideAdmin(req, path, token);
    if (!decision.admitted) return refuseAdmin(req, res, path, decision, options.logger);
    try {
      serve(options, req, res, path, search, head);
    } catch (error) {
      // A fault behind one admin page answers 500; it never takes the proxy down with it.
      options.logger?.error({ err: error, path }, 'admin request failed');
      if (!res.headersSent) text(res, 500, 'internal error\n', head);
      else res.destroy();
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
