/**
 * `breakwater demo`: a built-in flaky upstream (503 bursts, 429 with
 * Retry-After, slow answers, a short outage) and Breakwater in front of it,
 * the same traffic sent directly and through Breakwater, and a side-by-side
 * table of what the app saw. Offline, under 30 s, leaves nothing running.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { startApp } from '../app.js';
import { parseConfig, formatProblem } from '../config/index.js';
import { seededRandom } from './prng.js';

const REQUESTS = 300;
const CONCURRENCY = 10;

type Behaviour = 'ok' | '503' | '429' | 'slow' | 'outage';


interface FlakyUpstream {
  readonly url: string;
  readonly served: Record<Behaviour, number>;
  reset(): void;
  close(): Promise<void>;
}

async function startFlakyUpstream(): Promise<FlakyUpstream> {
  let random = seededRandom(7);
  let count = 0;
  const served: Record<Behaviour, number> = { ok: 0, '503': 0, '429': 0, slow: 0, outage: 0 };
  const server = http.createServer((req, res) => {
    count++;
    req.resume();
    const roll = random();
    // A short outage: connections are cut for a stretch of requests.
    const behaviour: Behaviour = count % 150 >= 120 && count % 150 < 128 ? 'outage' : roll < 0.2 ? '503' : roll < 0.27 ? '429' : roll < 0.33 ? 'slow' : 'ok';
    served[behaviour]++;
    switch (behaviour) {
      case 'outage':
        req.socket.destroy();
        return;
      case '503':
        res.writeHead(503, { 'content-type': 'text/plain' }).end('overloaded');
        return;
      case '429':
        res.writeHead(429, { 'content-type': 'application/json', 'retry-after': '1' }).end('{"error":"rate limited"}');
        return;
      case 'slow':
        setTimeout(() => res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true,"slow":true}'), 1500).unref();
        return;
      default:
        res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}');
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    served,
    reset() {
      random = seededRandom(7);
      count = 0;
      for (const key of Object.keys(served) as Behaviour[]) served[key] = 0;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

interface Outcome {
  readonly ok: boolean;
  readonly label: string;
  readonly ms: number;
}

/** What the app sees: REQUESTS GETs, CONCURRENCY at a time, each with a 3 s client timeout. */
async function drive(url: string): Promise<Outcome[]> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: CONCURRENCY });
  const outcomes: Outcome[] = [];
  let next = 0;
  const one = (): Promise<void> =>
    new Promise((resolve) => {
      const started = performance.now();
      const done = (ok: boolean, label: string) => {
        outcomes.push({ ok, label, ms: performance.now() - started });
        resolve();
      };
      const req = http.get(`${url}/demo/items`, { agent, timeout: 3000 }, (res) => {
        res.resume();
        res.on('end', () => {
          const status = res.statusCode ?? 0;
          const code = res.headers['x-breakwater-error'];
          done(status < 400, code ? `${status} ${code}` : String(status));
        });
        res.on('error', () => done(false, 'connection reset'));
      });
      req.on('timeout', () => req.destroy(new Error('client timeout')));
      req.on('error', (error) => done(false, error.message === 'client timeout' ? 'client timeout (3 s)' : 'connection reset'));
    });
  const workers = Array.from({ length: CONCURRENCY }, async () => {
    while (next < REQUESTS) {
      next++;
      await one();
    }
  });
  await Promise.all(workers);
  agent.destroy();
  return outcomes;
}

function percentile(values: number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0;
}

function summary(outcomes: Outcome[]): { success: number; p50: number; p99: number; errors: Map<string, number> } {
  const errors = new Map<string, number>();
  for (const outcome of outcomes) if (!outcome.ok) errors.set(outcome.label, (errors.get(outcome.label) ?? 0) + 1);
  const ms = outcomes.map((outcome) => outcome.ms);
  return { success: outcomes.filter((outcome) => outcome.ok).length / outcomes.length, p50: percentile(ms, 0.5), p99: percentile(ms, 0.99), errors };
}

export async function runDemo(write: (text: string) => void = (text) => process.stdout.write(text)): Promise<number> {
  const upstream = await startFlakyUpstream();
  const result = parseConfig(
    `version: 1
listen: { host: 127.0.0.1, port: 0 }
admin: { host: 127.0.0.1, port: 0 }
logging: { level: warn, accessLog: false }
upstreams:
  flaky:
    url: ${upstream.url}
    circuitBreaker: { failureRate: 90, minimumRequests: 20, window: 5s, openFor: 1s }
routes:
  - name: demo
    match: { pathPrefix: /demo }
    upstream: flaky
    timeouts: { connect: 500ms, perTry: 500ms, total: 2800ms }
    retry:
      maxRetries: 4
      retryOn: [5xx, reset, timeout, connect-failure, "429"]
      backoff: { base: 20ms, max: 200ms }
      retryAfter: { honor: true, max: 2s }
      budget: { ratio: 1, minPerSecond: 50 }
`,
    'demo.yaml',
    { env: {} },
  );
  if (!result.ok) throw new Error(result.problems.map(formatProblem).join('\n'));
  const silent = pino({ level: 'warn' }, new Writable({ write: (_chunk, _encoding, callback) => callback() }));
  const app = await startApp(result.loaded, silent);
  try {
    write(`Breakwater demo: ${REQUESTS} requests, ${CONCURRENCY} at a time, to an upstream that answers 503 (20%), 429 with Retry-After (7%), slowly (6%, 1.5 s) and has a short outage.\n\n`);
    upstream.reset();
    const direct = summary(await drive(upstream.url));
    const directServed = { ...upstream.served };
    upstream.reset();
    const through = summary(await drive(`http://127.0.0.1:${app.port}`));
    const throughServed = { ...upstream.served };

    const pct = (value: number) => `${(value * 100).toFixed(1)}%`;
    const errors = (map: Map<string, number>) => [...map].sort((a, b) => b[1] - a[1]).map(([label, n]) => `${label} x${n}`).join(', ') || 'none';
    const served = (s: Record<Behaviour, number>) => `${s.ok} ok, ${s['503']} 503, ${s['429']} 429, ${s.slow} slow, ${s.outage} cut`;
    const rows = [
      ['', 'app -> upstream', 'app -> Breakwater -> upstream'],
      ['success rate', pct(direct.success), pct(through.success)],
      ['p50 latency', `${direct.p50.toFixed(0)} ms`, `${through.p50.toFixed(0)} ms`],
      ['p99 latency', `${direct.p99.toFixed(0)} ms`, `${through.p99.toFixed(0)} ms`],
      ['errors the app saw', errors(direct.errors), errors(through.errors)],
      ['what the upstream did', served(directServed), served(throughServed)],
    ];
    const widths = [0, 1, 2].map((column) => Math.max(...rows.map((row) => row[column]!.length)));
    for (const [index, row] of rows.entries()) {
      write(`| ${row.map((cell, column) => cell.padEnd(widths[column]!)).join(' | ')} |\n`);
      if (index === 0) write(`| ${widths.map((width) => '-'.repeat(width)).join(' | ')} |\n`);
    }
    write(`\nBreakwater retried 503s, 429s (after their Retry-After), resets and slow answers, within a ${'2.8 s'} deadline and a retry budget.\n`);
    return through.success > direct.success ? 0 : 1;
  } finally {
    await app.close(100);
    await upstream.close();
  }
}
