/**
 * docs/surviving-outages.md: its two examples (OpenAI with Azure OpenAI as
 * a failover target, GitHub with stale reads) are valid configs that say
 * what the page says they do.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { formatProblem, parseConfig } from '../../src/config/index.js';

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
  it('has the two examples', () => {
    expect(examples).toHaveLength(2);
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
