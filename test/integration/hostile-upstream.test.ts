/**
 * Issue 32, hostile upstream bodies (SPEC §20.5, §20.7), on real sockets.
 * An error answer whose bytes were chosen to make a pattern backtrack (37,000
 * `<title>` and no closing tag, a run of `<`, `<Message>` without its end,
 * undecodable bytes) is read by the §14 rules, by `errors.normalize: all`
 * and by the §12 journal; each reading is linear in its size, so the answer
 * reaches the client within 1 s of its last byte and `/healthz` answers
 * within 200 ms all along. Before the fix one such body held the event loop
 * for seconds per reading. And a provider that sends a 250,000-character
 * message gets an `/errors` entry of about 8 KiB.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { JournalEntry } from '../../src/observe/error-journal.js';
import { startFaultUpstream, type Behaviour, type FaultUpstream } from '../fixtures/fault-upstream.js';
import { request, startProxy, type TestProxy, type TestResponse } from '../helpers/proxy.js';

interface Hostile {
  readonly status: number;
  readonly contentType: string;
  readonly body: Buffer;
  readonly headers?: Record<string, string>;
}

const HOSTILE: Record<string, Hostile> = {
  // The review's body: read because §14 rules read 400 answers (AWS throttling).
  titles: { status: 400, contentType: 'text/html', body: Buffer.from('<title>'.repeat(37_000)) },
  // A title of `<` without `>`: the tag-stripping pattern `<[^>]+>` restarted at each.
  angles: {
    status: 400,
    contentType: 'text/html; charset=utf-8',
    body: Buffer.from(`<html><title>${'<'.repeat(40_000)}</title>`),
  },
  // AWS XML whose `<Message>` never ends.
  messages: { status: 400, contentType: 'application/xml', body: Buffer.from(`<Error>${'<Message>'.repeat(28_000)}`) },
  // Undecodable bytes, then one that is not: `\uFFFD+$` restarted at each replacement character.
  undecodable: {
    status: 403,
    contentType: 'text/plain',
    body: Buffer.concat([Buffer.alloc(60_000, 0xff), Buffer.from('a')]),
  },
};

let upstream: FaultUpstream;
let proxy: TestProxy;
/** When the upstream sent the last byte of each path's answer (performance.now()). */
const lastByteAt = new Map<string, number>();

/** The answer, its last 1 KiB 30 ms after the rest: the proxy is reading it when `/healthz` is asked. */
function slowTail(path: string, answer: Hostile): Behaviour {
  return {
    kind: 'custom',
    handle: (_req, res) => {
      res.writeHead(answer.status, {
        'content-type': answer.contentType,
        'content-length': answer.body.length,
        ...answer.headers,
      });
      res.write(answer.body.subarray(0, -1024));
      setTimeout(() => {
        lastByteAt.set(path, performance.now());
        res.end(answer.body.subarray(-1024));
      }, 30);
    },
  };
}

const BIG = {
  message: 'The request was refused because '.padEnd(250_000, 'and so on, '),
  code: 'c'.repeat(10_000),
};

/** Valid JSON nested deeper than JSON.stringify can write it again (a RangeError). */
const NESTED = '['.repeat(100_000) + ']'.repeat(100_000);

function script(path: string): Behaviour {
  const name = path.split('/')[2] ?? '';
  if (HOSTILE[name]) return slowTail(path, HOSTILE[name]);
  const json = JSON.stringify({ error: { message: BIG.message, code: BIG.code } });
  if (name === 'big-id')
    return {
      kind: 'respond',
      status: 400,
      headers: { 'content-type': 'application/json', 'x-request-id': 'r'.repeat(10_000) },
      body: json,
    };
  if (name === 'big-quota')
    return {
      kind: 'respond',
      status: 400,
      headers: { 'content-type': 'application/json', ratelimit: `limit=100, remaining=0, reset=${'9'.repeat(9_970)}` },
      body: json,
    };
  if (name === 'nested')
    return { kind: 'respond', status: 400, headers: { 'content-type': 'application/json' }, body: NESTED };
  if (name === 'small')
    return {
      kind: 'respond',
      status: 400,
      headers: { 'content-type': 'text/html' },
      body: '<title>Bad request</title>',
    };
  return { kind: 'respond', status: 200, body: 'ok' };
}

beforeAll(async () => {
  upstream = await startFaultUpstream((_n, req) => script(req.url ?? '/'));
  proxy = await startProxy(`version: 1
defaults: { retry: { maxRetries: 0 } }
upstreams:
  provider: { url: "${upstream.url}" }
routes:
  - { name: pass, match: { pathPrefix: /pass }, upstream: provider }
  - { name: norm, match: { pathPrefix: /norm }, upstream: provider, errors: { normalize: all } }
`);
  // The first answers of a process pay for compiling its paths: not what is measured here.
  for (const path of ['/pass/small', '/norm/small']) expect((await request(`${proxy.url}${path}`)).status).toBe(400);
});

afterAll(async () => {
  await proxy?.close();
  await upstream?.close();
});

/** The journal entry of `path`, once the exchange has closed and written it. */
async function journalEntry(path: string): Promise<JournalEntry> {
  for (let i = 0; i < 300; i++) {
    const res = await request(`${proxy.adminUrl}/errors`);
    const entry = res.json<{ errors: JournalEntry[] }>().errors.find((candidate) => candidate.path === path);
    if (entry) return entry;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error(`no journal entry for ${path}`);
}

/**
 * Sends `path` through the proxy and waits for its journal entry, asking
 * `/healthz` back to back all the while (each probe timed from the moment
 * it is sent: the proxy runs in this process, so a reading that holds the
 * event loop delays the probe in flight).
 */
async function sendWhileProbing(
  path: string,
): Promise<{ res: TestResponse; answeredAt: number; entry: JournalEntry; worstHealthzMs: number; probes: number }> {
  let done = false;
  let worstHealthzMs = 0;
  let probes = 0;
  const probing = (async () => {
    while (!done) {
      const sent = performance.now();
      const health = await request(`${proxy.adminUrl}/healthz`);
      worstHealthzMs = Math.max(worstHealthzMs, performance.now() - sent);
      expect(health.status).toBe(200);
      probes += 1;
    }
  })();
  try {
    const res = await request(`${proxy.url}${path}`);
    const answeredAt = performance.now();
    const entry = await journalEntry(path);
    return { res, answeredAt, entry, worstHealthzMs, probes };
  } finally {
    done = true;
    await probing;
  }
}

describe('a hostile error body costs time linear in its size (SPEC §20.5)', () => {
  for (const [name, answer] of Object.entries(HOSTILE)) {
    it(`passes ${name} through unchanged, journaled, with /healthz under 200 ms`, async () => {
      const path = `/pass/${name}`;
      const { res, answeredAt, entry, worstHealthzMs, probes } = await sendWhileProbing(path);
      expect(res.status).toBe(answer.status);
      expect(res.body.equals(answer.body)).toBe(true);
      expect(answeredAt - lastByteAt.get(path)!).toBeLessThan(1000);
      expect(probes).toBeGreaterThan(0);
      expect(worstHealthzMs).toBeLessThan(200);
      expect(entry).toMatchObject({ status: answer.status, source: 'upstream', provider: { status: answer.status } });
      expect(entry.provider!.message!.length).toBeLessThanOrEqual(1024);
      expect(Buffer.byteLength(entry.provider!.body as string)).toBeLessThanOrEqual(4096);
    });

    it(`normalizes ${name} (errors.normalize: all), journaled, with /healthz under 200 ms`, async () => {
      const path = `/norm/${name}`;
      const { res, answeredAt, entry, worstHealthzMs } = await sendWhileProbing(path);
      expect(res.status).toBe(answer.status);
      expect(res.headers['content-type']).toContain('application/problem+json');
      const problem = res.json<{ source: string; provider: { status: number; message: string; body: string } }>();
      expect(problem.source).toBe('upstream');
      expect(problem.provider.status).toBe(answer.status);
      expect(Buffer.byteLength(problem.provider.body)).toBeLessThanOrEqual(4096);
      expect(answeredAt - lastByteAt.get(path)!).toBeLessThan(1000);
      expect(worstHealthzMs).toBeLessThan(200);
      expect(entry).toMatchObject({ status: answer.status, route: 'norm', source: 'upstream' });
    });
  }

  it('finds what each hostile body says: a title of 40,000 `<`, else its first line', async () => {
    const angles = await request(`${proxy.url}/norm/angles`);
    expect(angles.json<{ provider: { message: string } }>().provider.message).toBe('<'.repeat(40_000));
    const titles = await request(`${proxy.url}/norm/titles`);
    expect(titles.json<{ provider: { message: string } }>().provider.message).toBe(
      '<title>'.repeat(37_000).slice(0, 500),
    );
  });
});

describe('a JSON body nested deeper than JSON.stringify goes', () => {
  it('is normalized with its text as provider.body, not a 500', async () => {
    const res = await request(`${proxy.url}/norm/nested`);
    expect(res.status).toBe(400);
    const problem = res.json<{ code: string; source: string; provider: { body: string } }>();
    expect(problem).toMatchObject({ code: 'BAD_REQUEST', source: 'upstream' });
    expect(problem.provider.body).toBe(NESTED.slice(0, 4096));
    expect((await journalEntry('/norm/nested')).provider?.body).toBe(NESTED.slice(0, 4096));
  });
});

describe('one /errors entry is about 8 KiB whatever the provider sent (SPEC §20.7)', () => {
  it('cuts a 250,000-character message at 1,024 characters, a 10,000-character code at 128, a request id at 256, the body at 4 KiB', async () => {
    expect((await request(`${proxy.url}/pass/big-id`)).status).toBe(400);
    const entry = await journalEntry('/pass/big-id');
    const provider = entry.provider!;
    expect(provider.message).toHaveLength(1024);
    expect(provider.message!.endsWith('…')).toBe(true);
    expect(provider.message!.slice(0, -1)).toBe(BIG.message.slice(0, 1023));
    expect(provider.code).toBe(BIG.code.slice(0, 128));
    expect(entry.headers['x-request-id']).toBe('r'.repeat(256));
    expect(typeof provider.body).toBe('string');
    expect(Buffer.byteLength(provider.body as string)).toBeLessThanOrEqual(4096);
    expect(Buffer.byteLength(JSON.stringify(entry))).toBeLessThanOrEqual(8 * 1024);
  });

  it('cuts a 10,000-character rate-limit header at 256', async () => {
    expect((await request(`${proxy.url}/norm/big-quota`)).status).toBe(400);
    const entry = await journalEntry('/norm/big-quota');
    expect(entry.headers.ratelimit).toHaveLength(256);
    expect(entry.headers.ratelimit!.startsWith('limit=100, remaining=0, reset=999')).toBe(true);
    expect(entry.provider!.message).toHaveLength(1024);
    expect(Buffer.byteLength(JSON.stringify(entry))).toBeLessThanOrEqual(8 * 1024);
  });
});
