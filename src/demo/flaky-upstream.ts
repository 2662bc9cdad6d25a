/**
 * A seeded flaky upstream with the resilience benchmark's pattern, for
 * `breakwater demo` and the do-no-harm tests. Attempt n of client request i
 * (its `X-Request-Id: <anything>:<i>`) draws its fate from a hash of (seed,
 * i, n), so the same request meets the same fate whoever sends it, and a
 * retry gets a fresh draw: 503, 429 with `Retry-After`, a slow 200, a
 * connection reset, else a 200 at once. On top, a periodic outage resets
 * every request for `outage.lengthMs` of every `outage.periodMs` (counted
 * from `start()`), and `down()`/`up()` close and reopen the listener on the
 * same port (connections refused: a hard outage).
 */
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { performance } from 'node:perf_hooks';

export interface FlakyProfile {
  readonly seed: number;
  /** Probabilities of each fate per attempt; the rest is 200 at once. */
  readonly p503: number;
  readonly p429: number;
  /** A 429 that is OpenAI's `insufficient_quota` (the account has no credit): no retry can help. */
  readonly pQuota?: number;
  readonly pSlow: number;
  readonly pReset: number;
  readonly slowMs: number;
  /** `Retry-After` of a 429, seconds. */
  readonly retryAfterSeconds: number;
  /** Every request is reset from `atMs` to `atMs + lengthMs` of every `periodMs`; null: never. */
  readonly outage: { readonly periodMs: number; readonly atMs: number; readonly lengthMs: number } | null;
}

/**
 * The resilience benchmark's scenario A: the same seed and odds as the benchmark's own flaky upstream, so the
 * demo shows what the benchmark measures.
 */
export const BENCH_PROFILE: FlakyProfile = {
  seed: 42,
  p503: 0.2,
  p429: 0.07,
  pSlow: 0.06,
  pReset: 0.05,
  slowMs: 1500,
  retryAfterSeconds: 1,
  outage: { periodMs: 15_000, atMs: 5_000, lengthMs: 2_000 },
};

/** Always 200 at once (a healthy upstream, for hard-outage runs). */
export const HEALTHY_PROFILE: FlakyProfile = { ...BENCH_PROFILE, p503: 0, p429: 0, pSlow: 0, pReset: 0, outage: null };

/** OpenAI's answer for an account with no credit left. */
const QUOTA_BODY = JSON.stringify({
  error: {
    message: 'You exceeded your current quota, please check your plan and billing details.',
    type: 'insufficient_quota',
    param: null,
    code: 'insufficient_quota',
  },
});

export type Fate = 'ok' | 'slow' | '503' | '429' | 'quota' | 'reset' | 'outage';

export interface FlakyUpstream {
  readonly url: string;
  /** Attempts by fate since `start()`. */
  readonly fates: Record<Fate, number>;
  /** Attempts that reached the HTTP layer since `start()`. */
  attempts(): number;
  /** TCP connections accepted since `start()`. */
  connections(): number;
  /** Starts the outage clock and clears the counters. */
  start(): void;
  /** Closes the listener and drops every connection: connects are refused until `up()`. */
  down(): Promise<void>;
  up(): Promise<void>;
  close(): Promise<void>;
}

/** FNV-1a over the text, then an avalanche: uniform in [0, 1) (the benchmark's draw). */
export function draw(...parts: readonly (string | number)[]): number {
  let h = 0x811c9dc5;
  const text = parts.join(':');
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return (h >>> 0) / 4294967296;
}

/**
 * The fate of one attempt: `elapsed` is the time since `start()` (null before it); `seen` counts attempts per
 * request id.
 */
function fateOf(profile: FlakyProfile, seen: Map<string, number>, elapsed: number | null, id: string): Fate {
  const { outage } = profile;
  if (elapsed !== null && outage) {
    const since = elapsed % outage.periodMs;
    if (since >= outage.atMs && since < outage.atMs + outage.lengthMs) return 'outage';
  }
  const attempt = (seen.get(id) ?? 0) + 1;
  seen.set(id, attempt);
  const index = id.slice(id.lastIndexOf(':') + 1);
  let roll = draw(profile.seed, index, attempt);
  if ((roll -= profile.p503) < 0) return '503';
  if ((roll -= profile.p429) < 0) return '429';
  if ((roll -= profile.pQuota ?? 0) < 0) return 'quota';
  if ((roll -= profile.pSlow) < 0) return 'slow';
  if ((roll -= profile.pReset) < 0) return 'reset';
  return 'ok';
}

/** Answers an attempt as its fate says; a slow answer's timer goes into `timers`. */
function answer(
  fate: Fate,
  req: http.IncomingMessage,
  res: http.ServerResponse,
  profile: FlakyProfile,
  timers: Set<NodeJS.Timeout>,
): void {
  const send = (status: number, headers: http.OutgoingHttpHeaders, body: string) => {
    if (!res.destroyed) res.writeHead(status, { 'content-length': Buffer.byteLength(body), ...headers }).end(body);
  };
  switch (fate) {
    case 'outage':
    case 'reset':
      req.socket.resetAndDestroy();
      return;
    case '503':
      send(503, { 'content-type': 'text/plain' }, 'overloaded\n');
      return;
    case 'quota':
      send(429, { 'content-type': 'application/json' }, QUOTA_BODY);
      return;
    case '429':
      send(429, { 'content-type': 'text/plain', 'retry-after': String(profile.retryAfterSeconds) }, 'slow down\n');
      return;
    case 'slow': {
      const timer = setTimeout(() => {
        timers.delete(timer);
        send(200, { 'content-type': 'application/json' }, '{"ok":true,"slow":true}');
      }, profile.slowMs);
      timers.add(timer);
      return;
    }
    default:
      send(200, { 'content-type': 'application/json' }, '{"ok":true}');
  }
}

export async function startFlakyUpstream(profile: FlakyProfile): Promise<FlakyUpstream> {
  let t0 = 0;
  let seen = new Map<string, number>();
  let accepted = 0;
  const fates: Record<Fate, number> = { ok: 0, slow: 0, '503': 0, '429': 0, quota: 0, reset: 0, outage: 0 };
  const sockets = new Set<Socket>();
  const timers = new Set<NodeJS.Timeout>();

  const server = http.createServer((req, res) => {
    req.resume();
    const fate = fateOf(profile, seen, t0 ? performance.now() - t0 : null, String(req.headers['x-request-id'] ?? ''));
    fates[fate]++;
    answer(fate, req, res, profile, timers);
  });
  server.keepAliveTimeout = 30_000;
  server.on('connection', (socket: Socket) => {
    if (t0) accepted++;
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const dropAll = () => {
    for (const socket of sockets) socket.destroy();
    for (const timer of timers) clearTimeout(timer);
    timers.clear();
  };

  return {
    url: `http://127.0.0.1:${port}`,
    fates,
    attempts: () => Object.values(fates).reduce((sum, n) => sum + n, 0),
    connections: () => accepted,
    start() {
      t0 = performance.now();
      seen = new Map();
      accepted = 0;
      for (const fate of Object.keys(fates) as Fate[]) fates[fate] = 0;
    },
    down: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        dropAll();
      }),
    up: () => new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve)),
    close: () =>
      new Promise<void>((resolve) => {
        if (!server.listening) {
          dropAll();
          resolve();
          return;
        }
        server.close(() => resolve());
        dropAll();
      }),
  };
}
