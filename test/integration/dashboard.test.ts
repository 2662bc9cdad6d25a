/**
 * The admin dashboard (SPEC §7 `GET /`, §12) in a real headless Chromium
 * (Debian's package, driven by playwright-core), after a known mix of
 * traffic: the routes' success rate and p99, the open breaker, the quota
 * a provider announced, and the newest journal entry's hint, whose fault
 * and provider message, all read from the DOM; no horizontal scrolling on
 * a phone. Screenshots at desktop and phone widths go to test/output/.
 */
import { mkdirSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { JournalEntry } from '../../src/observe/error-journal.js';
import type { TrafficReport } from '../../src/observe/traffic.js';
import { startFaultUpstream, type FaultUpstream } from '../fixtures/fault-upstream.js';
import { ROOT } from '../helpers/cli.js';
import { request, startProxy, type TestProxy } from '../helpers/proxy.js';

let down: FaultUpstream;
let fine: FaultUpstream;
let proxy: TestProxy;
let browser: Browser;
const OUTPUT = path.join(ROOT, 'test/output');

beforeAll(async () => {
  down = await startFaultUpstream(() => ({
    kind: 'respond',
    status: 503,
    headers: { 'content-type': 'application/json' },
    body: '{"error":{"message":"ledger is read-only","code":"maintenance"}}',
  }));
  // Search: the 5th and 10th requests get 404, the 3rd takes 300 ms: 80% success, p99 in the 250-500 ms bucket.
  fine = await startFaultUpstream((n) => {
    if (n % 5 === 0) return { kind: 'respond', status: 404, body: 'no such index' };
    if (n === 3) return { kind: 'slow-headers', delayMs: 300, status: 200, body: 'ok' };
    return {
      kind: 'respond',
      headers: {
        'x-ratelimit-limit': '5000',
        'x-ratelimit-remaining': '4321',
        'x-ratelimit-reset': '600',
        'x-points-limit': '100',
        'x-points-remaining': '70',
        'x-points-reset': '600',
      },
      body: 'ok',
    };
  });
  proxy = await startProxy(
    `version: 1
defaults: { retry: { maxRetries: 0 } }
upstreams:
  payments-api: { url: "${down.url}", circuitBreaker: { minimumRequests: 2, openFor: 5m } }
  search-api:
    url: "${fine.url}"
    pacing:
      enabled: true
      quotaHeaders: [{ dimension: points, limit: x-points-limit, remaining: x-points-remaining, reset: x-points-reset }]
routes:
  - { name: payments, match: { pathPrefix: /payments }, upstream: payments-api, rateLimit: { rate: 10/s, burst: 20 } }
  - { name: search, match: { pathPrefix: /search }, upstream: search-api }
`,
    { traffic: { bucketMs: 1000, spanMs: 120_000 } },
  );
  // Spread over a few sampling buckets, so that the sparklines have points.
  for (let i = 0; i < 3; i++) await request(`${proxy.url}/payments/charge`);
  for (let i = 0; i < 10; i++) {
    await request(`${proxy.url}/search/q`);
    if (i % 3 === 2) await new Promise((resolve) => setTimeout(resolve, 1100));
  }
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  mkdirSync(OUTPUT, { recursive: true });
});

afterAll(async () => {
  await browser?.close();
  await proxy?.close();
  await Promise.all([down?.close(), fine?.close()]);
});

async function open(width: number, height: number): Promise<Page> {
  const page = await browser.newPage({ viewport: { width, height }, isMobile: width < 700, hasTouch: width < 700 });
  await page.goto(`${proxy.adminUrl}/`);
  await page.waitForSelector('body[data-loaded="true"]');
  return page;
}

const msOf = (text: string) => (text.endsWith(' s') ? parseFloat(text) * 1000 : parseFloat(text));

describe('dashboard', () => {
  it('shows each route’s success rate and p99, agreeing with /stats', async () => {
    const stats = (await request(`${proxy.adminUrl}/stats`)).json<TrafficReport>();
    const search = stats.routes.find((r) => r.route === 'search')!;
    expect(search).toMatchObject({ requests: 10, successRate: 80 });
    expect(search.p99Ms).toBeGreaterThan(250);
    expect(search.p99Ms).toBeLessThanOrEqual(500);
    const page = await open(1280, 900);
    const row = page.locator('#routes tr[data-route="search"]');
    expect(await row.locator('td.success').innerText()).toBe('80.0%');
    const p99 = msOf((await row.locator('td.p99').innerText()).trim());
    expect(p99).toBeGreaterThan(250);
    expect(p99).toBeLessThanOrEqual(500);
    expect(await page.locator('#routes tr[data-route="payments"] td.success').innerText()).toBe('0.0%');
    // Sparklines of the route's buckets (inline SVG, drawn from /stats' series).
    expect(search.series.requestsPerSecond.filter((v) => v !== null && v > 0).length).toBeGreaterThanOrEqual(2);
    expect(await row.locator('td.rps svg.spark path').count()).toBe(1);
    expect(await row.locator('td.success svg.spark path').count()).toBe(1);
    await page.close();
  });

  it('shows the open breaker, the announced quota and the rate limit per target and route', async () => {
    const page = await open(1280, 900);
    expect(await page.locator('#targets tr[data-target="payments-api"] .state.open').count()).toBe(1);
    expect(await page.locator('#targets tr[data-target="search-api"] .state.closed').count()).toBe(1);
    const search = await page.locator('#targets tr[data-target="search-api"]').innerText();
    // Each dimension at its lowest, the scarcest share first (SPEC §15).
    expect(search).toMatch(/points 70 \/ 100\s+4321 \/ 5000/);
    // Announced as 600 s when the last search answered, counted down since.
    const resetsIn = parseFloat(await page.locator('#targets tr[data-target="search-api"] td.resets').innerText());
    expect(resetsIn).toBeGreaterThan(480);
    expect(resetsIn).toBeLessThanOrEqual(600);
    expect(await page.locator('#limits').innerText()).toContain('10/s burst 20');
    await page.close();
  });

  it('lists the newest journal entries with their hint, whose fault and the provider’s message', async () => {
    const journal = (await request(`${proxy.adminUrl}/errors`)).json<{ errors: JournalEntry[] }>().errors;
    expect(journal.length).toBe(3 + 2);
    const page = await open(1280, 900);
    const first = page.locator('#errors li.entry').first();
    expect(await first.locator('.hint').innerText()).toBe(journal[0]!.hint);
    expect(await page.locator('#errors li.entry').count()).toBe(5);
    const payments = page.locator('#errors li.entry[data-code="UPSTREAM_UNAVAILABLE"]').first();
    expect(await payments.locator('.provider').innerText()).toBe('provider said: ledger is read-only');
    expect(await payments.locator('.fault').innerText()).toBe('upstream’s fault');
    const open503 = page.locator('#errors li.entry[data-code="CIRCUIT_OPEN"]');
    expect(await open503.count()).toBe(1);
    expect(await open503.locator('.hint').innerText()).toBe(journal.find((e) => e.code === 'CIRCUIT_OPEN')!.hint);
    await page.screenshot({ path: path.join(OUTPUT, 'dashboard-desktop.png'), fullPage: true });
    await page.close();
  });

  it('reads on a phone: one card per row, nothing wider than the screen', async () => {
    const page = await open(390, 844);
    const width = Number(await page.evaluate('document.documentElement.scrollWidth'));
    expect(width).toBeLessThanOrEqual(390);
    expect(await page.locator('#routes tr[data-route="search"] td.success').innerText()).toContain('80.0%');
    expect(await page.locator('#routes thead').isVisible()).toBe(false);
    await page.screenshot({ path: path.join(OUTPUT, 'dashboard-phone.png'), fullPage: true });
    await page.close();
  });
});

describe('dashboard with priority classes', () => {
  it('shows who waits by class: in a rate-limit queue and for a pacer', async () => {
    // A provider whose quota is spent for the next 30 s, and a route limited to one request a minute.
    const spent = await startFaultUpstream(() => ({
      kind: 'respond',
      headers: { 'x-ratelimit-limit': '100', 'x-ratelimit-remaining': '0', 'x-ratelimit-reset': '30' },
      body: 'ok',
    }));
    const classes = await startProxy(`version: 1
priorities:
  default: normal
  classes: [{ name: critical }, { name: normal }, { name: batch }]
defaults: { retry: { maxRetries: 0 }, timeouts: { total: 2m } }
shutdown: { drainTimeout: 1s }
upstreams:
  spent-api: { url: "${spent.url}", circuitBreaker: { failureRate: 100 }, pacing: { enabled: true, maxWait: 60s } }
routes:
  - { name: limited, match: { pathPrefix: /limited }, upstream: spent-api, rateLimit: { rate: 1/min, burst: 1, queue: { size: 10, timeout: 60s } } }
  - { name: paced, upstream: spent-api }
`);
    const pending: Promise<unknown>[] = [];
    const send = (path: string, priority: string) =>
      pending.push(
        request(`${classes.url}${path}`, { headers: { 'x-breakwater-priority': priority } }).catch(() => undefined),
      );
    try {
      expect((await request(`${classes.url}/limited/first`)).status).toBe(200); // takes the token, and announces the spent quota
      send('/limited/a', 'batch');
      send('/limited/b', 'critical');
      send('/p/1', 'batch');
      send('/p/2', 'batch');
      send('/p/3', 'critical');
      const status = async () =>
        (await request(`${classes.adminUrl}/status`)).json<{
          routes: { name: string; rateLimit: { queued: number } | null }[];
          upstreams: { pacing: { waitingByClass: Record<string, number> }[] }[];
        }>();
      for (const stopAt = Date.now() + 10_000; Date.now() < stopAt;) {
        const now = await status();
        const waiting = Object.values(now.upstreams[0]!.pacing[0]?.waitingByClass ?? {}).reduce((a, b) => a + b, 0);
        if (now.routes.find((r) => r.name === 'limited')!.rateLimit!.queued === 2 && waiting === 3) break;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
      await page.goto(`${classes.adminUrl}/`);
      await page.waitForSelector('body[data-loaded="true"]');
      expect(await page.locator('#limits').innerText()).toContain('queued 2: critical 1, batch 1');
      expect(await page.locator('#targets tr[data-target="spent-api"] .paced').innerText()).toBe(
        'waiting: critical 1, batch 2',
      );
      await page.close();
    } finally {
      await classes.close();
      await Promise.all(pending);
      await spent.close();
    }
  });

  it('shows markup from a provider message, a code and a path as text; nothing of it runs (SPEC §19.1)', async () => {
    const markup = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>';
    const hostile = await startFaultUpstream(() => ({
      kind: 'respond',
      status: 502,
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ error: { message: markup, code: '<b>bold</b>' } }),
    }));
    const shown = await startProxy(`version: 1
defaults: { retry: { maxRetries: 0 } }
upstreams: { h: { url: "${hostile.url}", circuitBreaker: { failureRate: 100 } } }
routes: [{ name: hostile, match: { pathPrefix: /h }, upstream: h }]
`);
    try {
      // The path as written on the request line, < and > included (a URL string would encode them).
      const port = Number(new URL(shown.url).port);
      await new Promise<void>((resolve, reject) => {
        const socket = net.connect(port, '127.0.0.1', () =>
          socket.write(
            'GET /h/<script>window.__pwned=3</script> HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n',
          ),
        );
        socket.on('data', () => {});
        socket.on('close', () => resolve());
        socket.on('error', reject);
      });
      await request(`${shown.url}/h/plain`);
      const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
      const violations: string[] = [];
      page.on('console', (message) => {
        if (/Content Security Policy/i.test(message.text())) violations.push(message.text());
      });
      await page.goto(`${shown.adminUrl}/`);
      await page.waitForSelector('body[data-loaded="true"]');
      const errorsText = await page.locator('#errors').innerText();
      expect(errorsText).toContain(markup);
      const paths = (await request(`${shown.adminUrl}/errors`))
        .json<{ errors: JournalEntry[] }>()
        .errors.map((entry) => entry.path);
      const rawPath = paths.find((p) => p.includes('<script>'));
      expect(rawPath, JSON.stringify(paths)).toBeDefined();
      expect(errorsText).toContain(rawPath!);
      expect(await page.locator('#errors img, #errors script, #errors b').count()).toBe(0);
      expect(await page.evaluate(() => (globalThis as unknown as { __pwned?: number }).__pwned)).toBeUndefined();
      // The page's own script ran under its policy, and nothing was blocked.
      expect(violations).toEqual([]);
      await page.close();
    } finally {
      await shown.close();
      await hostile.close();
    }
  });

  it('marks the policies in report mode (SPEC §19.2)', async () => {
    const reporting = await startProxy(`version: 1
upstreams: { r: { url: "${fine.url}", circuitBreaker: { mode: report } } }
routes: [{ name: trial, match: { pathPrefix: /t }, upstream: r, rateLimit: { rate: 5/s, mode: report } }]
`);
    try {
      const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
      await page.goto(`${reporting.adminUrl}/`);
      await page.waitForSelector('body[data-loaded="true"]');
      expect(await page.locator('#targets').innerText()).toContain('report only');
      expect(await page.locator('#limits').innerText()).toContain('trial: 5/s burst 5, queue 100/2s, report only');
      await page.close();
    } finally {
      await reporting.close();
    }
  });
});
