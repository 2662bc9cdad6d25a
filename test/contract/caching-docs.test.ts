/**
 * docs/caching.md: its GitHub example is a valid config that says what the
 * page says, and, pointed at a GitHub-like provider of the test's own
 * (`private, max-age=60`, a weak ETag, a rate limit that a 304 to a
 * conditional request does not spend), it serves reads from the cache while
 * fresh and revalidates them for free after.
 */
import { readFileSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { formatProblem, parseConfig } from '../../src/config/index.js';
import { startFaultUpstream, type FaultUpstream } from '../fixtures/fault-upstream.js';
import { skippingClock } from '../helpers/clock.js';
import { request, startProxy, type TestProxy } from '../helpers/proxy.js';

const page = readFileSync('docs/caching.md', 'utf8');
const examples = [...page.matchAll(/```yaml\n([\s\S]*?)```/g)].map((match) => match[1]!);

describe('docs/caching.md', () => {
  const fixtures: { github?: FaultUpstream; proxy?: TestProxy } = {};
  afterAll(async () => {
    await fixtures.proxy?.close();
    await fixtures.github?.close();
  });

  it('has the GitHub example, valid and as described', () => {
    expect(examples).toHaveLength(1);
    const result = parseConfig(examples[0]!, 'docs/caching.md', { env: { GITHUB_TOKEN: 'ghp_test' } });
    if (!result.ok) throw new Error(result.problems.map(formatProblem).join('\n'));
    const route = result.loaded.config.routes[0]!;
    expect(route.cache).toEqual({
      ttl: null,
      maxEntries: 1000,
      maxEntryBytes: 256 * 1024,
      maxBytes: 32 * 1024 * 1024,
      revalidate: true,
      coalesce: true,
    });
    expect(route.fallback.stale?.maxStale).toBe(600_000);
  });

  it('serves GitHub reads from the cache while fresh and revalidates them with a free 304', async () => {
    let remaining = 5000;
    const github = (fixtures.github = await startFaultUpstream((_n, req) => {
      if (req.headers['if-none-match'] === 'W/"repo-v1"')
        return {
          kind: 'respond',
          status: 304,
          headers: { etag: 'W/"repo-v1"', 'x-ratelimit-remaining': String(remaining) },
        };
      remaining -= 1;
      return {
        kind: 'respond',
        status: 200,
        headers: {
          'content-type': 'application/json',
          'cache-control': 'private, max-age=60, s-maxage=60',
          etag: 'W/"repo-v1"',
          'x-ratelimit-remaining': String(remaining),
        },
        body: '{"full_name":"octo/repo"}',
      };
    }));
    const clock = skippingClock();
    const text = examples[0]!.replace('https://api.github.com', github.url);
    const proxy = (fixtures.proxy = await startProxy(text, { env: { GITHUB_TOKEN: 'ghp_test' }, clock }));
    const read = () => request(`${proxy.url}/github/repos/octo/repo`);
    const results: string[] = [];
    for (let i = 0; i < 5; i++) results.push((await read()).headers['x-breakwater-cache'] as string);
    clock.advance(61_000);
    const revalidated = await read();
    results.push(revalidated.headers['x-breakwater-cache'] as string);
    expect(results).toEqual(['miss', 'hit', 'hit', 'hit', 'hit', 'revalidated']);
    expect(revalidated.text).toBe('{"full_name":"octo/repo"}');
    // Six reads, two upstream requests, one of them a 304 that spent no quota.
    expect(github.requests).toHaveLength(2);
    expect(remaining).toBe(4999);
    expect(github.requests[1]!.headers.authorization).toBe('Bearer ghp_test');
  });
});
