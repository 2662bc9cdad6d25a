/**
 * What a valid file becomes: defaults merged key by key, units converted,
 * frozen; and SPEC §3's example, a minimal file and a file of empty policy
 * blocks all accepted.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { formatProblem, parseConfig, type Config } from '../../src/config/index.js';
import { ROOT } from '../helpers/cli.js';
import { redactedConfig } from '../../src/observe/redact.js';

const SPEC_EXAMPLE = readFileSync(path.join(ROOT, 'test/fixtures/spec-example.yaml'), 'utf8');

function load(text: string, env: NodeJS.ProcessEnv = {}): Config {
  const result = parseConfig(text, 'test.yaml', { env });
  if (!result.ok) throw new Error(result.problems.map(formatProblem).join('\n'));
  return result.loaded.config;
}

const MINIMAL = `version: 1
upstreams:
  api: { url: "https://api.example.com" }
routes:
  - { name: api, upstream: api }
`;

describe('valid files', () => {
  it("reads the example of the project's copy of SPEC §3, verbatim", () => {
    const spec = readFileSync(path.join(ROOT, 'test/fixtures/SPEC.md'), 'utf8');
    const start = spec.indexOf('```yaml\nversion: 1');
    expect(start).toBeGreaterThan(0);
    expect(SPEC_EXAMPLE).toBe(spec.slice(start + '```yaml\n'.length, spec.indexOf('```', start + 7)));
  });

  it('accepts SPEC §3 example as it is and reads every value', () => {
    const config = load(SPEC_EXAMPLE, { STRIPE_KEY: 'sk_test_1' });
    const [route] = config.routes;
    expect(route).toBeDefined();
    expect(route!.name).toBe('stripe');
    expect(route!.match).toEqual({ pathPrefix: '/stripe', host: null, methods: null });
    expect(route!.stripPrefix).toBe(true);
    expect(route!.timeouts).toEqual({ connect: 2000, perTry: 5000, total: 30_000, firstByte: null, idle: null });
    expect(route!.retry.maxRetries).toBe(3);
    expect(route!.rateLimit).toEqual({
      rate: 25,
      burst: 50,
      maxConcurrent: 10,
      queue: { size: 100, timeout: 2000 },
      key: 'route',
      shared: false,
      mode: 'enforce',
      cost: null,
      settle: 'none',
    });
    expect(route!.headers.request.set).toEqual({ Authorization: 'Bearer sk_test_1' });
    expect(config.upstreams.stripe!.pacing.minRate).toBeCloseTo(0.2);
    expect(config.upstreams.stripe!.pacing.engageBelow).toBe(0.5);
    expect(config.redis).toEqual({
      url: 'redis://127.0.0.1:6379',
      onError: 'local',
      timeout: 250,
      sentinel: null,
      cluster: null,
      username: null,
      password: null,
      db: null,
      tls: null,
    });
    expect(config.forwardProxy).toMatchObject({
      enabled: true,
      allowHosts: ['api.stripe.com', '*.github.com'],
      connect: { mode: 'tunnel' },
    });
  });

  it('records which values came from the environment, for redaction', () => {
    const result = parseConfig(SPEC_EXAMPLE, 'spec.yaml', { env: { STRIPE_KEY: 'sk' } });
    expect(result.ok && [...result.loaded.envPaths]).toEqual(['routes[0].headers.request.set.Authorization']);
  });

  it('accepts a minimal file and fills every default', () => {
    const config = load(MINIMAL);
    expect(config.listen).toEqual({ host: '127.0.0.1', port: 3128, serverNames: [], allowOrigins: [] });
    expect(config.admin).toEqual({ host: '0.0.0.0', port: 9901, token: null, tokenFile: null });
    expect(config.logging).toEqual({ level: 'info', accessLog: true });
    expect(config.limits).toEqual({
      maxBodySize: 10 * 1024 * 1024,
      maxHeaderSize: 16 * 1024,
      clientBodyTimeout: 30_000,
    });
    expect(config.shutdown).toEqual({ drainTimeout: 20_000 });
    expect(config.redis).toBeNull();
    expect(config.forwardProxy).toEqual({
      enabled: false,
      allowHosts: [],
      allowPorts: [80, 443],
      denyPrivateNetworks: true,
      mode: 'enforce',
      callers: [],
      connect: { mode: 'tunnel' },
      intercept: null,
      // Forward targets have no upstream block: every one gets the built-in breaker, resolved here with the rest.
      circuitBreaker: config.upstreams.api!.circuitBreaker,
    });
    expect(config.forwardProxy.circuitBreaker).toMatchObject({ openFor: 250, maxOpenFor: 1000, hold: 2000 });
    const [route] = config.routes;
    expect(route).toMatchObject({
      match: { pathPrefix: '/', host: null, methods: null },
      stripPrefix: false,
      clientOverrides: false,
      rateLimit: null,
      errors: { normalize: 'proxy' },
      headers: { request: { set: {}, remove: [] }, response: { set: {}, remove: [] } },
    });
    expect(config.upstreams.api!.circuitBreaker).toEqual({
      failureRate: 90,
      minimumRequests: 20,
      window: 10_000,
      openFor: 250,
      maxOpenFor: 1_000,
      hold: 2_000,
      shedding: { enabled: true, k: 2 },
      failOn: ['5xx', 'timeout', 'connect-failure', 'reset'],
      mode: 'enforce',
    });
    expect(route!.retry).toMatchObject({
      maxRetries: 3,
      backoff: { base: 500, max: 5_000 },
      budget: { ratio: 0.4, minPerSecond: 10 },
    });
  });

  it('keeps an openFor of old meaning what it meant: maxOpenFor left unset follows it', () => {
    const config = load(`version: 1
upstreams:
  old: { url: "https://a.example.com", circuitBreaker: { failureRate: 50, openFor: 30s } }
  partial: { url: "https://b.example.com", circuitBreaker: { shedding: { k: 3 } } }
  explicit: { url: "https://c.example.com", circuitBreaker: { openFor: 100ms, maxOpenFor: 5s, hold: 0s } }
routes:
  - { name: a, upstream: old }
`);
    expect(config.upstreams.old!.circuitBreaker).toMatchObject({
      failureRate: 50,
      openFor: 30_000,
      maxOpenFor: 30_000,
      hold: 2_000,
    });
    expect(config.upstreams.partial!.circuitBreaker.shedding).toEqual({ enabled: true, k: 3 });
    expect(config.upstreams.explicit!.circuitBreaker).toMatchObject({ openFor: 100, maxOpenFor: 5_000, hold: 0 });
  });

  it('reads redis.timeout (SPEC §9) and refuses one without a unit', () => {
    const config = load(`version: 1
redis: { url: "redis://10.0.0.5:6379", timeout: 1s }
upstreams: { api: { url: "https://a.example.com" } }
routes:
  - { name: a, upstream: api, rateLimit: { rate: 5/s, shared: true } }
`);
    expect(config.redis).toEqual({
      url: 'redis://10.0.0.5:6379',
      onError: 'local',
      timeout: 1_000,
      sentinel: null,
      cluster: null,
      username: null,
      password: null,
      db: null,
      tls: null,
    });
    const result = parseConfig(
      'version: 1\nredis: { timeout: 250 }\nupstreams: { api: { url: "https://a.example.com" } }\nroutes: [{ name: a, upstream: api }]\n',
      'bad.yaml',
      { env: {} },
    );
    expect(result.ok).toBe(false);
    expect(result.ok ? [] : result.problems.map((problem) => String(problem.path))).toContainEqual(
      expect.stringContaining('redis'),
    );
  });

  it('reads redis.sentinel (SPEC §9), refuses a sentinel that is not host:port, and never shows its passwords in /config', () => {
    const result = parseConfig(
      `version: 1
redis:
  sentinel: { name: mymaster, sentinels: ["10.0.0.5:26379", "[::1]:26380"], password: s3cret, sentinelPassword: "\${env:SENTINEL_PASSWORD}" }
upstreams: { api: { url: "https://a.example.com" } }
routes:
  - { name: a, upstream: api, rateLimit: { rate: 5/s, shared: true } }
`,
      'sentinel.yaml',
      { env: { SENTINEL_PASSWORD: 'also-secret' } },
    );
    if (!result.ok) throw new Error(result.problems.map(formatProblem).join('\n'));
    expect(result.loaded.config.redis!.sentinel).toEqual({
      name: 'mymaster',
      sentinels: [
        { host: '10.0.0.5', port: 26379 },
        { host: '::1', port: 26380 },
      ],
      password: 's3cret',
      sentinelPassword: 'also-secret',
    });
    const shown = JSON.stringify(redactedConfig(result.loaded));
    expect(shown).not.toContain('s3cret');
    expect(shown).not.toContain('also-secret');
    const bad = parseConfig(
      'version: 1\nredis: { sentinel: { name: m, sentinels: ["nope", "h:99999"] } }\nupstreams: { api: { url: "https://a.example.com" } }\nroutes: [{ name: a, upstream: api }]\n',
      'bad.yaml',
      { env: {} },
    );
    expect(bad.ok).toBe(false);
    const messages = bad.ok ? [] : bad.problems.map((problem) => problem.message);
    expect(messages).toContainEqual(expect.stringContaining('"nope" is not host:port'));
    expect(messages).toContainEqual(expect.stringContaining('"h:99999" is not host:port'));
  });

  it('reads redis.cluster and the options of every form (SPEC §9), hides the password and the CA in /config, and refuses what cannot work', () => {
    const result = parseConfig(
      `version: 1
redis:
  cluster: { nodes: ["10.0.0.5:6379", "10.0.0.6:6379"] }
  username: breakwater
  password: "\${env:REDIS_PASSWORD}"
  tls: { ca: "-----BEGIN CERTIFICATE-----\\nMIIB\\n-----END CERTIFICATE-----", insecureSkipVerify: false }
upstreams: { api: { url: "https://a.example.com" } }
routes:
  - { name: a, upstream: api, rateLimit: { rate: 5/s, shared: true } }
`,
      'cluster.yaml',
      { env: { REDIS_PASSWORD: 'r3dis-secret' } },
    );
    if (!result.ok) throw new Error(result.problems.map(formatProblem).join('\n'));
    expect(result.loaded.config.redis).toMatchObject({
      cluster: {
        nodes: [
          { host: '10.0.0.5', port: 6379 },
          { host: '10.0.0.6', port: 6379 },
        ],
      },
      username: 'breakwater',
      password: 'r3dis-secret',
      db: null,
      tls: { insecureSkipVerify: false },
    });
    const shown = JSON.stringify(redactedConfig(result.loaded));
    expect(shown).not.toContain('r3dis-secret');
    expect(shown).not.toContain('MIIB');
    const base = 'upstreams: { api: { url: "https://a.example.com" } }\nroutes: [{ name: a, upstream: api }]\n';
    const problems = (yaml: string) => {
      const parsed = parseConfig(`version: 1\n${yaml}\n${base}`, 'bad.yaml', { env: {} });
      return parsed.ok ? [] : parsed.problems.map((problem) => `${String(problem.path)}: ${problem.message}`);
    };
    expect(
      problems('redis: { cluster: { nodes: ["a:1"] }, sentinel: { name: m, sentinels: ["b:2"] } }'),
    ).toContainEqual(expect.stringContaining('keep one of them'));
    expect(problems('redis: { cluster: { nodes: ["a:1"] }, db: 2 }')).toContainEqual(
      expect.stringContaining('only database 0'),
    );
    expect(problems('redis: { cluster: { nodes: [] } }').length).toBeGreaterThan(0);
    expect(problems('redis: { tls: { ca: ./no-such-ca.pem } }')).toContainEqual(expect.stringContaining('redis'));
  });

  it('refuses a maxOpenFor shorter than openFor, and a shedding k below 1', () => {
    const result = parseConfig(
      `version: 1
upstreams:
  api: { url: "https://a.example.com", circuitBreaker: { openFor: 2s, maxOpenFor: 1s, shedding: { k: 0.5 } } }
routes:
  - { name: a, upstream: api }
`,
      'bad.yaml',
      { env: {} },
    );
    expect(result.ok).toBe(false);
    const messages = result.ok ? [] : result.problems.map((problem) => `${problem.path}: ${problem.message}`);
    expect(messages).toContainEqual(
      expect.stringMatching(
        /^upstreams\.api\.circuitBreaker\.maxOpenFor: maxOpenFor \(1s\) must not be shorter than openFor \(2s\)$/,
      ),
    );
    expect(messages).toContainEqual(expect.stringMatching(/^upstreams\.api\.circuitBreaker\.shedding\.k: /));
  });

  it('accepts a file with every policy block left empty', () => {
    const config = load(`version: 1
listen: {}
admin: {}
logging: {}
limits: {}
shutdown: {}
defaults:
  timeouts: {}
  retry: { backoff: {}, retryAfter: {}, budget: {} }
  errors: {}
upstreams:
  api:
    url: https://api.example.com
    pool: {}
    tls: {}
    circuitBreaker: {}
    pacing: { aimd: {} }
routes:
  - name: api
    upstream: api
    match: {}
    headers: { request: {}, response: {} }
    timeouts: {}
    retry: {}
    errors: {}
redis: {}
forwardProxy: { connect: {} }
`);
    expect(config.routes[0]!.retry).toEqual(load(MINIMAL).routes[0]!.retry);
    expect(config.redis).toEqual({
      url: 'redis://127.0.0.1:6379',
      onError: 'local',
      timeout: 250,
      sentinel: null,
      cluster: null,
      username: null,
      password: null,
      db: null,
      tls: null,
    });
  });

  it('returns a deeply frozen object', () => {
    const config = load(SPEC_EXAMPLE, { STRIPE_KEY: 'x' });
    expect(Object.isFrozen(config)).toBe(true);
    expect(Object.isFrozen(config.routes)).toBe(true);
    expect(Object.isFrozen(config.routes[0]!.retry.retryOn)).toBe(true);
    expect(Object.isFrozen(config.upstreams.stripe!.circuitBreaker)).toBe(true);
    expect(() => {
      (config.routes[0]!.retry as { maxRetries: number }).maxRetries = 9;
    }).toThrow(TypeError);
  });
});

describe('defaults merge key by key', () => {
  it('keeps the other retry defaults when a route sets only maxRetries', () => {
    const config = load(
      `${MINIMAL}    retry: { maxRetries: 3 }\n`.replace(
        '  - { name: api, upstream: api }\n',
        '  - name: api\n    upstream: api\n',
      ),
    );
    const retry = config.routes[0]!.retry;
    expect(retry.maxRetries).toBe(3);
    expect(retry).toEqual({ ...config.defaults.retry, maxRetries: 3 });
  });

  it("merges built-in defaults, then the file's defaults, then the route, at every depth", () => {
    const config = load(`version: 1
defaults:
  timeouts: { total: 20s }
  retry:
    backoff: { max: 2s }
    retryOn: ["5xx"]
  rateLimit: { rate: 10/s }
upstreams:
  api: { url: "https://api.example.com" }
routes:
  - name: a
    upstream: api
    timeouts: { perTry: 3s }
    retry: { backoff: { base: 10ms } }
    rateLimit: { burst: 4 }
  - name: b
    upstream: api
    rateLimit: null
`);
    const [a, b] = config.routes;
    expect(a!.timeouts).toEqual({ connect: 2000, perTry: 3000, total: 20_000, firstByte: null, idle: null });
    expect(a!.retry.backoff).toEqual({ base: 10, max: 2000 });
    expect(a!.retry.retryOn).toEqual(['5xx']);
    expect(a!.retry.maxRetries).toBe(3);
    expect(a!.rateLimit).toEqual({
      rate: 10,
      burst: 4,
      maxConcurrent: null,
      queue: { size: 100, timeout: 2000 },
      key: 'route',
      shared: false,
      mode: 'enforce',
      cost: null,
      settle: 'none',
    });
    expect(b!.rateLimit).toBeNull();
    expect(config.defaults.timeouts).toEqual({
      connect: 2000,
      perTry: 10_000,
      total: 20_000,
      firstByte: null,
      idle: null,
    });
  });

  it('replaces lists rather than merging them', () => {
    const config = load(`version: 1
defaults:
  retry: { retryOn: [reset, timeout] }
upstreams:
  api: { url: "https://api.example.com" }
routes:
  - name: a
    upstream: api
    retry: { retryOn: ["503"] }
`);
    expect(config.routes[0]!.retry.retryOn).toEqual(['503']);
  });

  it('defaults a burst to one second of the rate', () => {
    const config = load(`version: 1
upstreams:
  api: { url: "https://api.example.com" }
routes:
  - { name: a, upstream: api, rateLimit: { rate: 100/min } }
  - { name: b, upstream: api, rateLimit: { rate: 25/s } }
  - { name: c, upstream: api, rateLimit: { maxConcurrent: 5, key: "header:X-Tenant" } }
`);
    expect(config.routes.map((route) => route.rateLimit?.burst)).toEqual([2, 25, 1]);
    expect(config.routes[2]!.rateLimit).toMatchObject({ rate: null, maxConcurrent: 5, key: 'header:x-tenant' });
  });
});

describe('built-in defaults equal SPEC §3', () => {
  it("matches the example's defaults block and upstream policy blocks", () => {
    const spec = load(SPEC_EXAMPLE, { STRIPE_KEY: 'x' });
    const minimal = load(MINIMAL);
    expect(minimal.defaults).toEqual(spec.defaults);
    const { name: _a, url: _b, ...specUpstream } = spec.upstreams.stripe!;
    const { name: _c, url: _d, ...builtinUpstream } = minimal.upstreams.api!;
    expect(builtinUpstream).toEqual(specUpstream);
    expect(minimal.listen).toEqual(spec.listen);
    expect(minimal.admin).toEqual(spec.admin);
    expect(minimal.logging).toEqual(spec.logging);
    expect(minimal.limits).toEqual(spec.limits);
    expect(minimal.shutdown).toEqual(spec.shutdown);
  });
});
