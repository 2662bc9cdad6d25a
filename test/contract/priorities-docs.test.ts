/**
 * docs/priorities.md: its example is a valid config that does what the
 * page says: checkout is critical, the catch-all route takes a class from
 * the header (default normal), both limits queue and are shared, and the
 * starvation guard releases a request that waited 3 s as the highest class.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { formatProblem, parseConfig } from '../../src/config/index.js';
import { compilePriorities } from '../../src/policy/priorities.js';

const page = readFileSync('docs/priorities.md', 'utf8');
const examples = [...page.matchAll(/```yaml\n([\s\S]*?)```/g)].map((match) => match[1]!);

describe('docs/priorities.md', () => {
  it('has two examples', () => {
    expect(examples).toHaveLength(2);
  });

  it('keeps half of an OpenAI key’s quota from batch embeddings, for chat', () => {
    const result = parseConfig(examples[1]!, 'docs/priorities.md', { env: {} });
    if (!result.ok) throw new Error(result.problems.map(formatProblem).join('\n'));
    const { config } = result.loaded;
    const classes = compilePriorities(config.priorities)!;
    const [embeddings, chat, rest] = config.routes;
    expect(classes.forRoute(embeddings!.priority)({ 'x-breakwater-priority': 'critical' })).toEqual({
      rank: 2,
      name: 'batch',
      quotaFloor: 0.5,
      promoteAfterMs: null,
    });
    expect(classes.forRoute(chat!.priority)({})).toEqual({
      rank: 0,
      name: 'critical',
      quotaFloor: null,
      promoteAfterMs: null,
    });
    expect(classes.forRoute(rest!.priority)({}).name).toBe('normal');
    expect(config.upstreams.openai!.pacing).toMatchObject({
      enabled: true,
      headers: 'openai',
      key: 'authorization',
      engageBelow: 0.1,
      maxWait: 60_000,
    });
  });

  it('routes checkout as critical and lets the header lower the catch-all route', () => {
    const result = parseConfig(examples[0]!, 'docs/priorities.md', { env: {} });
    if (!result.ok) throw new Error(result.problems.map(formatProblem).join('\n'));
    const { config } = result.loaded;
    expect(config.priorities?.classes.map((c) => c.name)).toEqual(['critical', 'normal', 'batch']);
    // The starvation guard, set below the queues' timeout so that it can apply.
    expect(config.priorities?.promoteAfterMs).toBe(3000);
    const [checkout, stripe] = config.routes;
    expect(checkout!.priority).toBe('critical');
    expect(stripe!.priority).toBeNull();
    for (const route of [checkout!, stripe!])
      expect(route.rateLimit).toMatchObject({ shared: true, queue: { size: 100, timeout: 5000 } });
    const classes = compilePriorities(config.priorities)!;
    const ofStripe = classes.forRoute(stripe!.priority);
    expect(ofStripe({ 'x-breakwater-priority': 'batch' }).name).toBe('batch');
    expect(ofStripe({}).name).toBe('normal');
    expect(classes.forRoute(checkout!.priority)({ 'x-breakwater-priority': 'batch' }).name).toBe('batch');
    expect(classes.forRoute(stripe!.priority)({ 'x-breakwater-priority': 'critical' }).name).toBe('critical');
  });
});
