/**
 * The edges of SPEC §18 an attacker or a broken provider reaches, on real
 * sockets: a secret in an absolute-form host is refused before any DNS
 * lookup and never shown; secrets in header names and percent-encoded
 * header values; an upstream that echoes its key in an error body; an
 * OAuth2 401 to a request whose resend goes silent (its own per-try timer),
 * or that cannot be sent again (the token still dropped); token answers
 * that are no tokens; a reload that keeps an unchanged upstream's token
 * and its file rotation.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFaultUpstream, waitUntil, type FaultUpstream } from '../fixtures/fault-upstream.js';
import { startOtlpReceiver } from '../fixtures/otlp-receiver.js';
import { request, startProxy, type TestProxy } from '../helpers/proxy.js';

const KEY = 'sk-edge-key-0123456789abcdef';
/** A key with capitals, as AWS and many providers issue them: header names and hosts reach the proxy lower-cased. */
const MIXED = 'AKIA-Mixed-Case-Key-0123';
const dir = mkdtempSync(path.join(tmpdir(), 'bw-credentials-edges-'));
let upstream: FaultUpstream;
let proxy: TestProxy;
let tokenServer: http.Server;
let fetches = 0;
/** The token endpoint's next answers: a status and a body, by default a fresh token. */
let tokenAnswer: (n: number) => { status: number; body: unknown } | 'hang' = (n) => ({
  status: 200,
  body: { access_token: `tok-${n}-0123456789`, token_type: 'Bearer', expires_in: 3600 },
});
const lookups: string[] = [];
/** Authorization values the upstream answers 401 besides the first token. */
const refusing = new Set<string>();

beforeAll(async () => {
  writeFileSync(path.join(dir, 'key'), KEY);
  writeFileSync(path.join(dir, 'mixed'), MIXED);
  tokenServer = http.createServer((req, res) => {
    req.resume();
    fetches += 1;
    const answer = tokenAnswer(fetches);
    if (answer === 'hang') return;
    const { status, body } = answer;
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  });
  await new Promise<void>((resolve) => tokenServer.listen(0, '127.0.0.1', resolve));
  const tokenUrl = `http://127.0.0.1:${(tokenServer.address() as AddressInfo).port}/token`;
  upstream = await startFaultUpstream((_n, req) => {
    const url = req.url ?? '';
    const auth = req.headers.authorization ?? '';
    if (url.startsWith('/keyed/echo')) return { kind: 'respond', status: 401, body: `{"error":"invalid key ${KEY}"}` };
    // The first token is refused; the resend of /oauth/silent then never answers.
    if (url.startsWith('/oauth') && (auth === 'Bearer tok-1-0123456789' || refusing.has(auth)))
      return { kind: 'respond', status: 401 };
    if (url.startsWith('/oauth/silent')) return { kind: 'hang' };
    return { kind: 'echo' };
  });
  proxy = await startProxy(
    `version: 1
upstreams:
  keyed:
    url: "${upstream.url}/keyed"
    credentials: { type: header, header: x-api-key, secret: { file: key } }
  oauth:
    url: "${upstream.url}/oauth"
    credentials: { type: oauth2, tokenUrl: "${tokenUrl}", clientId: bw, clientSecret: { file: key } }
  fresh:
    url: "${upstream.url}/fresh"
    credentials: { type: oauth2, tokenUrl: "${tokenUrl}", clientId: bw, clientSecret: { file: key } }
  huge:
    url: "${upstream.url}/huge"
    credentials: { type: oauth2, tokenUrl: "${tokenUrl}", clientId: bw, clientSecret: { file: key } }
  mixed:
    url: "${upstream.url}/mixed"
    credentials: { type: header, header: x-api-key, secret: { file: mixed } }
  slowtoken:
    url: "${upstream.url}/slowtoken"
    credentials: { type: oauth2, tokenUrl: "${tokenUrl}", clientId: bw, clientSecret: { file: key }, timeout: 30s }
  plain: { url: "${upstream.url}/plain" }
routes:
  - { name: mixed, match: { pathPrefix: /mixed }, stripPrefix: true, upstream: mixed }
  - name: slowtoken
    match: { pathPrefix: /slowtoken }
    upstream: slowtoken
    timeouts: { perTry: 500ms, total: 2s }
    retry: { maxRetries: 0 }
  - { name: fresh, match: { pathPrefix: /fresh }, upstream: fresh }
  - { name: huge, match: { pathPrefix: /huge }, upstream: huge }
  - { name: keyed, match: { pathPrefix: /keyed }, stripPrefix: true, upstream: keyed }
  - name: oauth
    match: { pathPrefix: /oauth }
    stripPrefix: true
    upstream: oauth
    timeouts: { perTry: 1s, total: 5s, firstByte: 1s }
  - { name: plain, match: { pathPrefix: /plain }, upstream: plain }
  - { name: egress, match: { pathPrefix: / } }
forwardProxy: { enabled: true, allowHosts: ["*"], denyPrivateNetworks: false }
`,
    {
      file: path.join(dir, 'breakwater.yaml'),
      lookup: async (hostname) => {
        lookups.push(hostname);
        return [{ address: '127.0.0.1', family: 4 }];
      },
    },
  );
});

afterAll(async () => {
  await proxy.close();
  await upstream.close();
  tokenServer.closeAllConnections();
  await new Promise<void>((resolve) => tokenServer.close(() => resolve()));
});

const journal = async () =>
  (await request(`${proxy.adminUrl}/errors`)).json<{ errors: Record<string, unknown>[] }>().errors;

describe('the leak guard at its edges (SPEC §18)', () => {
  it('a secret in an absolute-form host: refused before any DNS lookup, shown masked', async () => {
    const port = Number(new URL(proxy.url).port);
    const { status, body } = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = http.request(
        {
          host: '127.0.0.1',
          port,
          path: `http://${KEY}.attacker.example/x`,
          headers: { host: `${KEY}.attacker.example` },
        },
        (res) => {
          let text = '';
          res.on('data', (chunk: Buffer) => (text += chunk.toString()));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
        },
      );
      req.on('error', reject);
      req.end();
    });
    expect(status).toBe(403);
    expect(JSON.parse(body)).toMatchObject({ code: 'CREDENTIAL_LEAK' });
    expect(body).not.toContain(KEY);
    expect(lookups).toEqual([]);
    const line = proxy.accessLogs().at(-1)!;
    expect(line.flags).toContain('CREDENTIAL_LEAK');
    expect(line.host).toBe('<redacted>.attacker.example');
    const warned = proxy.logs().findLast((l) => l.msg === 'credential leak refused')!;
    expect(warned.level).toBe('warn');
  });

  it("a secret as a header's name, or percent-encoded (any case) in a value or the path", async () => {
    const escaped = [...KEY].map((c) => `%${c.charCodeAt(0).toString(16)}`).join('');
    for (const headers of [{ [`x-${KEY}`]: '1' }, { referer: `https://x.example/?k=${escaped}` }]) {
      const res = await request(`${proxy.url}/plain/x`, { headers });
      expect(res.json<{ code: string; detail: string }>().code).toBe('CREDENTIAL_LEAK');
      expect(res.text).not.toContain(KEY);
    }
    const res = await request(`${proxy.url}/plain/${escaped.toUpperCase()}/y`);
    expect(res.json<{ code: string }>().code).toBe('CREDENTIAL_LEAK');
    const entry = (await journal()).find((e) => String(e.path).endsWith('/y'))!;
    expect(entry.path).toBe('/plain/<redacted>/y');
  });

  it('an upstream that echoes its key in an error body is journaled masked', async () => {
    const res = await request(`${proxy.url}/keyed/echo`);
    expect(res.status).toBe(401);
    const text = JSON.stringify(await journal());
    expect(text).toContain('invalid key <redacted>');
    expect(text).not.toContain(KEY);
  });
});

describe('OAuth2 at its edges (SPEC §18)', () => {
  it('a resend after a 401 that goes silent ends on its own per-try timer, never hangs', async () => {
    const started = Date.now();
    const res = await request(`${proxy.url}/oauth/silent`);
    expect(res.status).toBe(504);
    expect(res.json<{ attempts: number }>().attempts).toBe(2);
    expect(Date.now() - started).toBeLessThan(4500);
    expect(fetches).toBe(2);
  });

  it('a 401 to a body that cannot be sent again goes back, and the token is still dropped', async () => {
    await request(`${proxy.url}/oauth/first`);
    const current = String(upstream.requests.at(-1)!.headers.authorization);
    refusing.add(current);
    const before = fetches;
    const refused = await request(`${proxy.url}/oauth/upload`, {
      method: 'POST',
      body: 'x'.repeat(100),
      chunked: true,
    });
    expect(refused.status).toBe(401);
    expect(refused.headers['x-breakwater-attempts']).toBe('1');
    expect(fetches).toBe(before);
    const next = await request(`${proxy.url}/oauth/after`);
    expect(next.status).toBe(200);
    expect(fetches).toBe(before + 1);
    expect(upstream.requests.at(-1)!.headers.authorization).not.toBe(current);
  });

  it('a 2xx that is no token answer is CREDENTIALS_UNAVAILABLE, journaled without its body', async () => {
    tokenAnswer = () => ({ status: 200, body: { access_token: 'tok-leaky-0123456789', token_type: 'mac' } });
    const res = await request(`${proxy.url}/fresh/x`);
    expect(res.json<{ code: string }>().code).toBe('CREDENTIALS_UNAVAILABLE');
    const entry = (await journal()).findLast((e) => e.code === 'CREDENTIALS_UNAVAILABLE')!;
    expect(entry.provider).toMatchObject({ status: 200, body: null });
    expect(JSON.stringify(await journal())).not.toContain('tok-leaky');
  });

  it('an absurd expires_in is taken as a year: /status still answers', async () => {
    tokenAnswer = () => ({
      status: 200,
      body: { access_token: 'tok-forever-0123456789', token_type: 'Bearer', expires_in: 1e13 },
    });
    expect((await request(`${proxy.url}/huge/x`)).status).toBe(200);
    const status = await request(`${proxy.adminUrl}/status`);
    expect(status.status).toBe(200);
    const huge = status.json<{ upstreams: { name: string; credentials: { expiresAt: string } }[] }>();
    const expiresAt = Date.parse(huge.upstreams.find((u) => u.name === 'huge')!.credentials.expiresAt);
    expect(expiresAt - Date.now()).toBeLessThan(366 * 24 * 3600 * 1000);
  });
});

describe('more edges (SPEC §18)', () => {
  it('a mixed-case secret as a header name or in a host (both reach the proxy lower-cased): refused, shown masked', async () => {
    const res = await request(`${proxy.url}/plain/x`, { headers: { [`x-${MIXED}`]: '1' } });
    expect(res.json<{ code: string }>().code).toBe('CREDENTIAL_LEAK');
    const port = Number(new URL(proxy.url).port);
    const status = await new Promise<number>((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port, path: `http://${MIXED}.example/x` }, (answer) => {
        answer.resume();
        resolve(answer.statusCode ?? 0);
      });
      req.on('error', reject);
      req.end();
    });
    expect(status).toBe(403);
    expect(proxy.accessLogs().at(-1)!.host).toBe('<redacted>.example');
    expect(proxy.rawLogs().toLowerCase()).not.toContain(MIXED.toLowerCase());
  });

  it('a secret in the path to its own upstream is sent, and logged and journaled masked', async () => {
    // KEY is also the OAuth2 client secret of other upstreams here; MIXED belongs to `mixed` alone.
    const res = await request(`${proxy.url}/mixed/bot${MIXED}/send`);
    expect(res.status).toBe(200);
    expect(upstream.requests.at(-1)!.url).toBe(`/mixed/bot${MIXED}/send`);
    expect(proxy.accessLogs().at(-1)!.path).toBe('/mixed/bot<redacted>/send');
  });

  it('the per-try timer running out while a token is fetched is a 504 timeout, not an internal error', async () => {
    tokenAnswer = () => 'hang';
    const res = await request(`${proxy.url}/slowtoken/x`);
    expect(res.status).toBe(504);
    expect(res.json<{ code: string }>().code).toBe('UPSTREAM_TIMEOUT');
    expect(proxy.logs().some((l) => l.msg === 'internal error')).toBe(false);
    tokenAnswer = (n) => ({
      status: 200,
      body: { access_token: `tok-${n}-0123456789`, token_type: 'Bearer', expires_in: 3600 },
    });
  });

  it("a reload keeps an unchanged upstream's OAuth2 token: no new fetch", async () => {
    expect((await request(`${proxy.url}/oauth/before-reload`)).status).toBe(200);
    const before = fetches;
    expect((await proxy.app.reload('test')).result).toBe('success');
    expect((await request(`${proxy.url}/oauth/after-reload`)).status).toBe(200);
    expect(fetches).toBe(before);
  });

  it('no secret in any log line, /status or /errors after all this', async () => {
    const seen = [
      proxy.rawLogs(),
      (await request(`${proxy.adminUrl}/status`)).text,
      (await request(`${proxy.adminUrl}/errors`)).text,
      (await request(`${proxy.adminUrl}/config`)).text,
    ].join('\n');
    expect(seen).not.toContain(KEY);
    expect(seen.toLowerCase()).not.toContain(MIXED.toLowerCase());
  });
});

describe('a leak in a traced request (SPEC §18, §11)', () => {
  it('the SERVER span carries the masked path and host, never the secret', async () => {
    const saved = process.env.OTEL_BSP_SCHEDULE_DELAY;
    process.env.OTEL_BSP_SCHEDULE_DELAY = '50';
    const receiver = await startOtlpReceiver();
    const traced = await startProxy(
      `version: 1
tracing: { enabled: true, endpoint: "${receiver.url}", protocol: http/json, serviceName: bw-leak }
upstreams:
  keyed:
    url: "${upstream.url}/keyed"
    credentials: { type: header, header: x-api-key, secret: { file: key } }
  plain: { url: "${upstream.url}/plain" }
routes:
  - { name: keyed, match: { pathPrefix: /keyed }, upstream: keyed }
  - { name: plain, match: { pathPrefix: /plain }, upstream: plain }
`,
      { file: path.join(dir, 'traced.yaml') },
    );
    try {
      const res = await request(`${traced.url}/plain/bot${KEY}/send`);
      expect(res.status).toBe(403);
      await waitUntil(() => receiver.spans.some((span) => span.kind === 2));
      const text = JSON.stringify(receiver.spans);
      expect(text).not.toContain(KEY);
      expect(receiver.spans.find((span) => span.kind === 2)!.attributes['url.path']).toBe('/plain/bot<redacted>/send');
    } finally {
      await traced.close();
      await receiver.close();
      if (saved === undefined) delete process.env.OTEL_BSP_SCHEDULE_DELAY;
      else process.env.OTEL_BSP_SCHEDULE_DELAY = saved;
    }
  });
});
