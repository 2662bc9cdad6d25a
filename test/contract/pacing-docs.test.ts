/**
 * docs/pacing.md: every example is a valid config (the fragments inside a
 * minimal file) that resolves to what the page says, and the Anthropic
 * example, pointed at a fake provider that enforces requests and tokens per
 * window (test/fixtures/token-provider.ts), keeps a burst of 20 requests of
 * ~300 tokens against 2,000 per window free of 429s.
 */
import { readFileSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { formatProblem, parseConfig } from '../../src/config/index.js';
import { startTokenProvider, type TokenProvider } from '../fixtures/token-provider.js';
import { request, startProxy, type TestProxy } from '../helpers/proxy.js';

const page = readFileSync('docs/pacing.md', 'utf8');
const examples = [...page.matchAll(/```yaml\n([\s\S]*?)```/g)].map((match) => match[1]!);
const example = (marker: string) => examples.find((text) => text.includes(marker))!;

function resolved(text: string) {
  const result = parseConfig(text.startsWith('version:') ? text : `version: 1\n${text}`, 'docs/pacing.md', {
    env: {},
  });
  if (!result.ok) throw new Error(result.problems.map(formatProblem).join('\n'));
  return result.loaded.config;
}

let provider: TokenProvider | undefined;
let proxy: TestProxy | undefined;

afterAll(async () => {
  await proxy?.close();
  await provider?.upstream.close();
});

describe('docs/pacing.md', () => {
  it('has the GitHub, custom, tenant, OpenAI and Anthropic examples', () => {
    expect(examples).toHaveLength(5);
  });

  it('paces OpenAI on requests and tokens, charging the estimate', () => {
    const config = resolved(example('api.openai.com'));
    expect(config.upstreams.openai!.pacing).toMatchObject({
      enabled: true,
      headers: 'openai',
      cost: 'openai',
      key: 'authorization',
      replicas: 3,
    });
  });

  it('maps a custom points dimension, charged by the app’s header', () => {
    const fragment = example('headers: custom').trimEnd().replace(/^/gm, '    ');
    const config = resolved(`upstreams:
  maps:
    url: https://maps.example
${fragment}
routes:
  - { name: maps, upstream: maps }
`);
    expect(config.upstreams.maps!.pacing).toMatchObject({
      headers: 'custom',
      cost: { points: 'header:x-query-cost' },
      quotaHeaders: [{ dimension: 'points', limit: 'x-points-limit', resetFormat: 'delta' }],
    });
  });

  it('gives each tenant a token budget settled to usage', () => {
    const config = resolved(`upstreams:
  openai: { url: https://api.openai.com }
${example('key: header:x-tenant')}`);
    expect(config.routes[0]!.rateLimit).toMatchObject({
      rate: 40000 / 60,
      burst: 40000,
      key: 'header:x-tenant',
      cost: 'openai',
      settle: 'usage',
    });
  });

  it('keeps 20 requests of ~300 tokens against 2,000 per window free of 429s, with the Anthropic example', async () => {
    const text = example('api.anthropic.com');
    expect(resolved(text).upstreams.anthropic!.pacing).toMatchObject({ headers: 'anthropic', cost: 'anthropic' });
    provider = await startTokenProvider({ requests: 50, tokens: 2000, windowMs: 2000, dialect: 'anthropic' });
    proxy = await startProxy(`version: 1\n${text.replace('https://api.anthropic.com', provider.url)}`);
    const shape = (content: string) => JSON.stringify({ model: 'm', max_tokens: 200, messages: [{ content }] });
    const body = shape('x'.repeat(400 - shape('').length));
    const send = () =>
      request(`${proxy!.url}/anthropic/v1/messages`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-team': 'a' },
        body,
      });
    expect((await send()).status).toBe(200);
    const statuses = (await Promise.all(Array.from({ length: 20 }, send))).map((answer) => answer.status);
    expect(statuses.filter((status) => status === 200)).toHaveLength(20);
    expect(provider.tooMany()).toBe(0);
  }, 40_000);
});
