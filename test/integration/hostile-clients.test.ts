/**
 * No client can turn the sidecar into the outage (SPEC §20.1, §20.2): a
 * request target that cannot be sent is 400 before routing and never a
 * breaker failure; a Host the proxy does not serve (DNS rebinding) is 421
 * and a browser page from another site is 403, both before any route,
 * policy or credential. Requests are written on raw sockets where node's
 * client would rewrite what the test means to send.
 */
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFaultUpstream, type FaultUpstream } from '../fixtures/fault-upstream.js';
import { expectProblem } from '../helpers/problem.js';
import { metricValue, request, startProxy, type TestProxy, type TestResponse } from '../helpers/proxy.js';

let api: FaultUpstream;
let proxy: TestProxy;
let port: number;

beforeAll(async () => {
  api = await startFaultUpstream(() => ({ kind: 'echo' }));
  proxy = await startProxy(
    `version: 1
upstreams:
  stripe:
    url: "${api.url}/v1"
    circuitBreaker: { failureRate: 50, minimumRequests: 5, window: 10s }
  named: { url: "${api.url}" }
routes:
  - name: named
    match: { pathPrefix: /named, host: api.partner.example }
    upstream: named
  - name: stripe
    match: { pathPrefix: /stripe }
    stripPrefix: true
    upstream: stripe
    retry: { maxRetries: 3, retryOn: [connect-failure, gateway-error, reset], backoff: { base: 1ms, max: 2ms } }
    headers: { request: { set: { Authorization: "Bearer \${env:STRIPE_KEY}" } } }
`,
    {
      env: { STRIPE_KEY: 'sk_live_secret_value' },
      listen: 'serverNames: ["*.internal", "breakwater.example"], allowOrigins: ["https://app.example.com"]',
    },
  );
  port = Number(new URL(proxy.url).port);
});

afterAll(async () => {
  await proxy.close();
  await api.close();
});

/** Writes `head` (a request line and headers, CRLF-terminated) on a new connection and reads the whole answer until the proxy closes it. */
function rawRequest(
  head: string,
): Promise<{ status: number; headers: Record<string, string>; text: string; closed: boolean }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    let data = '';
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => (data += chunk));
    socket.on('error', reject);
    socket.on('close', () => {
      const [headText = '', ...rest] = data.split('\r\n\r\n');
      const [statusLine = '', ...lines] = headText.split('\r\n');
      const headers: Record<string, string> = {};
      for (const line of lines)
        headers[line.slice(0, line.indexOf(':')).toLowerCase()] = line.slice(line.indexOf(':') + 1).trim();
      resolve({ status: Number(statusLine.split(' ')[1]), headers, text: rest.join('\r\n\r\n'), closed: true });
    });
    socket.write(head);
    // The proxy must close the connection itself after a refusal; the test's own bound.
    setTimeout(() => socket.destroy(), 5000).unref();
  });
}

function asResponse(raw: { status: number; headers: Record<string, string>; text: string }): TestResponse {
  return {
    status: raw.status,
    headers: raw.headers,
    body: Buffer.from(raw.text),
    text: raw.text,
    json: <T>() => JSON.parse(raw.text) as T,
  };
}

const breakerState = async () => {
  const status = (await (await fetch(`${proxy.adminUrl}/status`)).json()) as {
    upstreams: { name: string; breaker: { state: string } }[];
  };
  return status.upstreams.find((upstream) => upstream.name === 'stripe')!.breaker.state;
};

describe('request targets that cannot be sent (SPEC §20.2)', () => {
  it.each(['x://../../a', 'x://../../secret', 'a/b', '*', 'ftp://127.0.0.1/x', 'stripe/x', 'javascript:alert(1)'])(
    'GET %s is 400 BAD_REQUEST before routing, with Connection: close',
    async (target) => {
      const before = api.requests.length;
      const res = await rawRequest(`GET ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
      expectProblem(asResponse(res), 'BAD_REQUEST', { route: null, upstream: null, attempts: 0 });
      expect(res.headers.connection).toBe('close');
      expect(api.requests.length).toBe(before);
    },
  );

  it('a loop of malformed targets leaves the breaker closed, and 20 normal GETs after it all succeed', async () => {
    const before = api.requests.length;
    const failuresBefore = await metricValue(proxy.metrics, 'breakwater_upstream_attempts_total', {
      route: 'stripe',
      upstream: 'stripe',
      outcome: 'connect_failure',
    });
    for (let i = 0; i < 30; i++) {
      const res = await rawRequest(`GET x://../../a HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
      expect(res.status).toBe(400);
    }
    expect(api.requests.length).toBe(before);
    expect(
      await metricValue(proxy.metrics, 'breakwater_upstream_attempts_total', {
        route: 'stripe',
        upstream: 'stripe',
        outcome: 'connect_failure',
      }),
    ).toBe(failuresBefore);
    expect(await breakerState()).toBe('closed');
    const statuses = await Promise.all(
      Array.from({ length: 20 }, () => request(`${proxy.url}/stripe/charges`).then((res) => res.status)),
    );
    expect(statuses).toEqual(Array(20).fill(200));
    // The base path is kept: nothing ever went upstream outside /v1.
    expect(api.requests.every((seen) => seen.url.startsWith('/v1/'))).toBe(true);
  });

  it('counts the refusals under route "" and logs them with no route, no attempt', async () => {
    const before = await metricValue(proxy.metrics, 'breakwater_errors_total', { route: '', code: 'BAD_REQUEST' });
    await rawRequest(`OPTIONS * HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
    expect(await metricValue(proxy.metrics, 'breakwater_errors_total', { route: '', code: 'BAD_REQUEST' })).toBe(
      before + 1,
    );
    const line = proxy.accessLogs().at(-1)!;
    expect(line).toMatchObject({ status: 400, route: '', upstream: '', attempts: 0 });
  });
});

describe('the finding as reported: a catch-all route to an upstream with a base path (SPEC §20.2)', () => {
  let catchAll: TestProxy;
  let catchPort: number;
  const catchAllState = async () => {
    const status = (await (await fetch(`${catchAll.adminUrl}/status`)).json()) as {
      upstreams: { name: string; breaker: { state: string; failureRate: number } }[];
    };
    return status.upstreams.find((upstream) => upstream.name === 'api')!.breaker;
  };
  beforeAll(async () => {
    // Every target matches pathPrefix /: before §20.2 a malformed one was
    // forwarded, refused by undici, counted a connect failure and retried.
    catchAll = await startProxy(`version: 1
upstreams:
  api:
    url: "${api.url}/v1"
    circuitBreaker: { failureRate: 50, minimumRequests: 5, window: 10s }
routes:
  - name: all
    match: { pathPrefix: / }
    upstream: api
    retry: { maxRetries: 3, retryOn: [connect-failure, gateway-error, reset], backoff: { base: 1ms, max: 2ms } }
`);
    catchPort = Number(new URL(catchAll.url).port);
  });
  afterAll(() => catchAll.close());

  it('30 malformed targets are 400 and never attempts; the breaker stays closed and 20 GETs all succeed', async () => {
    const before = api.requests.length;
    for (let i = 0; i < 30; i++) {
      const target = i % 2 ? 'x://../../a' : 'x://../../secret';
      const res = await new Promise<number>((resolve, reject) => {
        const socket = net.connect(catchPort, '127.0.0.1');
        let data = '';
        socket.on('data', (chunk: Buffer) => (data += chunk.toString('latin1')));
        socket.on('error', reject);
        socket.on('close', () => resolve(Number(data.split(' ')[1])));
        socket.write(`GET ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
        setTimeout(() => socket.destroy(), 5000).unref();
      });
      expect(res).toBe(400);
    }
    // Nothing went upstream, and no attempt of any outcome was counted.
    expect(api.requests.length).toBe(before);
    const outcomes = ['success', 'http_5xx', 'http_429', 'http_4xx', 'timeout', 'connect_failure', 'reset'];
    const attempts = await Promise.all(
      outcomes.map((outcome) =>
        metricValue(catchAll.metrics, 'breakwater_upstream_attempts_total', { route: 'all', upstream: 'api', outcome }),
      ),
    );
    expect(attempts).toEqual(outcomes.map(() => 0));
    expect(await catchAllState()).toMatchObject({ state: 'closed', failureRate: 0 });
    const statuses = await Promise.all(
      Array.from({ length: 20 }, () => request(`${catchAll.url}/charges`).then((res) => res.status)),
    );
    expect(statuses).toEqual(Array(20).fill(200));
    // The base path is kept: every request the upstream saw is under /v1/.
    const seen = api.requests.slice(before).map((r) => r.url);
    expect(seen).toHaveLength(20);
    expect(seen.every((url) => url === '/v1/charges')).toBe(true);
  });
});

describe('Host names the proxy serves (SPEC §20.1, DNS rebinding)', () => {
  it.each([
    'evil.example',
    'evil.example:3128',
    'attacker.com.',
    '127.0.0.1.nip.io',
    'x.internal.evil.example',
    'localhost.evil.example',
    '[::1]evil.example',
    '[::1]:80x',
  ])('refuses Host: %s with 421, forwarding nothing', async (host) => {
    const before = api.requests.length;
    const res = await request(`${proxy.url}/stripe/charges`, { headers: { host } });
    expectProblem(res, 'MISDIRECTED_REQUEST', { route: null, upstream: null, attempts: 0 });
    expect(api.requests.length).toBe(before);
  });

  it.each([
    'localhost',
    `localhost:${3128}`,
    'app.localhost',
    '127.0.0.1',
    '[::1]:3128',
    'breakwater',
    'internal',
    'LOCALHOST.',
    'svc.internal',
    'a.b.internal:8080',
    'breakwater.example',
  ])('serves Host: %s', async (host) => {
    const res = await request(`${proxy.url}/stripe/charges`, { headers: { host } });
    expect(res.status, res.text).toBe(200);
  });

  it("serves a host some route's match.host names, and sends it on that route", async () => {
    const res = await request(`${proxy.url}/named/x`, { headers: { host: 'api.partner.example' } });
    expect(res.status).toBe(200);
    expect(res.json<{ url: string }>().url).toBe('/named/x');
  });

  it('serves HTTP/1.0 without Host', async () => {
    const res = await rawRequest(`GET /stripe/charges HTTP/1.0\r\n\r\n`);
    expect(res.status).toBe(200);
  });
});

describe('browsers (SPEC §20.1)', () => {
  it('a cross-site form POST never reaches the upstream and spends no credential', async () => {
    const before = api.requests.length;
    const countedBefore = await metricValue(proxy.metrics, 'breakwater_errors_total', {
      route: '',
      code: 'CROSS_ORIGIN_REFUSED',
    });
    const res = await request(`${proxy.url}/stripe/charges`, {
      method: 'POST',
      headers: {
        origin: 'https://evil.example',
        'sec-fetch-site': 'cross-site',
        'sec-fetch-mode': 'navigate',
        'content-type': 'application/x-www-form-urlencoded',
      },
      body: 'amount=100000&currency=usd',
    });
    expectProblem(res, 'CROSS_ORIGIN_REFUSED', { route: null, upstream: null, attempts: 0 });
    expect(res.headers['access-control-allow-origin']).toBeUndefined();
    expect(api.requests.length).toBe(before);
    expect(
      await metricValue(proxy.metrics, 'breakwater_errors_total', { route: '', code: 'CROSS_ORIGIN_REFUSED' }),
    ).toBe(countedBefore + 1);
    expect(proxy.rawLogs()).not.toContain('sk_live_secret_value');
  });

  it.each([
    ['an Origin of another site', { origin: 'https://evil.example' }],
    ['Origin: null (a sandboxed frame or a file)', { origin: 'null' }],
    ['Sec-Fetch-Site: cross-site without Origin (a GET navigation)', { 'sec-fetch-site': 'cross-site' }],
    ['Sec-Fetch-Site: same-site', { 'sec-fetch-site': 'same-site', origin: 'http://other.localhost' }],
    ['Sec-Fetch-Site in another case', { 'sec-fetch-site': 'Cross-Site' }],
    ['its own origin, but from another site', { origin: `http://127.0.0.1:PORT`, 'sec-fetch-site': 'cross-site' }],
  ])('refuses %s', async (_what, headers: Record<string, string>) => {
    const before = api.requests.length;
    const sent = Object.fromEntries(
      Object.entries(headers).map(([name, value]) => [name, value.replace('PORT', String(port))]),
    );
    const res = await request(`${proxy.url}/stripe/charges`, { headers: sent });
    expectProblem(res, 'CROSS_ORIGIN_REFUSED', { route: null, upstream: null, attempts: 0 });
    expect(api.requests.length).toBe(before);
  });

  it.each([
    ['a listed origin', { origin: 'https://app.example.com', 'sec-fetch-site': 'cross-site' }],
    ['its own origin, same-origin', { origin: 'http://127.0.0.1:PORT', 'sec-fetch-site': 'same-origin' }],
    ['its own origin, no Sec-Fetch-Site', { origin: 'http://127.0.0.1:PORT' }],
    ["Node's fetch (Sec-Fetch-Mode: cors alone)", { 'sec-fetch-mode': 'cors' }],
    ['a typed URL (Sec-Fetch-Site: none)', { 'sec-fetch-site': 'none' }],
    ['Referer and User-Agent of a browser', { referer: 'https://evil.example/', 'user-agent': 'Mozilla/5.0' }],
  ])('serves %s', async (_what, headers: Record<string, string>) => {
    const sent = Object.fromEntries(
      Object.entries(headers).map(([name, value]) => [name, value.replace('PORT', String(port))]),
    );
    const res = await request(`${proxy.url}/stripe/charges`, { headers: sent });
    expect(res.status, res.text).toBe(200);
  });

  it("serves Node's own fetch", async () => {
    const res = await fetch(`${proxy.url}/stripe/charges`);
    expect(res.status).toBe(200);
  });
});

describe('checks that do not apply', () => {
  let forward: TestProxy;
  beforeAll(async () => {
    forward = await startProxy(`version: 1
forwardProxy: { enabled: true, allowHosts: ["127.0.0.1"], denyPrivateNetworks: false, allowPorts: [${api.port}] }
routes:
  - { name: out, match: { pathPrefix: / } }
`);
  });
  afterAll(() => forward.close());

  it('an absolute-form request names its target: its Host and Origin are the target site, not checked', async () => {
    const fport = Number(new URL(forward.url).port);
    const res = await new Promise<number>((resolve, reject) => {
      const socket = net.connect(fport, '127.0.0.1');
      let data = '';
      socket.on('data', (chunk: Buffer) => {
        data += chunk.toString('latin1');
        if (data.includes('\r\n\r\n')) {
          resolve(Number(data.split(' ')[1]));
          socket.destroy();
        }
      });
      socket.on('error', reject);
      socket.write(
        `GET http://127.0.0.1:${api.port}/x HTTP/1.1\r\nHost: 127.0.0.1:${api.port}\r\nOrigin: https://evil.example\r\nSec-Fetch-Site: cross-site\r\n\r\n`,
      );
    });
    expect(res).toBe(200);
  });
});

describe('an attempt the HTTP client refuses to send (SPEC §20.2)', () => {
  let refused: TestProxy;
  beforeAll(async () => {
    // A DEL in a header value: the config allows it (only CR, LF and NUL are
    // config problems, §20.6), undici refuses to send it.
    refused = await startProxy(`version: 1
upstreams:
  api:
    url: "${api.url}"
    circuitBreaker: { failureRate: 50, minimumRequests: 5, window: 10s }
routes:
  - name: api
    match: { pathPrefix: /api }
    upstream: api
    retry: { maxRetries: 3, retryOn: [connect-failure, gateway-error, reset], backoff: { base: 1ms, max: 2ms } }
    headers: { request: { set: { X-Odd: "a\\x7fb" } } }
`);
  });
  afterAll(() => refused.close());

  it('is 400 BAD_REQUEST without its value, never retried, never a breaker failure nor an attempt outcome', async () => {
    const before = api.requests.length;
    for (let i = 0; i < 10; i++) {
      const res = await request(`${refused.url}/api/x`);
      const body = expectProblem(res, 'BAD_REQUEST', { route: 'api', upstream: 'api', attempts: 1 });
      expect(JSON.stringify(body)).not.toContain('\x7f');
    }
    expect(api.requests.length).toBe(before);
    for (const outcome of ['connect_failure', 'reset', 'success']) {
      expect(
        await metricValue(refused.metrics, 'breakwater_upstream_attempts_total', {
          route: 'api',
          upstream: 'api',
          outcome,
        }),
      ).toBe(0);
    }
    const status = (await (await fetch(`${refused.adminUrl}/status`)).json()) as {
      upstreams: { name: string; breaker: { state: string; failureRate: number } }[];
    };
    expect(status.upstreams[0]!.breaker).toMatchObject({ state: 'closed', failureRate: 0 });
    expect(refused.accessLogs().filter((line) => (line.flags as string[]).includes('RETRIED'))).toEqual([]);
  });
});
