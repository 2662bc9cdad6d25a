/**
 * OpenTelemetry traces (SPEC §11) against a loopback OTLP/HTTP receiver:
 * the SERVER span continues the caller's trace, each attempt is a CLIENT
 * span and the upstream's parent, failures carry their code, an export
 * that fails costs the request nothing and is counted, and with tracing
 * off the trace headers pass through untouched.
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFaultUpstream, waitUntil, type FaultUpstream } from '../fixtures/fault-upstream.js';
import { startOtlpReceiver, type OtlpReceiver, type ReceivedSpan } from '../fixtures/otlp-receiver.js';
import { metricValue, request, startProxy, type TestProxy } from '../helpers/proxy.js';
import { freePort } from '../helpers/net.js';

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const PARENT = '00f067aa0ba902b7';
const TRACEPARENT = `00-${TRACE}-${PARENT}-01`;
const SERVER = 2;
const CLIENT = 3;

const savedDelay = process.env.OTEL_BSP_SCHEDULE_DELAY;
beforeAll(() => {
  // The SDK's batch delay (5 s by default): short, so the tests wait little.
  process.env.OTEL_BSP_SCHEDULE_DELAY = '50';
});
afterAll(() => {
  if (savedDelay === undefined) delete process.env.OTEL_BSP_SCHEDULE_DELAY;
  else process.env.OTEL_BSP_SCHEDULE_DELAY = savedDelay;
});

const config = (receiver: string, upstream: string, refused: number) => `
version: 1
tracing: { enabled: true, endpoint: "${receiver}", protocol: http/json, serviceName: bw-test }
upstreams:
  api: { url: "${upstream}" }
  down: { url: "http://127.0.0.1:${refused}" }
routes:
  - name: down
    match: { pathPrefix: /down }
    upstream: down
    retry: { maxRetries: 0 }
  - name: api
    match: { pathPrefix: / }
    upstream: api
    retry: { backoff: { base: 1ms, max: 2ms } }
`;

describe('tracing on', () => {
  let receiver: OtlpReceiver;
  let upstream: FaultUpstream;
  let proxy: TestProxy;

  beforeAll(async () => {
    receiver = await startOtlpReceiver();
    // /flaky: 503 then 200; anything else 200.
    let flaky = 0;
    upstream = await startFaultUpstream((_n, req) =>
      req.url?.startsWith('/flaky') && ++flaky === 1
        ? { kind: 'respond', status: 503 }
        : { kind: 'respond', status: 200, body: 'ok' },
    );
    proxy = await startProxy(config(receiver.url, upstream.url, await freePort()));
  });

  afterAll(async () => {
    await proxy.close();
    await upstream.close();
    await receiver.close();
  });

  const spansOf = (traceId: string) => receiver.spans.filter((span) => span.traceId === traceId);

  it("continues the caller's trace: a SERVER span, a CLIENT span per attempt, each attempt the upstream's parent", async () => {
    const res = await request(`${proxy.url}/flaky`, { headers: { traceparent: TRACEPARENT, tracestate: 'vendor=1' } });
    expect(res.status).toBe(200);
    expect(res.headers['x-breakwater-attempts']).toBe('2');
    await waitUntil(() => spansOf(TRACE).length >= 3, 10_000, 'three spans of the trace');

    const [server] = spansOf(TRACE).filter((span) => span.kind === SERVER) as [ReceivedSpan];
    expect(server.parentSpanId).toBe(PARENT);
    expect(server.name).toBe('GET api');
    expect(server.serviceName).toBe('bw-test');
    expect(server.attributes).toMatchObject({
      'http.request.method': 'GET',
      'url.path': '/flaky',
      'http.response.status_code': 200,
      'breakwater.route': 'api',
      'breakwater.upstream': 'api',
      'breakwater.target': 'api',
      'breakwater.attempts': 2,
    });
    expect(server.events.map((event) => [event.name, event.attributes['breakwater.wait.kind']])).toEqual([
      ['breakwater.wait', 'backoff'],
    ]);

    const attempts = spansOf(TRACE).filter((span) => span.kind === CLIENT);
    expect(attempts).toHaveLength(2);
    for (const attempt of attempts) expect(attempt.parentSpanId).toBe(server.spanId);
    const byResend = attempts.sort(
      (a, b) =>
        Number(a.attributes['http.request.resend_count'] ?? 0) - Number(b.attributes['http.request.resend_count'] ?? 0),
    );
    expect(byResend[0]!.attributes['http.request.resend_count']).toBeUndefined();
    expect(byResend[0]!.attributes['http.response.status_code']).toBe(503);
    expect(byResend[1]!.attributes['http.request.resend_count']).toBe(1);
    expect(byResend[1]!.attributes['http.response.status_code']).toBe(200);
    // SPEC §16: the time to the answer's first body byte; absent for the 503 that had no body.
    expect(byResend[1]!.attributes['breakwater.first_byte_ms']).toEqual(expect.any(Number));
    expect(Number(byResend[1]!.attributes['breakwater.first_byte_ms'])).toBeGreaterThanOrEqual(0);
    expect(byResend[0]!.attributes['breakwater.first_byte_ms']).toBeUndefined();

    // What the upstream saw: the trace, with the attempt's span as the parent, and the caller's tracestate.
    const seen = upstream.requests.filter((r) => r.url === '/flaky').map((r) => r.headers.traceparent);
    expect(seen).toEqual(byResend.map((span) => `00-${TRACE}-${span.spanId}-01`));
    expect(upstream.requests.filter((r) => r.url === '/flaky').map((r) => r.headers.tracestate)).toEqual([
      'vendor=1',
      'vendor=1',
    ]);
  });

  it('starts a trace for a request without a parent', async () => {
    const before = receiver.spans.length;
    expect((await request(`${proxy.url}/fresh`)).status).toBe(200);
    await waitUntil(
      () =>
        receiver.spans.slice(before).some((span) => span.kind === SERVER && span.attributes['url.path'] === '/fresh'),
      10_000,
      'the span of /fresh',
    );
    const server = receiver.spans
      .slice(before)
      .find((span) => span.kind === SERVER && span.attributes['url.path'] === '/fresh')!;
    expect(server.parentSpanId).toBe('');
    expect(server.traceId).toMatch(/^[0-9a-f]{32}$/);
    expect(server.traceId).not.toBe(TRACE);
  });

  it('puts the error code and whose fault it is on a failed request', async () => {
    const trace = 'aaaabbbbccccddddeeeeffff00001111';
    const res = await request(`${proxy.url}/down/x`, { headers: { traceparent: `00-${trace}-${PARENT}-01` } });
    expect(res.status).toBe(502);
    await waitUntil(() => spansOf(trace).some((span) => span.kind === SERVER), 10_000, 'the failed request span');
    const server = spansOf(trace).find((span) => span.kind === SERVER)!;
    expect(server.attributes).toMatchObject({
      'breakwater.error.code': 'UPSTREAM_CONNECT_FAILED',
      'error.type': 'UPSTREAM_CONNECT_FAILED',
      'breakwater.responsibility': 'upstream',
      'http.response.status_code': 502,
    });
    const attempt = spansOf(trace).find((span) => span.kind === CLIENT)!;
    expect(attempt.attributes['error.type']).toBe('UPSTREAM_CONNECT_FAILED');
  });
});

interface Traced {
  readonly receiver: OtlpReceiver;
  readonly upstream: FaultUpstream;
  readonly proxy: TestProxy;
}

/** A receiver, an upstream answering 200 and a proxy on `config` as `edit` changes it; all closed after `body` (which may close the proxy first, to flush). */
async function withTraced(edit: (yaml: string) => string, body: (traced: Traced) => Promise<void>): Promise<void> {
  const receiver = await startOtlpReceiver();
  const upstream = await startFaultUpstream(() => ({ kind: 'respond', status: 200, body: 'ok' }));
  const proxy = await startProxy(edit(config(receiver.url, upstream.url, await freePort())));
  try {
    await body({ receiver, upstream, proxy });
  } finally {
    await proxy.close().catch(() => {});
    await upstream.close();
    await receiver.close();
  }
}

describe('waits', () => {
  it('records a rate-limit queue wait as a breakwater.wait event', async () => {
    const queued = (yaml: string) =>
      yaml.replace(
        '    retry: { backoff: { base: 1ms, max: 2ms } }',
        '    rateLimit: { rate: 10/s, burst: 1, queue: { size: 10, timeout: 5s } }',
      );
    await withTraced(queued, async ({ receiver, proxy }) => {
      const [first, second] = await Promise.all([request(`${proxy.url}/q1`), request(`${proxy.url}/q2`)]);
      expect([first.status, second.status]).toEqual([200, 200]);
      await proxy.close();
      const waits = receiver.spans
        .filter((span) => span.kind === SERVER)
        .flatMap((span) => span.events.map((event) => event.attributes));
      // One of the two waited for the next token (about 100 ms at 10/s).
      expect(waits).toHaveLength(1);
      expect(waits[0]!['breakwater.wait.kind']).toBe('queue');
      expect(Number(waits[0]!['breakwater.wait.ms'])).toBeGreaterThan(0);
    });
  });
});

describe('the other protocol and sampling', () => {
  it('exports OTLP/HTTP protobuf', async () => {
    await withTraced(
      (yaml) => yaml.replace('protocol: http/json', 'protocol: http/protobuf'),
      async ({ receiver, proxy }) => {
        expect((await request(`${proxy.url}/x`)).status).toBe(200);
        await waitUntil(() => receiver.requests.length > 0, 10_000, 'an export');
        expect(receiver.requests[0]!.contentType).toBe('application/x-protobuf');
        expect(receiver.requests[0]!.bytes).toBeGreaterThan(50);
      },
    );
  });

  it('with sampleRatio 0 traces only requests whose parent was sampled, and still propagates', async () => {
    await withTraced(
      (yaml) => yaml.replace('serviceName: bw-test', 'serviceName: bw-test, sampleRatio: 0'),
      async ({ receiver, upstream, proxy }) => {
        expect((await request(`${proxy.url}/unsampled`)).status).toBe(200);
        expect((await request(`${proxy.url}/sampled`, { headers: { traceparent: TRACEPARENT } })).status).toBe(200);
        await proxy.close(); // flushes what is queued
        expect(receiver.spans.map((span) => span.attributes['url.path']).filter(Boolean)).toEqual(['/sampled']);
        expect(receiver.spans.every((span) => span.traceId === TRACE)).toBe(true);
        // The unsampled request still told the upstream its (unsampled) context.
        expect(upstream.requests[0]!.headers.traceparent).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/);
      },
    );
  });
});

describe('reload', () => {
  it('applies tracing changes: off, then on to one receiver, then to another', async () => {
    const [first, second] = [await startOtlpReceiver(), await startOtlpReceiver()];
    const upstream = await startFaultUpstream(() => ({ kind: 'respond', status: 200, body: 'ok' }));
    const file = path.join(mkdtempSync(path.join(tmpdir(), 'breakwater-tracing-')), 'breakwater.yaml');
    const on = config(first.url, upstream.url, await freePort());
    const proxy = await startProxy(on.replace('enabled: true', 'enabled: false'), { file });
    try {
      expect((await request(`${proxy.url}/off`)).status).toBe(200);
      writeFileSync(file, readFileSync(file, 'utf8').replace('enabled: false', 'enabled: true'));
      expect((await proxy.app.reload('test')).result).toBe('success');
      expect((await request(`${proxy.url}/to-first`)).status).toBe(200);
      await waitUntil(
        () => first.spans.some((span) => span.attributes['url.path'] === '/to-first'),
        10_000,
        'the span at the first receiver',
      );
      writeFileSync(file, readFileSync(file, 'utf8').replace(first.url, second.url));
      expect((await proxy.app.reload('test')).result).toBe('success');
      expect((await request(`${proxy.url}/to-second`)).status).toBe(200);
      await waitUntil(
        () => second.spans.some((span) => span.attributes['url.path'] === '/to-second'),
        10_000,
        'the span at the second receiver',
      );
      const paths = (receiver: OtlpReceiver) =>
        receiver.spans.map((span) => span.attributes['url.path']).filter(Boolean);
      expect(paths(first)).toEqual(['/to-first']);
      expect(paths(second)).toEqual(['/to-second']);
    } finally {
      await proxy.close();
      await upstream.close();
      await first.close();
      await second.close();
    }
  });
});

describe('an exporter that cannot export', () => {
  it('answers every request, and counts the spans it could not send', async () => {
    const upstream = await startFaultUpstream(() => ({ kind: 'respond', status: 200, body: 'ok' }));
    const proxy = await startProxy(
      config(`http://127.0.0.1:${await freePort()}/v1/traces`, upstream.url, await freePort()),
    );
    try {
      const dropped = () => metricValue(proxy.metrics, 'breakwater_trace_spans_dropped_total', {});
      expect(await dropped()).toBe(0);
      for (let i = 0; i < 5; i++) expect((await request(`${proxy.url}/x${i}`)).status).toBe(200);
      // 5 requests: 5 SERVER and 5 CLIENT spans, none delivered (the receiver's port is closed).
      const deadline = Date.now() + 20_000;
      let count = 0;
      while (Date.now() < deadline && count < 10) {
        count = await dropped();
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      expect(count).toBe(10);
    } finally {
      await proxy.close();
      await upstream.close();
    }
  });
});

describe('tracing off', () => {
  it('passes traceparent and tracestate through byte for byte, and exports nothing', async () => {
    await withTraced(
      (yaml) => yaml.replace('enabled: true', 'enabled: false'),
      async ({ receiver, upstream, proxy }) => {
        const tracestate = 'congo=t61rcWkgMzE,rojo=00f067aa0ba902b7';
        expect((await request(`${proxy.url}/x`, { headers: { traceparent: TRACEPARENT, tracestate } })).status).toBe(
          200,
        );
        expect(upstream.requests[0]!.headers.traceparent).toBe(TRACEPARENT);
        expect(upstream.requests[0]!.headers.tracestate).toBe(tracestate);
        await proxy.close();
        expect(receiver.requests).toEqual([]);
      },
    );
  });
});
