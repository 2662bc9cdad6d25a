/**
 * The single rescue point (STYLE.md): a fault inside Breakwater becomes
 * INTERNAL_ERROR with the SPEC §5 body, logged with its stack and never
 * sent to the client; the server keeps serving.
 */
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/index.js';
import { createMetrics } from '../../src/observe/metrics.js';
import { ErrorJournal } from '../../src/observe/error-journal.js';
import { buildRuntime, type Runtime } from '../../src/runtime.js';
import { createProxyServer, type ProxyServer } from '../../src/server/proxy-server.js';
import { createForwarder } from '../../src/upstream/forward.js';
import { startFaultUpstream, type FaultUpstream } from '../fixtures/fault-upstream.js';
import { expectProblem } from '../helpers/problem.js';
import { request } from '../helpers/proxy.js';

let upstream: FaultUpstream;
let server: ProxyServer;
let url = '';
let logged = '';

beforeAll(async () => {
  upstream = await startFaultUpstream(() => ({ kind: 'respond', body: 'ok' }));
  const result = parseConfig(
    `version: 1
upstreams: { u: { url: "${upstream.url}" } }
routes:
  - { name: broken, match: { pathPrefix: /broken }, upstream: u }
  - { name: fine, upstream: u }
`,
    'rescue.yaml',
  );
  if (!result.ok) throw new Error('bad test config');
  const forwarder = createForwarder();
  const metrics = createMetrics({ defaultMetrics: false });
  const now = () => performance.now();
  const real = buildRuntime(result.loaded.config, { forwarder, metrics, now, wall: Date.now });
  // A runtime whose 'broken' route has a bug: its pipeline throws.
  const runtime: Runtime = {
    ...real,
    match(input) {
      const route = real.match(input);
      if (route?.name !== 'broken') return route;
      return {
        ...route,
        pipeline: {
          run: () => {
            throw new TypeError("Cannot read properties of undefined (reading 'secretInternalField')");
          },
          close() {},
        },
      };
    },
  };
  const logger = pino(
    { level: 'info' },
    new Writable({
      write: (chunk: Buffer, _e, cb) => {
        logged += chunk.toString();
        cb();
      },
    }),
  );
  server = createProxyServer({
    runtime: () => runtime,
    forwarder,
    metrics,
    logger,
    now,
    wall: Date.now,
    journal: new ErrorJournal(10, now),
  });
  url = `http://127.0.0.1:${await server.listen('127.0.0.1', 0)}`;
});

afterAll(async () => {
  await server.close(100);
  await upstream.close();
});

describe('rescue point', () => {
  it('turns an unexpected exception into INTERNAL_ERROR without leaking it', async () => {
    const res = await request(`${url}/broken/x`);
    const body = expectProblem(res, 'INTERNAL_ERROR', {
      instance: '/broken/x',
      route: 'broken',
      upstream: 'u',
      attempts: 0,
    });
    expect(JSON.stringify(body)).not.toContain('secretInternalField');
    expect(JSON.stringify(body)).not.toContain('TypeError');
  });

  it('logs the fault with its stack and the request id', async () => {
    const res = await request(`${url}/broken/y`);
    const line = logged
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { msg: string; requestId?: string; err?: { stack?: string; message?: string } })
      .find((l) => l.msg === 'internal error' && l.requestId === res.headers['x-request-id']);
    expect(line?.err?.message).toContain('secretInternalField');
    expect(line?.err?.stack).toMatch(/TypeError: .*\n\s+at /);
  });

  it('keeps serving other requests', async () => {
    const res = await request(`${url}/other`);
    expect(res.status).toBe(200);
    expect(res.text).toBe('ok');
  });
});
