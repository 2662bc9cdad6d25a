/**
 * The zero-code-change outbound proxy (SPEC §3 `forwardProxy`) with real
 * clients: curl, python3-requests, undici. Absolute-form requests get the
 * route's policies; CONNECT is a plain tunnel; targets outside the
 * allow-lists, or resolving to private networks, are refused at once with
 * HOST_NOT_ALLOWED and no connection is attempted.
 */
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';
import { EnvHttpProxyAgent, request as undiciRequest } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_FORWARD_TARGETS } from '../../src/runtime.js';
import { startFaultUpstream, startRawServer, TEST_CA, type FaultUpstream } from '../fixtures/fault-upstream.js';
import { writeTemp } from '../helpers/cli.js';
import { expectProblem } from '../helpers/problem.js';
import { startProxy, type TestProxy, type TestResponse } from '../helpers/proxy.js';

let upstream: FaultUpstream;
let tls: FaultUpstream;
let echo: Awaited<ReturnType<typeof startRawServer>>;
let bystander: Awaited<ReturnType<typeof startRawServer>>;
let proxy: TestProxy;
let strict: TestProxy;
let closed: TestProxy;
const seen = new Map<string, number>();

/** Test DNS: names under .test resolve where the test says; nothing leaves the machine. */
const NAMES: Record<string, { address: string; family: number }[]> = {
  'evil.test': [{ address: '127.0.0.1', family: 4 }],
  'metadata.test': [{ address: '169.254.169.254', family: 4 }],
  'private.test': [{ address: '10.0.0.1', family: 4 }],
  'v6.test': [{ address: '::1', family: 6 }],
  'mapped.test': [{ address: '::ffff:127.0.0.1', family: 6 }],
  'mixed.test': [
    { address: '93.184.216.34', family: 4 },
    { address: '127.0.0.1', family: 4 },
  ],
  localhost: [{ address: '127.0.0.1', family: 4 }],
};
const lookup = async (hostname: string) => {
  const found = NAMES[hostname];
  if (!found) throw Object.assign(new Error(`ENOTFOUND ${hostname}`), { code: 'ENOTFOUND' });
  return found;
};

beforeAll(async () => {
  upstream = await startFaultUpstream((_n, req) => {
    const path = req.url ?? '';
    const k = (seen.get(path) ?? 0) + 1;
    seen.set(path, k);
    if (path.startsWith('/flaky'))
      return k === 1 ? { kind: 'respond', status: 503, body: 'busy' } : { kind: 'respond', body: `ok after ${k}` };
    return { kind: 'echo' };
  });
  tls = await startFaultUpstream(() => ({ kind: 'respond', body: 'secure ok' }), { tls: true });
  echo = await startRawServer((socket) => socket.pipe(socket));
  bystander = await startRawServer(() => {});
  const ports = [upstream.port, tls.port, echo.port, bystander.port, 80, 443].join(', ');
  proxy = await startProxy(
    `version: 1
forwardProxy:
  enabled: true
  allowHosts: ["127.0.0.1", "*.test", "localhost.example"]
  allowPorts: [${ports}]
  denyPrivateNetworks: true
routes:
  - name: outbound
    match: { host: "127.0.0.1" }
    retry: { backoff: { base: 1ms, max: 2ms } }
  - name: named
    match: { host: "*.test" }
`,
    { lookup },
  );
  strict = await startProxy(
    `version: 1
forwardProxy:
  enabled: true
  allowHosts: ["*.test"]
  allowPorts: [${ports}]
routes:
  - { name: any, match: { pathPrefix: / } }
`,
    { lookup },
  );
  closed = await startProxy(`version: 1
upstreams: { u: { url: "${upstream.url}" } }
routes: [ { name: r, upstream: u } ]
`);
});

afterAll(async () => {
  await Promise.all([proxy.close(), strict.close(), closed.close()]);
  await Promise.all([upstream.close(), tls.close(), echo.close(), bystander.close()]);
});

function run(
  command: string,
  args: string[],
  env: NodeJS.ProcessEnv = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(command, args, { env: { PATH: process.env.PATH, ...env }, timeout: 20_000 }, (error, stdout, stderr) =>
      resolve({ code: error ? Number((error as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

/** Sends raw bytes to a proxy and returns its whole answer. */
function raw(target: TestProxy, bytes: string): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect(Number(new URL(target.url).port), '127.0.0.1', () => socket.write(bytes));
    let answer = '';
    socket.on('data', (chunk) => (answer += chunk.toString('latin1')));
    socket.on('close', () => resolve(answer));
    socket.on('error', () => resolve(answer));
    socket.setTimeout(10_000, () => socket.destroy());
  });
}

function asResponse(answer: string): TestResponse {
  const [head, ...rest] = answer.split('\r\n\r\n');
  const [statusLine, ...lines] = head!.split('\r\n');
  const headers: Record<string, string> = {};
  for (const line of lines)
    headers[line.slice(0, line.indexOf(':')).toLowerCase()] = line.slice(line.indexOf(':') + 1).trim();
  const text = rest.join('\r\n\r\n');
  return {
    status: Number(statusLine!.split(' ')[1]),
    headers,
    body: Buffer.from(text),
    text,
    json: <T>() => JSON.parse(text) as T,
  };
}

describe('absolute-form requests', () => {
  it('curl -x reaches the target through the route and gets retries', async () => {
    const result = await run('curl', [
      '-s',
      '-x',
      proxy.url,
      '-w',
      '\n%{http_code}',
      `http://127.0.0.1:${upstream.port}/flaky/curl`,
    ]);
    expect(result.stdout).toBe('ok after 2\n200');
    expect(seen.get('/flaky/curl')).toBe(2);
  });

  it('python3-requests with HTTP_PROXY gets the same', async () => {
    const script = `import requests\nr = requests.get("http://127.0.0.1:${upstream.port}/flaky/python")\nprint(r.status_code, r.text, r.headers.get("x-breakwater-attempts"))`;
    const result = await run('/usr/bin/python3', ['-c', script], { HTTP_PROXY: proxy.url, NO_PROXY: '' });
    expect(result.stderr).toBe('');
    expect(result.stdout.trim()).toBe('200 ok after 2 2');
    expect(seen.get('/flaky/python')).toBe(2);
  });

  it('never forwards Proxy-Authorization or other hop-by-hop headers', async () => {
    const result = await run('curl', [
      '-s',
      '-x',
      proxy.url,
      '-U',
      'user:secret',
      '-H',
      'Proxy-Connection: keep-alive',
      `http://127.0.0.1:${upstream.port}/echo`,
    ]);
    const echoed = JSON.parse(result.stdout) as { headers: Record<string, string>; url: string };
    expect(echoed.url).toBe('/echo');
    expect(echoed.headers['proxy-authorization']).toBeUndefined();
    expect(echoed.headers['proxy-connection']).toBeUndefined();
    expect(echoed.headers.host).toBe(`127.0.0.1:${upstream.port}`);
  });

  it('undici EnvHttpProxyAgent with proxyTunnel: false sends absolute-form and gets policies', async () => {
    const agent = new EnvHttpProxyAgent({ httpProxy: proxy.url, noProxy: '', proxyTunnel: false });
    try {
      const res = await undiciRequest(`http://127.0.0.1:${upstream.port}/flaky/undici`, { dispatcher: agent });
      expect(res.statusCode).toBe(200);
      expect(await res.body.text()).toBe('ok after 2');
      expect(seen.get('/flaky/undici')).toBe(2);
    } finally {
      await agent.close();
    }
  });

  it('undici EnvHttpProxyAgent by default tunnels with CONNECT, once, without a reconnect loop', async () => {
    const before = proxy.accessLogs().filter((line) => line.method === 'CONNECT').length;
    const agent = new EnvHttpProxyAgent({ httpProxy: proxy.url, noProxy: '' });
    try {
      const res = await undiciRequest(`http://127.0.0.1:${upstream.port}/flaky/undici-tunnel`, { dispatcher: agent });
      expect(res.statusCode).toBe(503); // inside a tunnel no policy applies
      await res.body.text();
    } finally {
      await agent.close();
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(proxy.accessLogs().filter((line) => line.method === 'CONNECT').length - before).toBe(1);
    expect(seen.get('/flaky/undici-tunnel')).toBe(1);
  });
});

describe('CONNECT tunnels', () => {
  it('python3-requests with HTTPS_PROXY reaches a TLS upstream', async () => {
    const ca = writeTemp('ca.pem', TEST_CA);
    const script = `import requests\nr = requests.get("https://127.0.0.1:${tls.port}/secure", verify="${ca}")\nprint(r.status_code, r.text)`;
    const result = await run('/usr/bin/python3', ['-c', script], { HTTPS_PROXY: proxy.url, NO_PROXY: '' });
    expect(result.stderr).toBe('');
    expect(result.stdout.trim()).toBe('200 secure ok');
  });

  it('carries 64 KiB both ways intact through a TCP echo target', async () => {
    const payload = randomBytes(64 * 1024);
    const received = await new Promise<Buffer>((resolve, reject) => {
      const socket = net.connect(Number(new URL(proxy.url).port), '127.0.0.1', () =>
        socket.write(`CONNECT 127.0.0.1:${echo.port} HTTP/1.1\r\nHost: 127.0.0.1:${echo.port}\r\n\r\n`),
      );
      let buffer = Buffer.alloc(0);
      let established = false;
      socket.on('data', (chunk: Buffer) => {
        buffer = Buffer.concat([buffer, chunk]);
        if (!established) {
          const end = buffer.indexOf('\r\n\r\n');
          if (end === -1) return;
          expect(buffer.subarray(0, end).toString()).toMatch(/^HTTP\/1.1 200/);
          established = true;
          buffer = buffer.subarray(end + 4);
          socket.write(payload);
        }
        if (established && buffer.length >= payload.length) {
          socket.destroy();
          resolve(buffer);
        }
      });
      socket.on('error', reject);
    });
    expect(createHash('sha256').update(received).digest('hex')).toBe(
      createHash('sha256').update(payload).digest('hex'),
    );
  });

  it('answers 502 for a refused target instead of dropping the socket', async () => {
    const spare = await startRawServer(() => {});
    const port = spare.port;
    await spare.close();
    const local = await startProxy(
      `version: 1\nforwardProxy: { enabled: true, allowHosts: ["127.0.0.1"], allowPorts: [${port}] }\nroutes: [ { name: any } ]\n`,
    );
    try {
      const answer = asResponse(await raw(local, `CONNECT 127.0.0.1:${port} HTTP/1.1\r\nHost: x\r\n\r\n`));
      expectProblem(answer, 'UPSTREAM_CONNECT_FAILED', {
        route: null,
        upstream: `127.0.0.1:${port}`,
        attempts: 1,
        detail: /refused the connection/,
      });
    } finally {
      await local.close();
    }
  });
});

describe('target checks', () => {
  const refusedTargets = [
    ['a host not in allowHosts', 'example.org', 80],
    ['a port not in allowPorts', '127.0.0.1', 1],
    ['169.254.169.254', '169.254.169.254', 80],
    ['10.0.0.1', '10.0.0.1', 80],
    ['a name resolving to 127.0.0.1', 'evil.test', 0],
    ['a name resolving to the metadata address', 'metadata.test', 0],
    ['a name resolving to 10.0.0.1', 'private.test', 0],
    ['a name resolving to ::1', 'v6.test', 0],
    ['a name resolving to ::ffff:127.0.0.1', 'mapped.test', 0],
    ['a name with one private address among public ones', 'mixed.test', 0],
  ] as const;

  for (const [name, host, port] of refusedTargets) {
    it(`refuses ${name}, absolute-form and CONNECT, without connecting`, async () => {
      const target = `${host}:${port || bystander.port}`;
      const before = bystander.openConnections();
      const absolute = asResponse(
        await raw(proxy, `GET http://${target}/x HTTP/1.1\r\nHost: ${target}\r\nConnection: close\r\n\r\n`),
      );
      expectProblem(absolute, 'HOST_NOT_ALLOWED', { route: null, upstream: null, attempts: 0 });
      const tunnel = asResponse(await raw(proxy, `CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`));
      expectProblem(tunnel, 'HOST_NOT_ALLOWED', { route: null, upstream: null, attempts: 0 });
      expect(bystander.openConnections()).toBe(before);
    });
  }

  for (const spelling of ['127.0.0.1', '[::1]', '[::ffff:127.0.0.1]', '2130706433', '0x7f.1', '127.1']) {
    it(`refuses loopback spelled ${spelling} when no exact entry allows it`, async () => {
      const target = `${spelling}:${bystander.port}`;
      const absolute = asResponse(
        await raw(strict, `GET http://${target}/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`),
      );
      expectProblem(absolute, 'HOST_NOT_ALLOWED', { route: null, upstream: null, attempts: 0 });
      const tunnel = asResponse(await raw(strict, `CONNECT ${target} HTTP/1.1\r\nHost: x\r\n\r\n`));
      expect(tunnel.status).toBe(403);
      expect(bystander.openConnections()).toBe(0);
    });
  }

  it('admits every spelling of an allowed IP entry', async () => {
    const answer = asResponse(
      await raw(
        proxy,
        `GET http://2130706433:${upstream.port}/spelled HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`,
      ),
    );
    expect(answer.status).toBe(200);
  });

  it('refuses absolute-form and CONNECT when the forward proxy is disabled', async () => {
    const absolute = asResponse(
      await raw(closed, `GET http://127.0.0.1:${upstream.port}/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`),
    );
    expectProblem(absolute, 'HOST_NOT_ALLOWED', {
      route: null,
      upstream: null,
      attempts: 0,
      detail: /forward proxy is disabled/,
    });
    const tunnel = asResponse(await raw(closed, `CONNECT 127.0.0.1:${upstream.port} HTTP/1.1\r\nHost: x\r\n\r\n`));
    expectProblem(tunnel, 'HOST_NOT_ALLOWED', {
      route: null,
      upstream: null,
      attempts: 0,
      detail: /forward proxy is disabled/,
    });
  });

  it('keeps the number of live per-target breakers bounded across 2,000 distinct targets', async () => {
    const ports = Array.from({ length: 2000 }, (_, i) => 40000 + i);
    const many = await startProxy(`version: 1
defaults: { retry: { maxRetries: 0 }, timeouts: { connect: 200ms } }
forwardProxy: { enabled: true, allowHosts: ["127.0.0.1"], allowPorts: [${ports.join(', ')}] }
routes: [ { name: any } ]
`);
    try {
      for (let batch = 0; batch < 20; batch++) {
        await Promise.all(
          ports
            .slice(batch * 100, batch * 100 + 100)
            .map((port) => raw(many, `GET http://127.0.0.1:${port}/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`)),
        );
        expect(many.app.runtime().forwardTargetCount()).toBeLessThanOrEqual(MAX_FORWARD_TARGETS);
      }
      expect(many.app.runtime().forwardTargetCount()).toBeLessThanOrEqual(MAX_FORWARD_TARGETS);
    } finally {
      await many.close();
    }
  });
});
