/**
 * Streams that stall (SPEC §16), through a scripted event-stream upstream on
 * real sockets: `timeouts.firstByte` holds an attempt's status and headers
 * until its first event, so a stream silent before it (or sending only
 * keep-alive comments) is retried or failed over and the app sees one whole
 * stream; `timeouts.idle` cuts a stream silent in the middle with one last
 * `event: error`, or aborts any other body; without either key nothing is cut
 * and the headers go to the client as soon as they arrive.
 *
 * Where a test proves that something is not held back, the upstream waits
 * for the client to have received the previous piece before it sends the
 * next (lockstep, bounded): a proxy that held bytes would stall the script,
 * which is then reported, instead of a latency compared against a clock.
 */
import http from 'node:http';
import net from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startFaultUpstream, waitUntil, type Behaviour, type FaultUpstream } from '../fixtures/fault-upstream.js';
import { metricValue, startProxy, type TestProxy } from '../helpers/proxy.js';

/** A piece of a scripted answer: bytes, a pause, a wait for the test, or silence until the client leaves. */
type Step = string | { readonly wait: number } | { readonly until: () => Promise<unknown> } | 'hang';

const EVENT_STREAM = { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' };
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Headers at once (flushed), then the steps in order; the body ends after the last unless it hangs. */
function stream(steps: readonly Step[], headers: http.OutgoingHttpHeaders = EVENT_STREAM): Behaviour {
  return {
    kind: 'custom',
    handle: (_req, res) => {
      res.writeHead(200, headers);
      res.flushHeaders();
      void (async () => {
        for (const step of steps) {
          if (res.destroyed) return;
          if (step === 'hang') return;
          // Written with backpressure, as a server that streams does: a full socket holds the script back.
          if (typeof step === 'string') {
            if (!res.write(step))
              await new Promise((resolve) => (res.once('drain', resolve), res.once('close', resolve)));
          } else if ('wait' in step) await sleep(step.wait);
          else await step.until();
        }
        if (!res.destroyed) res.end();
      })();
    },
  };
}

interface Received {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  /** When the response headers arrived (performance.now()). */
  readonly headersAt: number;
  readonly text: string;
  /** Each chunk as it arrived. */
  readonly chunks: { readonly at: number; readonly text: string }[];
  /** The body ended normally (false: the connection was aborted before its end). */
  readonly complete: boolean;
  readonly endedAt: number;
}

/** One request through the proxy, read to its end or abort; `onChunk` sees the text so far as it grows. */
function fetchStream(
  url: string,
  options: { method?: string; body?: string; onHeaders?: () => void; onChunk?: (text: string) => void } = {},
): Promise<Received> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: options.method ?? 'GET', agent: false }, (res) => {
      const headersAt = performance.now();
      options.onHeaders?.();
      const chunks: { at: number; text: string }[] = [];
      let text = '';
      let done = false;
      const finish = (complete: boolean) => {
        if (done) return;
        done = true;
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          headersAt,
          text,
          chunks,
          complete,
          endedAt: performance.now(),
        });
      };
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        chunks.push({ at: performance.now(), text: chunk });
        text += chunk;
        options.onChunk?.(text);
      });
      res.on('end', () => finish(res.complete));
      res.on('aborted', () => finish(false));
      res.on('error', () => finish(false));
      res.on('close', () => finish(res.complete));
    });
    req.on('error', reject);
    if (options.body !== undefined) req.setHeader('content-type', 'application/json');
    req.end(options.body);
  });
}

/** The events of an SSE text: each event's `data` lines joined, with its `event` name when it has one. */
function events(text: string): { event?: string; data: string }[] {
  return text
    .split(/\r\n\r\n|\n\n|\r\r/)
    .map((block) => block.split(/\r\n|\n|\r/).filter((line) => line !== '' && !line.startsWith(':')))
    .filter((lines) => lines.length > 0)
    .map((lines) => {
      const event = lines
        .find((line) => line.startsWith('event:'))
        ?.slice(6)
        .trim();
      const data = lines
        .filter((line) => line.startsWith('data:'))
        .map((line) => line.slice(5).trimStart())
        .join('\n');
      return event === undefined ? { data } : { event, data };
    });
}

const COMPLETION = ['data: {"n":1}\n\n', 'data: {"n":2}\n\n', 'data: {"n":3}\n\n', 'data: [DONE]\n\n'];

let upstream: FaultUpstream;
let backup: FaultUpstream;
/** What each upstream answers to its n-th request; set per test. */
let script: (n: number) => Behaviour = () => stream(COMPLETION);
let backupScript: (n: number) => Behaviour = () => stream(COMPLETION);
let proxy: TestProxy;

beforeAll(async () => {
  upstream = await startFaultUpstream((n) => script(n));
  backup = await startFaultUpstream((n) => backupScript(n));
  proxy = await startProxy(`version: 1
upstreams:
  llm: { url: "${upstream.url}" }
  fragile: { url: "${upstream.url}", circuitBreaker: { failureRate: 50, minimumRequests: 2, window: 60s, hold: 0s } }
  pair:
    url: "${upstream.url}"
    failover: [{ name: azure, url: "${backup.url}" }]
defaults:
  retry: { maxRetries: 2, retryOn: [timeout, gateway-error, reset], methods: [GET, POST], backoff: { base: 1ms, max: 5ms } }
routes:
  - name: held
    match: { pathPrefix: /held }
    upstream: llm
    timeouts: { firstByte: 400ms, idle: 600ms }
  - name: failover
    match: { pathPrefix: /failover }
    upstream: pair
    timeouts: { firstByte: 400ms }
  - name: plain
    match: { pathPrefix: /plain }
    upstream: llm
  - name: noretry
    match: { pathPrefix: /noretry }
    upstream: llm
    timeouts: { firstByte: 300ms }
    retry: { maxRetries: 0 }
  - name: cut
    match: { pathPrefix: /cut }
    upstream: fragile
    timeouts: { idle: 300ms }
    retry: { maxRetries: 0 }
`);
});

afterEach(() => {
  script = () => stream(COMPLETION);
  backupScript = () => stream(COMPLETION);
});

afterAll(async () => {
  await proxy.close();
  await Promise.all([upstream.close(), backup.close()]);
});

/** Requests the upstream saw since `before`. */
const since = (fixture: FaultUpstream, before: number) => fixture.requests.slice(before);

describe('timeouts.firstByte: a stream silent before its first event is retried unseen', () => {
  it('retries an attempt that sends headers and then nothing; the client gets one whole stream', async () => {
    const before = upstream.requests.length;
    script = (n) => (n === before + 1 ? stream(['hang']) : stream(COMPLETION));
    const res = await fetchStream(`${proxy.url}/held/v1/chat/completions`, { method: 'POST', body: '{"stream":true}' });
    expect(res.status).toBe(200);
    expect(res.complete).toBe(true);
    expect(res.headers['content-type']).toBe('text/event-stream');
    expect(res.headers['x-breakwater-attempts']).toBe('2');
    // Exactly the second attempt's events, none twice.
    expect(res.text).toBe(COMPLETION.join(''));
    // The abandoned attempt's connection was closed by Breakwater, never reused.
    const seen = since(upstream, before);
    expect(seen).toHaveLength(2);
    expect(seen[0]!.closedEarly).toBe(true);
    expect(proxy.accessLogs().at(-1)).toMatchObject({ status: 200, attempts: 2 });
    expect(proxy.accessLogs().at(-1)!.flags).toEqual(expect.arrayContaining(['RETRIED']));
  });

  it('does not count keep-alive comments as the first event: they are held, sent with the event that follows', async () => {
    const before = upstream.requests.length;
    const ping = Array.from({ length: 20 }, () => [': keep-alive\n\n', { wait: 50 }] as Step[]).flat();
    script = (n) =>
      n === before + 1 ? stream([...ping, 'hang']) : stream([': ping\n\n', { wait: 100 }, ...COMPLETION]);
    const res = await fetchStream(`${proxy.url}/held/stream`);
    expect(res.headers['x-breakwater-attempts']).toBe('2');
    expect(res.text).toBe([': ping\n\n', ...COMPLETION].join(''));
    // Nothing of the first attempt (its comments included) reached the client.
    expect(res.text).not.toContain('keep-alive');
    expect(since(upstream, before)[0]!.closedEarly).toBe(true);
  });

  it('counts a first-byte timeout as a timeout attempt and measures the first byte of the one that worked', async () => {
    const before = upstream.requests.length;
    const labels = { route: 'held', upstream: 'llm' };
    const timeouts = await metricValue(proxy.metrics, 'breakwater_upstream_attempts_total', {
      ...labels,
      outcome: 'timeout',
    });
    const firstBytes = await histogramCount(proxy, 'breakwater_upstream_first_byte_seconds', labels);
    script = (n) => (n === before + 1 ? stream(['hang']) : stream(COMPLETION));
    await fetchStream(`${proxy.url}/held/x`);
    expect(
      await metricValue(proxy.metrics, 'breakwater_upstream_attempts_total', { ...labels, outcome: 'timeout' }),
    ).toBe(timeouts + 1);
    // Only the attempt whose body began is observed.
    expect(await histogramCount(proxy, 'breakwater_upstream_first_byte_seconds', labels)).toBe(firstBytes + 1);
  });

  it('without a retry answers 504 UPSTREAM_TIMEOUT naming firstByte', async () => {
    script = () => stream(['hang']);
    const res = await fetchStream(`${proxy.url}/noretry/x`);
    expect(res.status).toBe(504);
    const problem = JSON.parse(res.text) as { code: string; detail: string; attempts: number };
    expect(problem).toMatchObject({ code: 'UPSTREAM_TIMEOUT', attempts: 1 });
    expect(problem.detail).toContain('timeouts.firstByte (300ms)');
    expect(problem.detail).toContain('no event');
  });

  it('bounds the read of an error answer a provider rule decides by firstByte (the per-try timer ended)', async () => {
    // A 429 whose body starts and then stops: the provider rules read 429 bodies.
    script = () => ({
      kind: 'custom',
      handle: (_req, res) => {
        res.writeHead(429, { 'content-type': 'application/json' });
        res.write('{"error": {');
      },
    });
    const started = performance.now();
    const res = await fetchStream(`${proxy.url}/noretry/limited`);
    expect(res.status).toBe(504);
    expect(JSON.parse(res.text)).toMatchObject({ code: 'UPSTREAM_TIMEOUT', attempts: 1 });
    expect(performance.now() - started).toBeLessThan(5000);
  });

  it('counts an event stream padded with more than 64 KiB of comments as begun, not as a first-byte timeout', async () => {
    const padding = `:${' '.repeat(70 * 1024)}\n\n`;
    script = () => stream([padding, { wait: 50 }, ...COMPLETION]);
    const res = await fetchStream(`${proxy.url}/held/padded`);
    expect(res).toMatchObject({ status: 200, complete: true, text: padding + COMPLETION.join('') });
    expect(res.headers['x-breakwater-attempts']).toBe('1');
  });

  it('sends a body that ends before its first event as it is', async () => {
    script = () => stream([': only a comment\n\n']);
    const res = await fetchStream(`${proxy.url}/held/empty`);
    expect(res).toMatchObject({ status: 200, complete: true, text: ': only a comment\n\n' });
    expect(res.headers['x-breakwater-attempts']).toBe('1');
  });

  it('fails a first-byte stall over to the second target', async () => {
    const before = { main: upstream.requests.length, backup: backup.requests.length };
    script = () => stream(['hang']);
    backupScript = () => stream(COMPLETION);
    const res = await fetchStream(`${proxy.url}/failover/v1/chat/completions`, {
      method: 'POST',
      body: '{"stream":true}',
    });
    expect(res.status).toBe(200);
    expect(res.headers['x-breakwater-target']).toBe('pair/azure');
    expect(res.text).toBe(COMPLETION.join(''));
    expect(since(upstream, before.main)).toHaveLength(1);
    expect(since(backup, before.backup)).toHaveLength(1);
  });

  it('streams later events through at once: each reaches the client before the next is sent', async () => {
    let received = '';
    let stalls = 0;
    /** The upstream waits (at most 3 s) for the client to hold `text` before it goes on. */
    const clientHas = (text: string) => async () => {
      try {
        await waitUntil(() => received.includes(text), 3000);
      } catch {
        stalls += 1;
      }
    };
    const steps: Step[] = [];
    for (let i = 1; i <= 5; i++) steps.push(`data: {"n":${i}}\n\n`, { until: clientHas(`{"n":${i}}`) });
    script = () => stream(steps);
    const started = performance.now();
    const res = await fetchStream(`${proxy.url}/held/live`, { onChunk: (text) => (received = text) });
    expect(stalls).toBe(0);
    expect(events(res.text).map((event) => event.data)).toEqual([1, 2, 3, 4, 5].map((n) => `{"n":${n}}`));
    // Five round trips in lockstep, far below the 3 s any one of them may take.
    expect(performance.now() - started).toBeLessThan(3000);
  });
});

describe('timeouts.idle: a stream silent in the middle is cut', () => {
  it('gives the client the events sent, then one error event, within idle + 1 s; the upstream connection closes', async () => {
    const before = upstream.requests.length;
    const errorsBefore = await metricValue(proxy.metrics, 'breakwater_errors_total', {
      route: 'held',
      code: 'UPSTREAM_STREAM_STALLED',
    });
    let lastSentAt = 0;
    script = () =>
      stream([
        ...COMPLETION.slice(0, 3),
        {
          until: async () => {
            lastSentAt = performance.now();
          },
        },
        'hang',
      ]);
    const res = await fetchStream(`${proxy.url}/held/v1/chat/completions`, { method: 'POST', body: '{}' });
    expect(res.status).toBe(200);
    expect(res.complete).toBe(true);
    const got = events(res.text);
    expect(got.slice(0, 3).map((event) => event.data)).toEqual(['{"n":1}', '{"n":2}', '{"n":3}']);
    expect(got).toHaveLength(4);
    expect(got[3]!.event).toBe('error');
    const problem = JSON.parse(got[3]!.data) as Record<string, unknown>;
    expect(problem).toMatchObject({
      type: 'urn:breakwater:error:upstream-stream-stalled',
      title: 'Upstream stream stalled',
      status: 504,
      code: 'UPSTREAM_STREAM_STALLED',
      source: 'proxy',
      responsibility: 'upstream',
      retryable: true,
      route: 'held',
      upstream: 'llm',
      attempts: 1,
    });
    expect(String(problem.detail)).toContain('timeouts.idle 600ms');
    // The error event is one line of data, on an event boundary, and the last thing sent.
    expect(res.text.endsWith(`\n\nevent: error\ndata: ${got[3]!.data}\n\n`)).toBe(true);
    expect(res.endedAt - lastSentAt).toBeLessThan(600 + 1000);
    expect(res.endedAt - lastSentAt).toBeGreaterThanOrEqual(600 - 50);
    await upstream.waitFor(() => since(upstream, before)[0]!.closedEarly, 2000);
    // Counted, flagged (never CLIENT_CLOSED), journaled with the status sent.
    expect(
      await metricValue(proxy.metrics, 'breakwater_errors_total', { route: 'held', code: 'UPSTREAM_STREAM_STALLED' }),
    ).toBe(errorsBefore + 1);
    const line = proxy.accessLogs().findLast((l) => l.route === 'held')!;
    expect(line).toMatchObject({ status: 200 });
    expect(line.flags).toContain('STREAM_STALLED');
    expect(line.flags).not.toContain('CLIENT_CLOSED');
    expect(Number(line.durationMs)).toBeGreaterThanOrEqual(600);
    const journal = (await (await fetch(`${proxy.adminUrl}/errors?code=UPSTREAM_STREAM_STALLED`)).json()) as {
      errors: Record<string, unknown>[];
    };
    expect(journal.errors.at(-1) ?? journal.errors[0]).toMatchObject({
      code: 'UPSTREAM_STREAM_STALLED',
      source: 'proxy',
      responsibility: 'upstream',
      retryable: true,
      status: 200,
    });
  });

  it('ends a line and an event the upstream left open before its error event', async () => {
    script = () => stream(['data: {"n":1}\n\n', 'data: {"partial', 'hang']);
    const res = await fetchStream(`${proxy.url}/held/partial`);
    expect(res.text.startsWith('data: {"n":1}\n\ndata: {"partial\n\nevent: error\ndata: {')).toBe(true);
    expect(events(res.text).map((event) => event.event ?? 'message')).toEqual(['message', 'message', 'error']);
  });

  it('aborts a chunked JSON body that stalls, so that it never looks complete', async () => {
    const before = upstream.requests.length;
    script = () => stream(['{"items":[1,', '2,', 'hang'], { 'content-type': 'application/json' });
    const res = await fetchStream(`${proxy.url}/held/list`);
    expect(res.status).toBe(200);
    expect(res.complete).toBe(false);
    expect(res.text).toBe('{"items":[1,2,');
    await upstream.waitFor(() => since(upstream, before)[0]!.closedEarly, 2000);
    await waitUntil(() => proxy.accessLogs().some((l) => l.path === '/held/list'), 2000, 'the access log');
    const line = proxy.accessLogs().findLast((l) => l.path === '/held/list')!;
    expect(line.flags).toContain('STREAM_STALLED');
    expect(line.flags).not.toContain('CLIENT_CLOSED');
  });

  it('counts each cut stream as a failed call for the breaker (failOn: timeout): two open it', async () => {
    script = () => stream(['data: 1\n\n', 'hang']);
    for (let i = 0; i < 2; i++) {
      const res = await fetchStream(`${proxy.url}/cut/stream`);
      expect(events(res.text).at(-1)!.event).toBe('error');
    }
    const status = (await (await fetch(`${proxy.adminUrl}/status`)).json()) as {
      upstreams: { name: string; breaker: { state: string } }[];
    };
    expect(status.upstreams.find((u) => u.name === 'fragile')!.breaker.state).toBe('open');
    const refused = await fetchStream(`${proxy.url}/cut/stream`);
    expect(JSON.parse(refused.text)).toMatchObject({ code: 'CIRCUIT_OPEN' });
  });

  it('resets an HTTP/1.0 client’s connection: a body read to the close would look complete', async () => {
    script = () => stream(['{"items":[1,', 'hang'], { 'content-type': 'application/json' });
    const port = Number(new URL(proxy.url).port);
    const ending = await new Promise<{ text: string; how: string }>((resolve) => {
      const socket = net.connect(port, '127.0.0.1', () => socket.write('GET /held/old HTTP/1.0\r\n\r\n'));
      let text = '';
      socket.on('data', (chunk: Buffer) => (text += chunk.toString('latin1')));
      socket.on('error', (error: NodeJS.ErrnoException) => resolve({ text, how: error.code ?? 'error' }));
      socket.on('end', () => resolve({ text, how: 'end' }));
    });
    expect(ending.text).toContain('{"items":[1,');
    expect(ending.how).toBe('ECONNRESET');
  });

  it('does not cut a stream whose client is slow to read', async () => {
    // 64 MiB in 256 KiB pieces (more than the socket buffers between them hold) to a client that reads none of it for 1.2 s (twice idle): held by the client, not silent.
    const piece = `data: ${'x'.repeat(256 * 1024)}\n\n`;
    let sentAll = Infinity;
    let resumed = 0;
    const done = { until: async () => void (sentAll = performance.now()) };
    script = () => stream([...Array.from({ length: 256 }, () => piece), done]);
    const paused = await new Promise<{ length: number; complete: boolean }>((resolve, reject) => {
      const req = http.get(`${proxy.url}/held/big`, { agent: false }, (res) => {
        res.pause();
        setTimeout(() => {
          resumed = performance.now();
          let length = 0;
          res.on('data', (chunk: Buffer) => (length += chunk.length));
          res.on('end', () => resolve({ length, complete: res.complete }));
          res.on('error', reject);
          res.resume();
        }, 1200);
      });
      req.on('error', reject);
    });
    expect(paused).toEqual({ length: 256 * piece.length, complete: true });
    // The upstream was held back by the client (the buffers between them full) until it read again.
    expect(sentAll).toBeGreaterThan(resumed);
  });
});

describe('without firstByte and idle', () => {
  it('sends the status and headers as soon as they arrive, before the first event', async () => {
    let headersSeen = false;
    let waitedInVain = false;
    script = () =>
      stream([
        {
          until: async () => {
            try {
              await waitUntil(() => headersSeen, 3000);
            } catch {
              waitedInVain = true;
            }
          },
        },
        ...COMPLETION,
      ]);
    const res = await fetchStream(`${proxy.url}/plain/stream`, { onHeaders: () => (headersSeen = true) });
    expect(waitedInVain).toBe(false);
    expect(res.text).toBe(COMPLETION.join(''));
  });

  it('passes a stream with 2 s pauses whole', async () => {
    script = () => stream(['data: 1\n\n', { wait: 2000 }, 'data: 2\n\n', { wait: 2000 }, 'data: 3\n\n']);
    const res = await fetchStream(`${proxy.url}/plain/slow`);
    expect(res).toMatchObject({ status: 200, complete: true, text: 'data: 1\n\ndata: 2\n\ndata: 3\n\n' });
    expect(proxy.accessLogs().findLast((l) => l.path === '/plain/slow')!.flags).toEqual([]);
  }, 15_000);
});

/** The `_count` of a histogram's series with exactly `labels`. */
async function histogramCount(proxy: TestProxy, name: string, labels: Record<string, string>): Promise<number> {
  const text = await (await fetch(`${proxy.adminUrl}/metrics`)).text();
  const want = Object.entries(labels)
    .map(([key, value]) => `${key}="${value}"`)
    .join(',');
  const line = text.split('\n').find((l) => l.startsWith(`${name}_count{${want}}`));
  return line ? Number(line.split(' ').at(-1)) : 0;
}
