/**
 * The access log (SPEC §7): one JSON line per request with the documented
 * fields and types, the query string dropped, header values never logged;
 * none at all with `logging.accessLog: false`.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFaultUpstream, type FaultUpstream } from '../fixtures/fault-upstream.js';
import { request, startProxy, type TestProxy } from '../helpers/proxy.js';

let upstream: FaultUpstream;
let proxy: TestProxy;
let quiet: TestProxy;

beforeAll(async () => {
  upstream = await startFaultUpstream(() => ({
    kind: 'respond',
    status: 201,
    headers: { 'set-cookie': 'session=UPSTREAM-SECRET' },
    body: 'created',
  }));
  const config = `upstreams:
  u: { url: "${upstream.url}" }
routes:
  - name: r
    match: { pathPrefix: /api }
    stripPrefix: true
    upstream: u
    headers: { request: { set: { Authorization: "Bearer CONFIG-SECRET" } } }
`;
  proxy = await startProxy(`version: 1\n${config}`, { listen: 'serverNames: [app.local]' });
  quiet = await startProxy(`version: 1\nlogging: { accessLog: false }\n${config}`);
});

afterAll(async () => {
  await Promise.all([proxy.close(), quiet.close()]);
  await upstream.close();
});

describe('access log', () => {
  it('writes one line per request with every field, typed', async () => {
    const res = await request(`${proxy.url}/api/v1/things?token=QUERY-SECRET&page=2`, {
      method: 'POST',
      body: 'x',
      headers: { host: 'app.local:3128' },
    });
    const lines = proxy.accessLogs().filter((line) => line.requestId === res.headers['x-request-id']);
    expect(lines).toHaveLength(1);
    const line = lines[0]!;
    expect(line).toMatchObject({
      msg: 'access',
      level: 'info',
      method: 'POST',
      host: 'app.local:3128',
      path: '/api/v1/things',
      route: 'r',
      upstream: 'u',
      status: 201,
      attempts: 1,
      flags: [],
    });
    expect(typeof line.time).toBe('string');
    expect(Number.isNaN(Date.parse(line.time as string))).toBe(false);
    expect(typeof line.durationMs).toBe('number');
    expect(line.durationMs as number).toBeGreaterThanOrEqual(0);
  });

  it('logs unmatched requests with route "" and attempts 0', async () => {
    const res = await request(`${proxy.url}/elsewhere`);
    const line = proxy.accessLogs().find((entry) => entry.requestId === res.headers['x-request-id'])!;
    expect(line).toMatchObject({ route: '', upstream: '', status: 404, attempts: 0, path: '/elsewhere' });
  });

  it('never logs header values or the query string', async () => {
    await request(`${proxy.url}/api/x?token=QUERY-SECRET`, {
      headers: { authorization: 'Bearer CLIENT-SECRET', 'x-api-key': 'KEY-SECRET', cookie: 'sid=COOKIE-SECRET' },
    });
    const raw = proxy.rawLogs();
    for (const secret of [
      'QUERY-SECRET',
      'CLIENT-SECRET',
      'KEY-SECRET',
      'COOKIE-SECRET',
      'CONFIG-SECRET',
      'UPSTREAM-SECRET',
    ]) {
      expect(raw).not.toContain(secret);
    }
  });

  it('writes no access lines with logging.accessLog: false', async () => {
    await request(`${quiet.url}/api/x`);
    await request(`${quiet.url}/nowhere`);
    expect(quiet.accessLogs()).toEqual([]);
  });
});
