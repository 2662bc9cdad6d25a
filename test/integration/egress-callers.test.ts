/**
 * Per-caller egress lists and report mode on the allow-lists (SPEC §19.2,
 * §19.3): each caller reaches its own hosts and not another's; an
 * unmatched caller gets the global list; in report mode a host outside the
 * list is reached and flagged, while the private-network guard still
 * refuses 169.254.169.254 and 10.0.0.1 at once. Names resolve through the
 * test's own lookup to the upstreams on 127.0.0.1 (an exact allowHosts
 * entry admits a private address).
 */
import { execFileSync } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFaultUpstream, type FaultUpstream } from '../fixtures/fault-upstream.js';
import { metricValue, startProxy, type TestProxy } from '../helpers/proxy.js';

let billingApi: FaultUpstream;
let searchApi: FaultUpstream;
let proxy: TestProxy;
let report: TestProxy;

const lookup = async (hostname: string) => {
  if (hostname.endsWith('.test')) return [{ address: '127.0.0.1', family: 4 }];
  throw Object.assign(new Error(`ENOTFOUND ${hostname}`), { code: 'ENOTFOUND' });
};

/** A second address on the loopback interface (as root; removed after): a peer in 10.0.0.0/8. */
const SOURCE = '10.255.255.3';
let added = false;

beforeAll(async () => {
  try {
    execFileSync('ip', ['addr', 'add', `${SOURCE}/32`, 'dev', 'lo'], { stdio: 'pipe' });
    added = true;
  } catch (error) {
    // Already there (a run before this one left it): fine; anything else fails the file.
    if (!String((error as { stderr?: Buffer }).stderr ?? '').includes('File exists')) throw error;
  }
  billingApi = await startFaultUpstream(() => ({ kind: 'respond', body: 'billing' }));
  searchApi = await startFaultUpstream(() => ({ kind: 'respond', body: 'search' }));
  const ports = `[${billingApi.port}, ${searchApi.port}, 80]`;
  proxy = await startProxy(
    `version: 1
forwardProxy:
  enabled: true
  allowHosts: ["public.test"]
  allowPorts: ${ports}
  # Every name resolves to 127.0.0.1 here: the lists alone decide (the guard is tested below).
  denyPrivateNetworks: false
  callers:
    - name: billing
      match: { header: { X-Caller: billing } }
      allowHosts: ["billing.test"]
    - name: search
      match: { proxyUser: search }
      allowHosts: ["search.test"]
    - name: batch
      match: { source: ["10.0.0.0/8"] }
      allowHosts: ["other.test"]
    - name: trial
      match: { header: { X-Caller: trial } }
      allowHosts: ["billing.test"]
      mode: report
routes:
  - { name: egress, match: { pathPrefix: / } }
`,
    { lookup },
  );
  report = await startProxy(
    `version: 1
forwardProxy:
  enabled: true
  mode: report
  allowHosts: []
  allowPorts: ${ports}
  denyPrivateNetworks: false
routes:
  - { name: egress, match: { pathPrefix: / } }
`,
    { lookup },
  );
});

afterAll(async () => {
  await Promise.all([proxy.close(), report.close()]);
  await Promise.all([billingApi.close(), searchApi.close()]);
  if (added) execFileSync('ip', ['addr', 'del', `${SOURCE}/32`, 'dev', 'lo'], { stdio: 'pipe' });
});

/** An absolute-form GET through `through`, with `headers`, from `from` (a local address). */
function via(
  through: TestProxy,
  url: string,
  headers: http.OutgoingHttpHeaders = {},
  from = '127.0.0.1',
): Promise<{ status: number; text: string }> {
  const port = Number(new URL(through.url).port);
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        path: url,
        headers: { host: new URL(url).host, ...headers },
        agent: false,
        localAddress: from,
      },
      (res) => {
        let text = '';
        res.on('data', (chunk: Buffer) => (text += chunk.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

const basic = (user: string) => `Basic ${Buffer.from(`${user}:any-password`).toString('base64')}`;

describe('per-caller egress lists (SPEC §19.3)', () => {
  it('each caller reaches its own host and not the other’s; the refusal names the caller whose list refused', async () => {
    const billing = { 'x-caller': 'billing' };
    const search = { 'proxy-authorization': basic('search') };
    expect((await via(proxy, `http://billing.test:${billingApi.port}/x`, billing)).text).toBe('billing');
    expect((await via(proxy, `http://search.test:${searchApi.port}/x`, search)).text).toBe('search');
    const crossed = await via(proxy, `http://search.test:${searchApi.port}/x`, billing);
    expect(crossed.status).toBe(403);
    expect(JSON.parse(crossed.text)).toMatchObject({ code: 'HOST_NOT_ALLOWED' });
    expect(JSON.parse(crossed.text).detail).toContain("caller 'billing'");
    expect((await via(proxy, `http://billing.test:${billingApi.port}/x`, search)).status).toBe(403);
  });

  it('an unmatched caller gets the global list', async () => {
    expect((await via(proxy, `http://public.test:${billingApi.port}/x`)).status).toBe(200);
    expect((await via(proxy, `http://billing.test:${billingApi.port}/x`)).status).toBe(403);
    // A header value that is not exact matches no caller.
    expect((await via(proxy, `http://billing.test:${billingApi.port}/x`, { 'x-caller': 'Billing' })).status).toBe(403);
  });

  it('a source CIDR matches the peers in it and no other', async () => {
    // batch may reach other.test, but only from 10.0.0.0/8: 127.0.0.1 gets the global list.
    expect((await via(proxy, `http://other.test:${billingApi.port}/x`)).status).toBe(403);
    const fromBatch = await via(proxy, `http://other.test:${billingApi.port}/x`, {}, SOURCE);
    expect(fromBatch).toEqual({ status: 200, text: 'billing' });
    const line = proxy.accessLogs().findLast((l) => l.status === 200 && l.path === '/x')!;
    expect(line.caller).toBe('batch');
  });

  it("a caller in report mode reaches a host outside its list, flagged; the others' lists still enforce", async () => {
    const trial = { 'x-caller': 'trial' };
    const before = await metricValue(proxy.metrics, 'breakwater_forward_requests_total', {
      caller: 'trial',
      decision: 'would_deny',
    });
    const res = await via(proxy, `http://search.test:${searchApi.port}/trial`, trial);
    expect(res).toEqual({ status: 200, text: 'search' });
    const line = proxy.accessLogs().find((l) => l.path === '/trial')!;
    expect(line).toMatchObject({ caller: 'trial' });
    expect(line.flags).toContain('WOULD_DENY');
    expect(
      await metricValue(proxy.metrics, 'breakwater_forward_requests_total', {
        caller: 'trial',
        decision: 'would_deny',
      }),
    ).toBe(before + 1);
    // Its own host passes unflagged.
    await via(proxy, `http://billing.test:${billingApi.port}/trial-own`, trial);
    expect(proxy.accessLogs().find((l) => l.path === '/trial-own')!.flags).not.toContain('WOULD_DENY');
  });

  it('logs and journals the caller, and counts decisions per caller', async () => {
    const lines = proxy.accessLogs().filter((line) => String(line.path).startsWith('/x'));
    expect(lines.map((line) => line.caller)).toEqual(expect.arrayContaining(['billing', 'search', null]));
    const journal = (await (await fetch(`${proxy.adminUrl}/errors?code=HOST_NOT_ALLOWED`)).json()) as {
      errors: { caller?: string | null }[];
    };
    expect(journal.errors.map((entry) => entry.caller)).toEqual(expect.arrayContaining(['billing', 'search', null]));
    expect(
      await metricValue(proxy.metrics, 'breakwater_forward_requests_total', { caller: 'billing', decision: 'allowed' }),
    ).toBe(1);
    expect(
      await metricValue(proxy.metrics, 'breakwater_forward_requests_total', { caller: 'billing', decision: 'denied' }),
    ).toBe(1);
    expect(
      await metricValue(proxy.metrics, 'breakwater_forward_requests_total', { caller: '', decision: 'denied' }),
    ).toBe(3);
  });

  it('/status shows the forward proxy’s mode and each caller’s', async () => {
    const status = (await (await fetch(`${proxy.adminUrl}/status`)).json()) as { forwardProxy: unknown };
    expect(status.forwardProxy).toEqual({
      mode: 'enforce',
      callers: [
        { name: 'billing', mode: 'enforce' },
        { name: 'search', mode: 'enforce' },
        { name: 'batch', mode: 'enforce' },
        { name: 'trial', mode: 'report' },
      ],
    });
  });
});

describe('allow-lists in report mode (SPEC §19.2)', () => {
  it('reaches a host outside the list, flagged WOULD_DENY and counted', async () => {
    const res = await via(report, `http://outside.test:${billingApi.port}/y`);
    expect(res.text).toBe('billing');
    const line = report.accessLogs().find((l) => l.path === '/y')!;
    expect(line.flags).toContain('WOULD_DENY');
    expect(
      await metricValue(report.metrics, 'breakwater_policy_reports_total', { route: 'egress', policy: 'allow_list' }),
    ).toBe(1);
    expect(
      await metricValue(report.metrics, 'breakwater_forward_requests_total', { caller: '', decision: 'would_deny' }),
    ).toBe(1);
  });

  it('never reports-only the private-network guard: 169.254.169.254 and 10.0.0.1 are refused at once', async () => {
    const guarded = await startProxy(
      `version: 1
forwardProxy: { enabled: true, mode: report, allowHosts: [], allowPorts: [80] }
routes: [{ name: egress, match: { pathPrefix: / } }]
`,
    );
    try {
      for (const host of ['169.254.169.254', '10.0.0.1']) {
        const res = await via(guarded, `http://${host}/latest/meta-data/`);
        expect(res.status, host).toBe(403);
        expect(JSON.parse(res.text)).toMatchObject({ code: 'HOST_NOT_ALLOWED' });
        // Refused before any connection: a tried one would end as 502 or 504, not HOST_NOT_ALLOWED.
      }
      // CONNECT too.
      const answer = await new Promise<string>((resolve) => {
        const socket = net.connect(Number(new URL(guarded.url).port), '127.0.0.1', () =>
          socket.write('CONNECT 169.254.169.254:80 HTTP/1.1\r\nHost: 169.254.169.254:80\r\n\r\n'),
        );
        let data = '';
        socket.on('data', (chunk: Buffer) => (data += chunk.toString()));
        socket.on('close', () => resolve(data));
      });
      expect(answer).toMatch(/^HTTP\/1\.1 403/);
    } finally {
      await guarded.close();
    }
  });
});
