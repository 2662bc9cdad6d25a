/**
 * docs/surviving-outages.md: its three examples (OpenAI with Azure OpenAI as
 * a failover target, GitHub with stale reads, streamed completions with
 * stream timeouts) are valid configs that say what the page says they do;
 * the streaming one, pointed at two local providers (OpenAI silent after
 * its headers, Azure streaming), gives the app Azure's whole stream.
 */
import { readFileSync } from 'node:fs';
import http from 'node:http';
import { afterAll, describe, expect, it } from 'vitest';
import { formatProblem, parseConfig } from '../../src/config/index.js';
import { startFaultUpstream, type FaultUpstream } from '../fixtures/fault-upstream.js';
import { startProxy, type TestProxy } from '../helpers/proxy.js';

const page = readFileSync('docs/surviving-outages.md', 'utf8');
const examples = [...page.matchAll(/```yaml\n([\s\S]*?)```/g)].map((match) => match[1]!);

function load(text: string) {
  const result = parseConfig(text, 'docs/surviving-outages.md', {
    env: { AZURE_OPENAI_KEY: 'azure-key', OPENAI_API_KEY: 'sk-test' },
  });
  if (!result.ok) throw new Error(result.problems.map(formatProblem).join('\n'));
  return result.loaded.config;
}

describe('docs/surviving-outages.md', () => {
  it('has the three examples', () => {
    expect(examples).toHaveLength(3);
  });

  it('fails OpenAI over to Azure OpenAI with its own key, never the OpenAI key', () => {
    const config = load(examples[0]!);
    const openai = config.upstreams.openai!;
    expect(openai.failover).toHaveLength(1);
    const azure = openai.failover[0]!;
    expect(azure.name).toBe('openai/azure');
    expect(azure.url).toMatch(/^https:\/\/.+\.openai\.azure\.com\/openai$/);
    expect(azure.headers.set).toEqual({ 'api-key': 'azure-key' });
    expect(azure.headers.remove).toEqual(['authorization']);
    expect(openai.cooldownMax).toBe(300_000);
    expect(openai.pacing.enabled).toBe(true);
    expect(config.routes[0]!.retry.maxRetries).toBeGreaterThan(0);
  });

  it('keeps GitHub reads answering stale', () => {
    const config = load(examples[1]!);
    expect(config.routes[0]!.fallback.stale).toEqual({
      maxStale: 600_000,
      maxEntries: 1000,
      maxEntryBytes: 256 * 1024,
      maxBytes: 32 * 1024 * 1024,
    });
  });
});

const EVENTS = 'data: {"choices":[{"delta":{"content":"Hi"}}]}\n\ndata: [DONE]\n\n';

describe('docs/surviving-outages.md: streams that stall', () => {
  const fixtures: { openai?: FaultUpstream; azure?: FaultUpstream; proxy?: TestProxy } = {};
  afterAll(async () => {
    await fixtures.proxy?.close();
    await fixtures.openai?.close();
    await fixtures.azure?.close();
  });

  it('holds streamed completions for their first event and retries them, to Azure, on any method', () => {
    const config = load(examples[2]!);
    const route = config.routes[0]!;
    expect(route.timeouts).toMatchObject({ perTry: 30_000, firstByte: 10_000, idle: 30_000, total: 300_000 });
    expect(route.retry.retryOn).toContain('timeout');
    expect(route.retry.methods).toContain('POST');
    expect(config.upstreams.openai!.failover.map((target) => target.name)).toEqual(['openai/azure']);
  });

  it('gives the app Azure’s whole stream when OpenAI sends headers and then nothing', async () => {
    // OpenAI answers 200 event-stream headers and goes silent; Azure streams.
    const openai = (fixtures.openai = await startFaultUpstream(() => ({
      kind: 'custom',
      handle: (_req, res) => {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.flushHeaders();
      },
    })));
    const azure = (fixtures.azure = await startFaultUpstream(() => ({
      kind: 'respond',
      headers: { 'content-type': 'text/event-stream' },
      body: EVENTS,
    })));
    // The page's example, its URLs pointed here and firstByte shortened from 10s.
    const text = examples[2]!
      .replace('https://api.openai.com', openai.url)
      .replace('https://my-resource.openai.azure.com/openai', `${azure.url}/openai`)
      .replace('firstByte: 10s', 'firstByte: 300ms');
    const proxy = (fixtures.proxy = await startProxy(text, {
      env: { AZURE_OPENAI_KEY: 'azure-key', OPENAI_API_KEY: 'sk-test' },
    }));
    const res = await new Promise<{ status: number; target: unknown; text: string }>((resolve, reject) => {
      const req = http.request(`${proxy.url}/openai/v1/chat/completions`, { method: 'POST', agent: false }, (r) => {
        let body = '';
        r.setEncoding('utf8');
        r.on('data', (chunk: string) => (body += chunk));
        r.on('end', () => resolve({ status: r.statusCode ?? 0, target: r.headers['x-breakwater-target'], text: body }));
      });
      req.on('error', reject);
      req.setHeader('content-type', 'application/json');
      req.end('{"model":"gpt-4o-mini","stream":true,"messages":[]}');
    });
    expect(res).toEqual({ status: 200, target: 'openai/azure', text: EVENTS });
    expect(openai.requests).toHaveLength(1);
    expect(azure.requests[0]!.url).toBe('/openai/v1/chat/completions');
    expect(azure.requests[0]!.headers['api-key']).toBe('azure-key');
    expect(azure.requests[0]!.headers.authorization).toBeUndefined();
  });
});
