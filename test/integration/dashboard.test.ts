/**
 * The admin dashboard (SPEC §7 `GET /`) in a real headless Chromium
 * (Debian's package, driven by playwright-core): route names and an open
 * breaker are on the page. A screenshot is saved under test/output/.
 */
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFaultUpstream, type FaultUpstream } from '../fixtures/fault-upstream.js';
import { ROOT } from '../helpers/cli.js';
import { request, startProxy, type TestProxy } from '../helpers/proxy.js';

let down: FaultUpstream;
let fine: FaultUpstream;
let proxy: TestProxy;
let browser: Browser;

beforeAll(async () => {
  down = await startFaultUpstream(() => ({ kind: 'respond', status: 503 }));
  fine = await startFaultUpstream(() => ({ kind: 'respond', headers: { 'x-ratelimit-limit': '5000', 'x-ratelimit-remaining': '4321', 'x-ratelimit-reset': '600' }, body: 'ok' }));
  proxy = await startProxy(`version: 1
defaults: { retry: { maxRetries: 0 } }
upstreams:
  payments-api: { url: "${down.url}", circuitBreaker: { minimumRequests: 2, openFor: 5m } }
  search-api: { url: "${fine.url}", pacing: { enabled: true } }
routes:
  - { name: payments, match: { pathPrefix: /payments }, upstream: payments-api, rateLimit: { rate: 10/s, burst: 20 } }
  - { name: search, match: { pathPrefix: /search }, upstream: search-api }
`);
  for (let i = 0; i < 3; i++) await request(`${proxy.url}/payments/charge`);
  await request(`${proxy.url}/search/q`);
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
});

afterAll(async () => {
  await browser?.close();
  await proxy.close();
  await Promise.all([down.close(), fine.close()]);
});

describe('dashboard', () => {
  it('shows the routes and the open breaker', async () => {
    const page = await browser.newPage();
    await page.goto(`${proxy.adminUrl}/`);
    await page.waitForSelector('#upstreams tr');
    const upstreams = await page.locator('#upstreams').innerText();
    expect(upstreams).toMatch(/payments-api[\s\S]*open/);
    expect(upstreams).toMatch(/search-api[\s\S]*closed/);
    expect(await page.locator('#upstreams .state.open').count()).toBe(1);
    const routes = await page.locator('#routes').innerText();
    expect(routes).toContain('payments');
    expect(routes).toContain('search');
    expect(routes).toContain('10/s burst 20');
    const pacing = await page.locator('#pacing').innerText();
    expect(pacing).toMatch(/search-api[\s\S]*4321 \/ 5000[\s\S]*(59\d|600) s/);
    const dir = path.join(ROOT, 'test/output');
    mkdirSync(dir, { recursive: true });
    await page.screenshot({ path: path.join(dir, 'dashboard.png'), fullPage: true });
  });
});
