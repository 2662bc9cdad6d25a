/**
 * Credentials the app never holds (SPEC §18), on real sockets: each type
 * reaches a recording upstream and the app's own header never does; SigV4
 * is verified on the upstream's side (by @smithy/signature-v4, a second
 * implementation) for a first attempt and a retry; OAuth2 against a token
 * endpoint of the test's own; the leak guard; and no secret anywhere in the
 * logs, `/config`, `/status` or `/errors` afterwards.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Hash } from '@smithy/hash-node';
import { SignatureV4 } from '@smithy/signature-v4';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFaultUpstream, type FaultUpstream, type ReceivedRequest } from '../fixtures/fault-upstream.js';
import { request, startProxy, type TestProxy } from '../helpers/proxy.js';
import { skippingClock } from '../helpers/clock.js';

const BEARER = 'sk-bearer-0123456789abcdef';
const HEADER_KEY = 'azure-key-0123456789abcdef';
const PASSWORD = 'basic-password-0123456789';
const CLIENT_SECRET = 'client-secret-0123456789abcdef';
const AWS_KEY_ID = 'AKIDEXAMPLE0123';
const AWS_SECRET = 'aws-secret-wJalrXUtnFEMI-K7MDENG';
const AWS_TOKEN = 'aws-session-token-0123456789';
const SECRETS = [BEARER, HEADER_KEY, PASSWORD, CLIENT_SECRET, AWS_SECRET, AWS_TOKEN];

/** A token endpoint: counts its requests; `answer` decides each (default: a fresh token, 1 h). */
interface TokenEndpoint {
  readonly url: string;
  readonly requests: { authorization: string | undefined; body: string }[];
  tokens: string[];
  answer: (n: number) => { status: number; body: unknown; delayMs?: number };
  close(): Promise<void>;
}

async function startTokenEndpoint(): Promise<TokenEndpoint> {
  const endpoint: Omit<TokenEndpoint, 'url' | 'close'> = {
    requests: [],
    tokens: [],
    answer: (n) => ({
      status: 200,
      body: { access_token: `token-${n}-0123456789`, token_type: 'Bearer', expires_in: 3600 },
    }),
  };
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (chunk: Buffer) => (body += chunk.toString()));
    req.on('end', () => {
      endpoint.requests.push({ authorization: req.headers.authorization, body });
      const { status, body: answer, delayMs } = endpoint.answer(endpoint.requests.length);
      const token = (answer as { access_token?: string }).access_token;
      if (token) endpoint.tokens.push(token);
      setTimeout(() => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(answer));
      }, delayMs ?? 0);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    ...endpoint,
    get requests() {
      return endpoint.requests;
    },
    get tokens() {
      return endpoint.tokens;
    },
    set tokens(value) {
      endpoint.tokens = value;
    },
    get answer() {
      return endpoint.answer;
    },
    set answer(value) {
      endpoint.answer = value;
    },
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/oauth2/token`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

const dir = mkdtempSync(path.join(tmpdir(), 'bw-credentials-'));
let upstream: FaultUpstream;
let tokens: TokenEndpoint;
let proxy: TestProxy;
/** Paths the upstream answers with 401 while the token is one of these. */
const refused = new Set<string>();
/** Per path, the 1-based requests answered 503. */
const failing = new Map<string, Set<number>>();

beforeAll(async () => {
  writeFileSync(path.join(dir, 'bearer'), `${BEARER}\n`);
  writeFileSync(path.join(dir, 'password'), PASSWORD);
  writeFileSync(path.join(dir, 'client-secret'), CLIENT_SECRET);
  const seen = new Map<string, number>();
  upstream = await startFaultUpstream((_n, req) => {
    const url = req.url ?? '';
    const n = (seen.get(url) ?? 0) + 1;
    seen.set(url, n);
    // Retry-After: 3 on the proxy's clock (skipped at once): a retry is sent 3 s later, and signed for its time.
    if (failing.get(url)?.has(n)) return { kind: 'respond', status: 503, headers: { 'retry-after': '3' } };
    if (refused.has(req.headers.authorization ?? '')) return { kind: 'respond', status: 401 };
    return { kind: 'echo' };
  });
  tokens = await startTokenEndpoint();
  const retry = 'retry: { maxRetries: 2, retryOn: [gateway-error], backoff: { base: 1ms, max: 2ms } }';
  const route = (name: string) =>
    `  - { name: ${name}, match: { pathPrefix: /${name} }, stripPrefix: true, upstream: ${name}, ${retry} }`;
  proxy = await startProxy(
    `version: 1
upstreams:
  bearer:
    url: "${upstream.url}/bearer"
    credentials: { type: bearer, secret: { file: bearer } }
  header:
    url: "${upstream.url}/header"
    credentials: { type: header, header: api-key, prefix: "key ", secret: { env: AZURE_KEY } }
  basic:
    url: "${upstream.url}/basic"
    credentials: { type: basic, username: svc, password: { file: password } }
  oauth:
    url: "${upstream.url}/oauth"
    credentials: { type: oauth2, tokenUrl: "${tokens.url}", clientId: breakwater, clientSecret: { file: client-secret }, scope: "read write" }
    # failOn lists 401 and two calls decide: only the SPEC §18 rule keeps these 401s from opening it.
    circuitBreaker: { failOn: [5xx, "401"], minimumRequests: 2, failureRate: 50, hold: 0s }
  aws:
    url: "${upstream.url}/aws"
    credentials: { type: aws-sigv4, region: eu-west-1, service: dynamodb }
  plain:
    url: "${upstream.url}/plain"
routes:
${['bearer', 'header', 'basic', 'oauth', 'aws', 'plain'].map(route).join('\n')}
  - { name: egress, match: { pathPrefix: / } }
forwardProxy: { enabled: true, allowHosts: ["127.0.0.1"], allowPorts: [${new URL(upstream.url).port}], denyPrivateNetworks: false }
`,
    {
      file: path.join(dir, 'breakwater.yaml'),
      clock: skippingClock(),
      env: {
        AZURE_KEY: HEADER_KEY,
        AWS_ACCESS_KEY_ID: AWS_KEY_ID,
        AWS_SECRET_ACCESS_KEY: AWS_SECRET,
        AWS_SESSION_TOKEN: AWS_TOKEN,
      },
    },
  );
});

afterAll(async () => {
  await proxy.close();
  await Promise.all([upstream.close(), tokens.close()]);
});

const at = (prefix: string) => upstream.requests.filter((r) => r.url.startsWith(prefix));
const last = (prefix: string): ReceivedRequest => at(prefix).at(-1)!;
const appHeaders = { authorization: 'Bearer app-own-key', 'api-key': 'app-own', 'x-amz-date': '20000101T000000Z' };

describe('each credential type reaches the upstream; the app never does (SPEC §18)', () => {
  it('bearer from a file, trailing newline removed; the app Authorization dropped', async () => {
    const res = await request(`${proxy.url}/bearer/v1/charges`, { headers: appHeaders });
    expect(res.status).toBe(200);
    expect(last('/bearer').headers.authorization).toBe(`Bearer ${BEARER}`);
    expect(last('/bearer').headers['api-key']).toBe('app-own');
  });

  it('a named header with its prefix from a variable; the app header of that name dropped, its Authorization kept', async () => {
    await request(`${proxy.url}/header/deployments`, { headers: appHeaders });
    expect(last('/header').headers['api-key']).toBe(`key ${HEADER_KEY}`);
    expect(last('/header').headers.authorization).toBe('Bearer app-own-key');
  });

  it('basic: base64 of username:password', async () => {
    await request(`${proxy.url}/basic/x`, { headers: appHeaders });
    expect(last('/basic').headers.authorization).toBe(`Basic ${Buffer.from(`svc:${PASSWORD}`).toString('base64')}`);
  });

  it('a route with no credentials passes the app header through', async () => {
    await request(`${proxy.url}/plain/x`, { headers: { 'api-key': 'mine' } });
    expect(last('/plain').headers['api-key']).toBe('mine');
  });
});

describe('OAuth2 client credentials (SPEC §18)', () => {
  it('20 concurrent requests fetch one token, sent by client_secret_basic with the scope', async () => {
    tokens.answer = (n) => ({
      status: 200,
      delayMs: 100,
      body: { access_token: `token-${n}-0123456789`, token_type: 'Bearer', expires_in: 3600 },
    });
    const before = tokens.requests.length;
    const answers = await Promise.all(
      Array.from({ length: 20 }, (_, i) => request(`${proxy.url}/oauth/items/${i}`, { headers: appHeaders })),
    );
    expect(answers.map((r) => r.status)).toEqual(Array(20).fill(200));
    expect(tokens.requests.length - before).toBe(1);
    const fetch = tokens.requests.at(-1)!;
    // RFC 6749 §2.3.1: each part form-urlencoded, then Basic.
    const pair = Buffer.from(fetch.authorization!.slice('Basic '.length), 'base64').toString().split(':');
    expect(pair.map((part) => decodeURIComponent(part))).toEqual(['breakwater', CLIENT_SECRET]);
    expect(new URLSearchParams(fetch.body).get('grant_type')).toBe('client_credentials');
    expect(new URLSearchParams(fetch.body).get('scope')).toBe('read write');
    const sent = new Set(at('/oauth/items').map((r) => r.headers.authorization));
    expect([...sent]).toEqual([`Bearer ${tokens.tokens.at(-1)}`]);
  });

  it('the leak guard knows the current token: refused to another upstream', async () => {
    const before = upstream.requests.length;
    const res = await request(`${proxy.url}/plain/x`, { headers: { authorization: `Bearer ${tokens.tokens.at(-1)}` } });
    expect(res.json<{ code: string }>().code).toBe('CREDENTIAL_LEAK');
    expect(upstream.requests.length).toBe(before);
  });

  it('a 401 drops the token, fetches one more and sends the request once again', async () => {
    refused.add(`Bearer ${tokens.tokens.at(-1)}`);
    const before = tokens.requests.length;
    const res = await request(`${proxy.url}/oauth/refresh`, { method: 'POST', body: '{"a":1}' });
    expect(res.status).toBe(200);
    expect(res.headers['x-breakwater-attempts']).toBe('2');
    expect(tokens.requests.length - before).toBe(1);
    expect(at('/oauth/refresh').map((r) => r.body.toString())).toEqual(['{"a":1}', '{"a":1}']);
    expect(proxy.accessLogs().findLast((l) => l.route === 'oauth')!.flags).toContain('CREDENTIALS_REFRESHED');
  });

  it('a second 401 goes back to the app: one refetch at most, never a breaker failure', async () => {
    tokens.answer = (n) => ({
      status: 200,
      body: { access_token: `bad-${n}-0123456789`, token_type: 'Bearer', expires_in: 3600 },
    });
    refused.add(`Bearer ${tokens.tokens.at(-1)}`);
    for (let n = 1; n <= 5; n++) refused.add(`Bearer bad-${tokens.requests.length + n}-0123456789`);
    const fetchesBefore = tokens.requests.length;
    const res = await request(`${proxy.url}/oauth/twice`);
    expect(res.status).toBe(401);
    expect(res.headers['x-breakwater-attempts']).toBe('2');
    // One refetch for the first 401; the second 401 drops that token too, but fetches nothing more itself.
    expect(tokens.requests.length - fetchesBefore).toBe(1);
    expect(at('/oauth/twice')).toHaveLength(2);
    expect((await request(`${proxy.url}/oauth/twice-again`)).status).toBe(401);
    const status = await request(`${proxy.adminUrl}/status`);
    const oauth = status.json<{ upstreams: { name: string; circuit: { state: string } }[] }>();
    expect(JSON.stringify(oauth)).not.toContain('"open"');
  });

  it('a token endpoint that fails: CREDENTIALS_UNAVAILABLE at once, the answer journaled, no new fetch for 1 s', async () => {
    refused.clear();
    tokens.answer = () => ({ status: 401, body: { error: 'invalid_client', error_description: 'client unknown' } });
    // The current token expires: a fetch is needed.
    refused.add(`Bearer ${tokens.tokens.at(-1)}`);
    const before = tokens.requests.length;
    const res = await request(`${proxy.url}/oauth/down`);
    expect(res.status).toBe(502);
    const problem = res.json<{ code: string; retryable: boolean }>();
    expect(problem.code).toBe('CREDENTIALS_UNAVAILABLE');
    expect(problem.retryable).toBe(false);
    const again = await request(`${proxy.url}/oauth/down`);
    expect(again.json<{ code: string }>().code).toBe('CREDENTIALS_UNAVAILABLE');
    expect(tokens.requests.length - before).toBe(1);
    expect(at('/oauth/down')).toHaveLength(1);
    const journal = await request(`${proxy.adminUrl}/errors`);
    const entries = journal.json<{ errors: { code: string; provider: Record<string, unknown> | null }[] }>().errors;
    const entry = entries.find((e) => e.code === 'CREDENTIALS_UNAVAILABLE')!;
    expect(entry.provider).toMatchObject({ status: 401, code: 'invalid_client', message: 'client unknown' });
    expect(proxy.accessLogs().findLast((l) => l.route === 'oauth')!.flags).toContain('CREDENTIALS_UNAVAILABLE');
  });
});

/** The upstream side of SigV4: the request recomputed and signed by @smithy/signature-v4 with the same key. */
async function verifySigV4(received: ReceivedRequest): Promise<void> {
  const headers = received.headers as Record<string, string>;
  const auth = headers.authorization!;
  const signedNames = /SignedHeaders=([^,]+)/.exec(auth)![1]!.split(';');
  expect(signedNames).toEqual(expect.arrayContaining(['host', 'x-amz-date', 'x-amz-security-token']));
  expect(auth).toContain(
    `Credential=${AWS_KEY_ID}/${headers['x-amz-date']!.slice(0, 8)}/eu-west-1/dynamodb/aws4_request`,
  );
  const signer = new SignatureV4({
    credentials: { accessKeyId: AWS_KEY_ID, secretAccessKey: AWS_SECRET, sessionToken: AWS_TOKEN },
    region: 'eu-west-1',
    service: 'dynamodb',
    sha256: Hash.bind(null, 'sha256'),
  });
  const url = new URL(received.url, 'http://x');
  const date = headers['x-amz-date']!;
  const signingDate = new Date(
    `${date.slice(0, 4)}-${date.slice(4, 6)}-${date.slice(6, 8)}T${date.slice(9, 11)}:${date.slice(11, 13)}:${date.slice(13, 15)}Z`,
  );
  const signed = await signer.sign(
    {
      method: received.method,
      protocol: 'http:',
      hostname: headers.host!,
      path: url.pathname,
      query: Object.fromEntries(url.searchParams),
      headers: Object.fromEntries(signedNames.map((name) => [name, headers[name]!])),
      body: received.body,
    },
    { signingDate },
  );
  expect(auth).toBe(signed.headers.authorization);
  const { createHash } = await import('node:crypto');
  expect(headers['x-amz-content-sha256']).toBe(createHash('sha256').update(received.body).digest('hex'));
}

describe('AWS SigV4 (SPEC §18)', () => {
  it('signs the first attempt and the retry, each afresh, verified on the upstream side', async () => {
    failing.set('/aws/items?b=2&a=%2F', new Set([1]));
    const body = JSON.stringify({ TableName: 'orders', Key: { id: { S: '1' } } });
    const res = await request(`${proxy.url}/aws/items?b=2&a=%2F`, {
      method: 'POST',
      headers: {
        ...appHeaders,
        'content-type': 'application/x-amz-json-1.0',
        'x-amz-target': 'DynamoDB_20120810.GetItem',
        // A POST is retried when it brings a key (SPEC §3 retry.methods).
        'idempotency-key': 'get-1',
      },
      body,
    });
    expect(res.status).toBe(200);
    expect(res.headers['x-breakwater-attempts']).toBe('2');
    const attempts = at('/aws/items');
    expect(attempts).toHaveLength(2);
    // Signed afresh: the retry carries its own time (3 s later on the proxy's clock), and its own signature.
    expect(attempts[1]!.headers['x-amz-date']).not.toBe(attempts[0]!.headers['x-amz-date']);
    expect(attempts[1]!.headers.authorization).not.toBe(attempts[0]!.headers.authorization);
    for (const attempt of attempts) {
      await verifySigV4(attempt);
      expect(attempt.headers['x-amz-date']).not.toBe('20000101T000000Z');
      expect(attempt.headers['x-amz-security-token']).toBe(AWS_TOKEN);
      expect(attempt.headers.authorization).toContain(
        'SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-security-token;x-amz-target',
      );
    }
  });
});

describe('the leak guard (SPEC §18)', () => {
  const refusedBeforeConnecting = async (url: string, headers: Record<string, string> = {}) => {
    const before = upstream.requests.length;
    const res = await request(url, { headers });
    expect(res.status).toBe(403);
    expect(res.json<{ code: string }>().code).toBe('CREDENTIAL_LEAK');
    expect(upstream.requests.length).toBe(before);
    return res;
  };

  it('refuses a secret in Authorization, in a custom header and in the query string to another upstream', async () => {
    await refusedBeforeConnecting(`${proxy.url}/plain/x`, { authorization: `Bearer ${BEARER}` });
    await refusedBeforeConnecting(`${proxy.url}/plain/x`, { 'x-debug': `copy of ${HEADER_KEY}` });
    await refusedBeforeConnecting(`${proxy.url}/plain/x?key=${AWS_SECRET}`);
    await refusedBeforeConnecting(
      `${proxy.url}/plain/x?key=${encodeURIComponent(`${CLIENT_SECRET}`).replace('-', '%2D')}`,
    );
    const basic = Buffer.from(`svc:${PASSWORD}`).toString('base64');
    await refusedBeforeConnecting(`${proxy.url}/bearer/x`, { authorization: `Basic ${basic}` });
    const line = proxy.accessLogs().findLast((l) => l.route === 'bearer')!;
    expect(line.flags).toContain('CREDENTIAL_LEAK');
  });

  it('refuses a secret in the path, journaled and answered masked', async () => {
    const res = await refusedBeforeConnecting(`${proxy.url}/plain/bot${BEARER}/send`);
    expect(res.text).not.toContain(BEARER);
    const journal = await request(`${proxy.adminUrl}/errors`);
    const entry = journal
      .json<{ errors: { code: string; path: string; detail: string }[] }>()
      .errors.find((e) => e.code === 'CREDENTIAL_LEAK' && e.path.includes('/send'))!;
    expect(entry.path).toBe('/plain/bot<redacted>/send');
    expect(entry.detail).toContain("upstream 'bearer' in the URL");
  });

  it('refuses it to a forward-proxy target and in a CONNECT; both go through without it', async () => {
    const port = Number(new URL(proxy.url).port);
    const forward = (headers: Record<string, string>) =>
      new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = http.request(
          { host: '127.0.0.1', port, method: 'GET', path: `${upstream.url}/elsewhere`, headers },
          (res) => {
            let body = '';
            res.on('data', (chunk: Buffer) => (body += chunk.toString()));
            res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
          },
        );
        req.on('error', reject);
        req.end();
      });
    const connect = (headers: Record<string, string>) =>
      new Promise<number>((resolve, reject) => {
        const req = http.request({
          host: '127.0.0.1',
          port,
          method: 'CONNECT',
          path: new URL(upstream.url).host,
          headers,
        });
        req.on('connect', (res, socket) => {
          socket.destroy();
          resolve(res.statusCode ?? 0);
        });
        req.on('response', (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        });
        req.on('error', reject);
        req.end();
      });
    const leaked = await forward({ 'x-key': BEARER });
    expect(leaked.status).toBe(403);
    expect(JSON.parse(leaked.body)).toMatchObject({ code: 'CREDENTIAL_LEAK' });
    expect(upstream.requests.some((r) => r.url === '/elsewhere')).toBe(false);
    expect((await forward({ 'x-key': 'nothing secret' })).status).toBe(200);
    expect(await connect({ 'proxy-authorization': `Bearer ${BEARER}` })).toBe(403);
    expect(await connect({})).toBe(200);
  });

  it('lets a secret go to its own upstream', async () => {
    const res = await request(`${proxy.url}/bearer/x?echo=${BEARER}`, { headers: { 'x-key': BEARER } });
    expect(res.status).toBe(200);
  });
});

describe('secrets are never shown (SPEC §18, §7)', () => {
  it('no secret in any log line, /config, /status or /errors; /config shows file paths and env names', async () => {
    const config = (await request(`${proxy.adminUrl}/config`)).text;
    const status = (await request(`${proxy.adminUrl}/status`)).text;
    const errors = (await request(`${proxy.adminUrl}/errors`)).text;
    const metrics = (await request(`${proxy.adminUrl}/metrics`)).text;
    const seen = [proxy.rawLogs(), config, status, errors, metrics].join('\n');
    for (const secret of [...SECRETS, ...tokens.tokens]) expect(seen).not.toContain(secret);
    expect(seen).not.toContain(Buffer.from(`svc:${PASSWORD}`).toString('base64'));
    expect(config).toContain(path.join(dir, 'bearer'));
    expect(config).toMatch(/"env": ?"AZURE_KEY"/);
    const upstreams = JSON.parse(status) as { upstreams: { name: string; credentials: unknown }[] };
    const byName = Object.fromEntries(upstreams.upstreams.map((u) => [u.name, u.credentials]));
    expect(byName.bearer).toMatchObject({ type: 'bearer', source: 'file', error: null });
    expect(byName.header).toMatchObject({ type: 'header', source: 'env' });
    expect(byName.oauth).toMatchObject({ type: 'oauth2', source: 'token' });
    expect(byName.plain).toBeNull();
    expect(metrics).toMatch(/breakwater_credential_token_fetches_total\{upstream="oauth",result="success"\} [1-9]/);
  });
});
