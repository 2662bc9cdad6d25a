/**
 * Idempotency keys for the app (SPEC §18 `idempotencyKeys`), on real
 * sockets: a POST without a key gets one UUID, the same on every attempt and
 * failover target, and is retried like a request that brought one; without
 * the option it is not retried; a key the app sent is kept; the header's
 * name is the upstream's.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFaultUpstream, type FaultUpstream } from '../fixtures/fault-upstream.js';
import { request, startProxy, type TestProxy } from '../helpers/proxy.js';

let primary: FaultUpstream;
let second: FaultUpstream;
let proxy: TestProxy;
/** Per path, the 1-based requests the primary answers 503. */
const failing = new Map<string, Set<number>>();

beforeAll(async () => {
  let seen = new Map<string, number>();
  primary = await startFaultUpstream((_n, req) => {
    const path = req.url ?? '';
    const n = (seen.get(path) ?? 0) + 1;
    seen.set(path, n);
    return failing.get(path)?.has(n) ? { kind: 'respond', status: 503 } : { kind: 'echo' };
  });
  second = await startFaultUpstream(() => ({ kind: 'echo' }));
  seen = new Map();
  const retry = 'retry: { maxRetries: 2, retryOn: [gateway-error], backoff: { base: 1ms, max: 2ms } }';
  proxy = await startProxy(`version: 1
upstreams:
  keyed: { url: "${primary.url}/keyed", idempotencyKeys: { enabled: true } }
  custom: { url: "${primary.url}/custom", idempotencyKeys: { enabled: true, header: X-Request-Key } }
  plain: { url: "${primary.url}/plain" }
  spread:
    url: "${primary.url}/spread"
    idempotencyKeys: { enabled: true }
    failover: [{ name: second, url: "${second.url}/spread" }]
routes:
  - { name: keyed, match: { pathPrefix: /keyed }, stripPrefix: true, upstream: keyed, ${retry} }
  - { name: custom, match: { pathPrefix: /custom }, stripPrefix: true, upstream: custom, ${retry} }
  - { name: plain, match: { pathPrefix: /plain }, stripPrefix: true, upstream: plain, ${retry} }
  - { name: spread, match: { pathPrefix: /spread }, stripPrefix: true, upstream: spread, ${retry} }
`);
});

afterAll(async () => {
  await proxy.close();
  await Promise.all([primary.close(), second.close()]);
});

const post = (path: string, headers: Record<string, string> = {}) =>
  request(`${proxy.url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: '{"amount":100}',
  });
const seenAt = (fixture: FaultUpstream, path: string) => fixture.requests.filter((r) => r.url === path);
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

describe('idempotency keys (SPEC §18)', () => {
  it('gives a POST without a key one UUID, the same on both attempts of a 503-then-200, and retries it', async () => {
    failing.set('/keyed/charges', new Set([1]));
    const res = await post('/keyed/charges');
    expect(res.status).toBe(200);
    expect(res.headers['x-breakwater-attempts']).toBe('2');
    const keys = seenAt(primary, '/keyed/charges').map((r) => r.headers['idempotency-key']);
    expect(keys).toHaveLength(2);
    expect(keys[0]).toMatch(UUID);
    expect(keys[1]).toBe(keys[0]);
    expect(proxy.accessLogs().findLast((l) => l.route === 'keyed')!.flags).toEqual(
      expect.arrayContaining(['IDEMPOTENCY_KEY_ADDED', 'RETRIED']),
    );
  });

  it('makes a new key for each client request', async () => {
    await post('/keyed/refunds');
    await post('/keyed/refunds');
    const keys = seenAt(primary, '/keyed/refunds').map((r) => r.headers['idempotency-key']);
    expect(new Set(keys).size).toBe(2);
  });

  it('does not retry the POST without the option', async () => {
    failing.set('/plain/charges', new Set([1]));
    const res = await post('/plain/charges');
    expect(res.status).toBe(503);
    const seen = seenAt(primary, '/plain/charges');
    expect(seen).toHaveLength(1);
    expect(seen[0]!.headers['idempotency-key']).toBeUndefined();
  });

  it('keeps the key the app sent, unflagged', async () => {
    failing.set('/keyed/own', new Set([1]));
    const res = await post('/keyed/own', { 'idempotency-key': 'app-chosen-1' });
    expect(res.status).toBe(200);
    expect(seenAt(primary, '/keyed/own').map((r) => r.headers['idempotency-key'])).toEqual([
      'app-chosen-1',
      'app-chosen-1',
    ]);
    expect(proxy.accessLogs().findLast((l) => l.path === '/keyed/own')!.flags).not.toContain('IDEMPOTENCY_KEY_ADDED');
  });

  it('uses the upstream’s header name, for the key and for the retry rule', async () => {
    failing.set('/custom/charges', new Set([1]));
    const res = await post('/custom/charges');
    expect(res.status).toBe(200);
    const seen = seenAt(primary, '/custom/charges');
    expect(seen).toHaveLength(2);
    expect(seen[0]!.headers['x-request-key']).toMatch(UUID);
    expect(seen[1]!.headers['x-request-key']).toBe(seen[0]!.headers['x-request-key']);
    expect(seen[0]!.headers['idempotency-key']).toBeUndefined();
  });

  it('sends the same key to the failover target', async () => {
    failing.set('/spread/charges', new Set([1, 2, 3]));
    const res = await post('/spread/charges');
    expect(res.status).toBe(200);
    expect(res.headers['x-breakwater-target']).toBe('spread/second');
    const first = seenAt(primary, '/spread/charges')[0]!.headers['idempotency-key'];
    expect(first).toMatch(UUID);
    expect(seenAt(second, '/spread/charges').map((r) => r.headers['idempotency-key'])).toEqual([first]);
  });
});
