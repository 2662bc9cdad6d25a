/**
 * `errors.normalize: all` (SPEC §5): every upstream 4xx/5xx in the one
 * problem body, the status kept, code and hint from the status, the
 * provider's own message, code and body in `provider`, and the quota and
 * Retry-After it announced. Dialect bodies are copied from the providers'
 * documentation.
 */
import http from 'node:http';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UPSTREAM_STATUSES } from '../../src/errors/upstream-catalog.js';
import { startFaultUpstream, type Behaviour, type FaultUpstream } from '../fixtures/fault-upstream.js';
import { request, startProxy, type TestProxy, type TestResponse } from '../helpers/proxy.js';

const responses = new Map<string, Behaviour>();
let upstream: FaultUpstream;
let proxy: TestProxy;

function serve(path: string, status: number, body: string | Buffer, headers: http.OutgoingHttpHeaders = {}): string {
  responses.set(path, { kind: 'respond', status, headers, body });
  return path;
}

beforeAll(async () => {
  upstream = await startFaultUpstream(
    (_n, req) => responses.get(req.url ?? '') ?? { kind: 'respond', status: 200, body: 'fine' },
  );
  proxy = await startProxy(`version: 1
defaults: { retry: { maxRetries: 0 }, errors: { normalize: all } }
upstreams:
  provider: { url: "${upstream.url}", circuitBreaker: { failureRate: 100 } }
routes:
  - { name: passthrough, match: { pathPrefix: /raw }, upstream: provider, errors: { normalize: proxy } }
  - { name: api, upstream: provider }
`);
});

afterAll(async () => {
  await proxy.close();
  await upstream.close();
});

interface Normalized {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: string;
  source: string;
  responsibility: string;
  retryable: boolean;
  hint: string;
  route: string;
  upstream: string;
  attempts: number;
  requestId: string;
  retryAfterSeconds?: number;
  provider: { status: number; message: string | null; code: string | null; body: unknown };
  quota?: { limit?: number; remaining?: number; resetSeconds?: number };
}

function normalized(res: TestResponse, status: number, code: string): Normalized {
  expect(res.status).toBe(status);
  expect(res.headers['content-type']).toBe('application/problem+json');
  expect(res.headers['x-breakwater-error']).toBe(code);
  const body = res.json<Normalized>();
  expect(body).toMatchObject({ status, code, source: 'upstream', route: 'api', upstream: 'provider', attempts: 1 });
  expect(body.type).toBe(`urn:breakwater:error:${code.toLowerCase().replace(/_/g, '-')}`);
  expect(body.requestId).toBe(res.headers['x-request-id']);
  expect(body.hint.length).toBeGreaterThan(20);
  expect(body.provider.status).toBe(status);
  return body;
}

describe('status table', () => {
  const rows = [
    [400, 'BAD_REQUEST', 'client', false],
    [401, 'UNAUTHORIZED', 'client', false],
    [403, 'FORBIDDEN', 'client', false],
    [404, 'NOT_FOUND', 'client', false],
    [405, 'METHOD_NOT_ALLOWED', 'client', false],
    [409, 'CONFLICT', 'client', false],
    [422, 'UNPROCESSABLE', 'client', false],
    [429, 'UPSTREAM_RATE_LIMITED', 'client', true],
    [500, 'UPSTREAM_INTERNAL_ERROR', 'upstream', true],
    [501, 'NOT_IMPLEMENTED', 'upstream', false],
    [502, 'UPSTREAM_BAD_GATEWAY', 'upstream', true],
    [503, 'UPSTREAM_UNAVAILABLE', 'upstream', true],
    [504, 'UPSTREAM_GATEWAY_TIMEOUT', 'upstream', true],
    [418, 'UPSTREAM_CLIENT_ERROR', 'client', false],
    [507, 'UPSTREAM_SERVER_ERROR', 'upstream', true],
  ] as const;
  for (const [status, code, responsibility, retryable] of rows) {
    it(`rewrites ${status} as ${code}, ${responsibility}'s side, retryable ${retryable}`, async () => {
      const path = serve(`/status/${status}`, status, `{"message":"provider says ${status}"}`, {
        'content-type': 'application/json',
      });
      const body = normalized(await request(`${proxy.url}${path}`), status, code);
      expect(body.responsibility).toBe(responsibility);
      expect(body.retryable).toBe(retryable);
      expect(body.provider.message).toBe(`provider says ${status}`);
      expect(body.detail).toBe(`Upstream 'provider' answered ${status} on route 'api': provider says ${status}`);
    });
  }

  it('gives every status its own hint', () => {
    const hints = Object.values(UPSTREAM_STATUSES).map((entry) => entry.hint);
    expect(new Set(hints).size).toBe(hints.length);
  });

  it('keeps the Allow header of a 405, which its hint points to', async () => {
    const path = serve('/allow', 405, '', { allow: 'GET, POST' });
    const res = await request(`${proxy.url}${path}`, { method: 'DELETE' });
    expect(res.headers.allow).toBe('GET, POST');
  });
});

describe('provider dialects', () => {
  const cases: [string, number, string, string | Buffer, string | null, string | null][] = [
    [
      'Stripe',
      402,
      'application/json',
      JSON.stringify({
        error: {
          code: 'resource_missing',
          doc_url: 'https://stripe.com/docs/error-codes/resource-missing',
          message: "No such customer: 'cus_123'",
          param: 'id',
          request_log_url: 'https://dashboard.stripe.com/logs/req_1',
          type: 'invalid_request_error',
        },
      }),
      "No such customer: 'cus_123'",
      'resource_missing',
    ],
    [
      'GitHub',
      422,
      'application/json; charset=utf-8',
      JSON.stringify({
        message: 'Validation Failed',
        errors: [{ resource: 'Issue', field: 'title', code: 'missing_field' }],
        documentation_url: 'https://docs.github.com/rest/issues/issues#create-an-issue',
      }),
      'Validation Failed: Issue title missing_field',
      'missing_field',
    ],
    [
      'Slack',
      400,
      'application/json; charset=utf-8',
      JSON.stringify({ ok: false, error: 'channel_not_found' }),
      'channel_not_found',
      'channel_not_found',
    ],
    [
      'OpenAI',
      401,
      'application/json',
      JSON.stringify({
        error: {
          message:
            'Incorrect API key provided: sk-abc***. You can find your API key at https://platform.openai.com/account/api-keys.',
          type: 'invalid_request_error',
          param: null,
          code: 'invalid_api_key',
        },
      }),
      'Incorrect API key provided: sk-abc***. You can find your API key at https://platform.openai.com/account/api-keys.',
      'invalid_api_key',
    ],
    [
      'OpenAI without a code',
      429,
      'application/json',
      JSON.stringify({
        error: { message: 'Rate limit reached for requests', type: 'requests', param: null, code: null },
      }),
      'Rate limit reached for requests',
      'requests',
    ],
    [
      'Google APIs',
      404,
      'application/json; charset=UTF-8',
      JSON.stringify({
        error: { code: 404, message: 'Requested entity was not found.', status: 'NOT_FOUND', details: [] },
      }),
      'Requested entity was not found.',
      'NOT_FOUND',
    ],
    [
      'AWS JSON',
      400,
      'application/x-amz-json-1.0',
      JSON.stringify({
        __type: 'com.amazonaws.dynamodb.v20120810#ResourceNotFoundException',
        message: 'Requested resource not found',
      }),
      'Requested resource not found',
      'ResourceNotFoundException',
    ],
    [
      'AWS XML',
      403,
      'application/xml',
      '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code><Message>Access Denied</Message><RequestId>4442587FB7D0A2F9</RequestId></Error>',
      'Access Denied',
      'AccessDenied',
    ],
    [
      'Twilio',
      404,
      'application/json',
      JSON.stringify({
        code: 20404,
        message: 'The requested resource /2010-04-01/Accounts/AC123/Messages/SM123.json was not found',
        more_info: 'https://www.twilio.com/docs/errors/20404',
        status: 404,
      }),
      'The requested resource /2010-04-01/Accounts/AC123/Messages/SM123.json was not found',
      '20404',
    ],
    [
      'problem+json',
      403,
      'application/problem+json',
      JSON.stringify({
        type: 'https://example.com/probs/out-of-credit',
        title: 'You do not have enough credit.',
        detail: 'Your current balance is 30, but that costs 50.',
        instance: '/account/12345/msgs/abc',
      }),
      'Your current balance is 30, but that costs 50.',
      'https://example.com/probs/out-of-credit',
    ],
    [
      'HTML',
      502,
      'text/html',
      '<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>',
      '502 Bad Gateway',
      null,
    ],
    [
      'plain text',
      503,
      'text/plain',
      '\nupstream connect error or disconnect/reset before headers\nmore',
      'upstream connect error or disconnect/reset before headers',
      null,
    ],
  ];
  for (const [name, status, contentType, body, message, code] of cases) {
    it(`reads ${name}'s message and code`, async () => {
      const path = serve(`/dialect/${name.replace(/\W/g, '-')}`, status, body, { 'content-type': contentType });
      const res = await request(`${proxy.url}${path}`);
      const problem = res.json<Normalized>();
      expect(res.status).toBe(status);
      expect(problem.provider.message).toBe(message);
      expect(problem.provider.code).toBe(code);
      expect(problem.provider.body).toEqual(contentType.includes('json') ? JSON.parse(body as string) : body);
    });
  }

  it('reads invalid JSON with a JSON content type as text', async () => {
    const path = serve('/bad-json', 500, '{"error": "unterminated', { 'content-type': 'application/json' });
    const problem = normalized(await request(`${proxy.url}${path}`), 500, 'UPSTREAM_INTERNAL_ERROR');
    expect(problem.provider.body).toBe('{"error": "unterminated');
    expect(problem.provider.message).toBe('{"error": "unterminated');
  });

  it('reads XML sent with a JSON content type', async () => {
    const path = serve(
      '/xml-as-json',
      403,
      '<Error><Code>SignatureDoesNotMatch</Code><Message>Bad signature</Message></Error>',
      { 'content-type': 'application/json' },
    );
    const problem = normalized(await request(`${proxy.url}${path}`), 403, 'FORBIDDEN');
    expect(problem.provider.code).toBe('SignatureDoesNotMatch');
    expect(problem.provider.message).toBe('Bad signature');
  });

  it('copes with an empty body', async () => {
    const path = serve('/empty', 404, '');
    const problem = normalized(await request(`${proxy.url}${path}`), 404, 'NOT_FOUND');
    expect(problem.provider).toEqual({ status: 404, message: null, code: null, body: null });
    expect(problem.detail).toBe("Upstream 'provider' answered 404 on route 'api'");
  });

  it('reads a 1 MiB error body only up to its cap and cuts provider.body at 4 KiB', async () => {
    const path = serve('/huge', 500, Buffer.alloc(1024 * 1024, 'x'), { 'content-type': 'text/plain' });
    const problem = normalized(await request(`${proxy.url}${path}`), 500, 'UPSTREAM_INTERNAL_ERROR');
    expect(Buffer.byteLength(problem.provider.body as string)).toBe(4096);
    expect(problem.provider.message!.length).toBe(500);
  });

  it('cuts a UTF-8 body on a character boundary', async () => {
    const path = serve('/utf8', 400, 'é'.repeat(3000), { 'content-type': 'text/plain; charset=utf-8' }); // 6,000 bytes
    const problem = normalized(await request(`${proxy.url}${path}`), 400, 'BAD_REQUEST');
    const text = problem.provider.body as string;
    expect(Buffer.byteLength(text)).toBe(4096);
    expect(text).toBe('é'.repeat(2048));
    expect(text).not.toContain('\uFFFD');
  });

  it('decodes a gzip-compressed error body', async () => {
    const path = serve('/gzip', 404, gzipSync(JSON.stringify({ message: 'compressed message' })), {
      'content-type': 'application/json',
      'content-encoding': 'gzip',
    });
    const res = await request(`${proxy.url}${path}`);
    expect(res.headers['content-encoding']).toBeUndefined();
    expect(res.json<Normalized>().provider.message).toBe('compressed message');
  });
});

describe('Retry-After and quota', () => {
  it('keeps Retry-After and gives it as retryAfterSeconds', async () => {
    const path = serve('/retry-after', 503, 'busy', { 'retry-after': '17' });
    const res = await request(`${proxy.url}${path}`);
    expect(res.headers['retry-after']).toBe('17');
    expect(res.json<Normalized>().retryAfterSeconds).toBe(17);
  });

  it('gives retry-after-ms (SPEC §15) as retryAfterSeconds rounded up, and keeps the hint', async () => {
    const path = serve('/retry-after-ms', 429, 'slow down', { 'retry-after-ms': '1500', 'retry-after': '17' });
    const res = await request(`${proxy.url}${path}`);
    expect(res.headers['retry-after-ms']).toBe('1500');
    expect(res.json<Normalized>().retryAfterSeconds).toBe(2);
  });

  const families: [string, http.OutgoingHttpHeaders, { limit?: number; remaining?: number; resetSeconds?: number }][] =
    [
      [
        'IETF structured fields',
        { 'ratelimit-policy': '"default";q=100;w=60', ratelimit: '"default";r=0;t=42' },
        { limit: 100, remaining: 0, resetSeconds: 42 },
      ],
      [
        'IETF draft fields',
        { 'ratelimit-limit': '60', 'ratelimit-remaining': '0', 'ratelimit-reset': '30' },
        { limit: 60, remaining: 0, resetSeconds: 30 },
      ],
      [
        'X-RateLimit with a reset in seconds',
        { 'x-ratelimit-limit': '5000', 'x-ratelimit-remaining': '0', 'x-ratelimit-reset': '120' },
        { limit: 5000, remaining: 0, resetSeconds: 120 },
      ],
      [
        'OpenAI x-ratelimit-*-requests',
        {
          'x-ratelimit-limit-requests': '3500',
          'x-ratelimit-remaining-requests': '0',
          'x-ratelimit-reset-requests': '6m0s',
        },
        { limit: 3500, remaining: 0, resetSeconds: 360 },
      ],
    ];
  for (const [name, headers, quota] of families) {
    it(`reads the quota from ${name}`, async () => {
      const path = serve(`/quota/${name.replace(/\W/g, '-')}`, 429, '{"message":"slow down"}', {
        'content-type': 'application/json',
        ...headers,
      });
      const res = await request(`${proxy.url}${path}`);
      const body = normalized(res, 429, 'UPSTREAM_RATE_LIMITED');
      expect(body.quota).toEqual(quota);
      for (const name of Object.keys(headers)) expect(res.headers[name]).toBe(headers[name]);
    });
  }

  it('reads an X-RateLimit reset given as an epoch, against the response Date', async () => {
    const date = new Date(Date.now() + 3_600_000); // a provider clock an hour ahead of ours
    const reset = Math.floor(date.getTime() / 1000) + 90;
    const path = serve('/quota/epoch', 429, '', {
      'x-ratelimit-limit': '60',
      'x-ratelimit-remaining': '0',
      'x-ratelimit-reset': String(reset),
      date: date.toUTCString(),
    });
    const body = normalized(await request(`${proxy.url}${path}`), 429, 'UPSTREAM_RATE_LIMITED');
    expect(body.quota!.resetSeconds).toBeGreaterThanOrEqual(89);
    expect(body.quota!.resetSeconds).toBeLessThanOrEqual(91);
  });
});

describe('what is left alone', () => {
  it('never touches 2xx and 3xx responses', async () => {
    const path = serve('/created', 201, '{"id":1}', { 'content-type': 'application/json' });
    const res = await request(`${proxy.url}${path}`);
    expect(res.status).toBe(201);
    expect(res.text).toBe('{"id":1}');
    const redirect = serve('/moved', 301, '', { location: '/new' });
    expect((await request(`${proxy.url}${redirect}`)).headers.location).toBe('/new');
  });

  it('answers HEAD errors with headers only', async () => {
    const path = serve('/head-404', 404, '');
    const res = await request(`${proxy.url}${path}`, { method: 'HEAD' });
    expect(res.status).toBe(404);
    expect(res.headers['x-breakwater-error']).toBe('NOT_FOUND');
    expect(res.body.length).toBe(0);
  });

  it('passes upstream errors through byte for byte with normalize: proxy', async () => {
    const body = '{"error":{"message":"kept as is"}}';
    serve('/raw/err', 404, body, { 'content-type': 'application/json', 'x-provider': 'p' });
    const res = await request(`${proxy.url}/raw/err`);
    expect(res.status).toBe(404);
    expect(res.text).toBe(body);
    expect(res.headers['x-provider']).toBe('p');
    expect(res.headers['x-breakwater-error']).toBeUndefined();
  });
});
