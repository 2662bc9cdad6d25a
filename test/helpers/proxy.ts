/**
 * Starts Breakwater in the test's process on 127.0.0.1:0 (proxy and admin)
 * from a YAML text, with a private metrics registry and the JSON log lines
 * captured, and a small HTTP client that reads whole responses.
 */
import { writeFileSync } from 'node:fs';
import http from 'node:http';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { startApp, type App } from '../../src/app.js';
import { formatProblem, parseConfig } from '../../src/config/index.js';
import { createMetrics, type Metrics } from '../../src/observe/metrics.js';
import type { Lookup } from '../../src/router/target-check.js';
import type { Clock } from '../../src/lib/clock.js';
import type { TrafficOptions } from '../../src/observe/traffic.js';

export interface TestProxy {
  readonly app: App;
  readonly url: string;
  readonly adminUrl: string;
  readonly metrics: Metrics;
  /** Parsed JSON log lines so far. */
  logs(): Record<string, unknown>[];
  /** Access-log lines so far. */
  accessLogs(): Record<string, unknown>[];
  /** Raw log text (to check that something is never logged). */
  rawLogs(): string;
  close(): Promise<void>;
}

/** `file`: write the config there first, so that `app.reload()` reads it again (edit it to change the config). */
/** `clock`: the app's clock (helpers/clock.ts: sleeps that pass at once); the system's by default. */
/** `traffic`: the dashboard's sampling (default 10 s buckets over 15 minutes). */
/** `listen`, `admin`: more keys of those maps (YAML flow entries, like `serverNames: [a.internal]`); `adminHost`: where the admin port binds. */
export async function startProxy(
  yaml: string,
  options: {
    env?: NodeJS.ProcessEnv;
    lookup?: Lookup;
    file?: string;
    clock?: Clock;
    traffic?: TrafficOptions;
    listen?: string;
    admin?: string;
    adminHost?: string;
  } = {},
): Promise<TestProxy> {
  const text = `listen: { host: 127.0.0.1, port: 0${options.listen ? `, ${options.listen}` : ''} }\nadmin: { host: ${options.adminHost ?? '127.0.0.1'}, port: 0${options.admin ? `, ${options.admin}` : ''} }\n${yaml}`;
  if (options.file) writeFileSync(options.file, text);
  const result = parseConfig(text, options.file ?? 'test.yaml', { env: options.env ?? {} });
  if (!result.ok) throw new Error(`test config is invalid:\n${result.problems.map(formatProblem).join('\n')}`);
  let captured = '';
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      captured += chunk.toString();
      callback();
    },
  });
  const logger = pino(
    {
      level: 'info',
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    sink,
  );
  const metrics = createMetrics({ defaultMetrics: false });
  const app = await startApp(result.loaded, logger, {
    metrics,
    lookup: options.lookup,
    clock: options.clock,
    traffic: options.traffic,
  });
  const logs = () =>
    captured
      .split('\n')
      .filter((line) => line.trim() !== '')
      .map((line) => JSON.parse(line) as Record<string, unknown>);
  return {
    app,
    url: `http://127.0.0.1:${app.port}`,
    adminUrl: `http://127.0.0.1:${app.admin.port}`,
    metrics,
    logs,
    accessLogs: () => logs().filter((line) => line.msg === 'access'),
    rawLogs: () => captured,
    close: () => app.close(200),
  };
}

export interface TestResponse {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: Buffer;
  readonly text: string;
  json<T = Record<string, unknown>>(): T;
}

export interface TestRequest {
  readonly method?: string;
  readonly headers?: http.OutgoingHttpHeaders;
  readonly body?: string | Buffer;
  /** Send the body in chunked encoding (no Content-Length). */
  readonly chunked?: boolean;
}

/** One request on a fresh connection; the whole response body read. Rejects if the response aborts. */
export function request(url: string, options: TestRequest = {}): Promise<TestResponse> {
  return new Promise((resolve, reject) => {
    const headers: http.OutgoingHttpHeaders = { ...options.headers };
    if (options.body !== undefined && !options.chunked && headers['content-length'] === undefined) {
      headers['content-length'] = Buffer.byteLength(options.body);
    }
    if (options.chunked) headers['transfer-encoding'] = 'chunked';
    const req = http.request(url, { method: options.method ?? 'GET', headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('error', reject);
      res.on('aborted', () => reject(new Error('response aborted')));
      res.on('end', () => {
        const body = Buffer.concat(chunks);
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          body,
          text: body.toString(),
          json: <T>() => JSON.parse(body.toString()) as T,
        });
      });
    });
    req.on('error', reject);
    if (options.body !== undefined && options.chunked) {
      // In pieces, so that node cannot turn it into a Content-Length body.
      const body = Buffer.from(options.body);
      for (let i = 0; i < body.length; i += 16384) req.write(body.subarray(i, i + 16384));
      req.end();
    } else if (options.body !== undefined) req.end(options.body);
    else req.end();
  });
}

/** The current value of a counter or gauge series (0 when the series does not exist). */
export async function metricValue(metrics: Metrics, name: string, labels: Record<string, string>): Promise<number> {
  const metric = metrics.registry.getSingleMetric(name);
  if (!metric) throw new Error(`no metric ${name}`);
  const { values } = await metric.get();
  const match = values.find(
    (value) =>
      !('metricName' in value && value.metricName !== undefined && value.metricName !== name) &&
      Object.entries(labels).every(([key, want]) => String(value.labels[key]) === want) &&
      Object.keys(value.labels).length === Object.keys(labels).length,
  );
  return match?.value ?? 0;
}
