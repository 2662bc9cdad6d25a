/**
 * The interceptor's host matching and leaf cache: one mint per host shared
 * by concurrent CONNECTs, minted again a day before the 7-day leaf
 * expires, at most MAX_LEAVES hosts kept.
 */
import { createPrivateKey } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { createMetrics } from '../../src/observe/metrics.js';
import { createCa } from '../../src/tls/certificates.js';
import { createInterceptor } from '../../src/tls/interceptor.js';
import { metricValue } from '../helpers/proxy.js';

let caCert = '';
let caKeyFile = '';

beforeAll(async () => {
  const ca = await createCa(['*.example.com', 'api.other.com', '10.1.2.3']);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'bw-interceptor-'));
  caKeyFile = path.join(dir, 'ca.key');
  writeFileSync(caKeyFile, ca.keyPem, { mode: 0o600 });
  caCert = ca.certPem;
});

afterEach(() => {
  vi.useRealTimers();
});

function make() {
  const metrics = createMetrics({ defaultMetrics: false });
  const interceptor = createInterceptor(
    { caCert, caKeyFile, hosts: ['*.example.com', 'api.other.com', '10.1.2.3'], upstreamCa: null },
    metrics,
  );
  return { interceptor, minted: () => metricValue(metrics, 'breakwater_tls_certificates_minted_total', {}) };
}

describe('interceptor', () => {
  it('matches exact names, names under a *. domain (not the domain itself), IP literals', () => {
    const { interceptor } = make();
    expect(
      ['a.example.com', 'x.y.example.com', 'API.other.com', 'api.other.com.', '10.1.2.3'].map((h) =>
        interceptor.matches(h),
      ),
    ).toEqual([true, true, true, true, true]);
    expect(
      ['example.com', 'badexample.com', 'other.com', 'x.api.other.com', '10.1.2.4'].map((h) => interceptor.matches(h)),
    ).toEqual([false, false, false, false, false]);
  });

  it('normalises both sides: trailing dots, IPv6 spellings, case', () => {
    const metrics = createMetrics({ defaultMetrics: false });
    const interceptor = createInterceptor(
      { caCert, caKeyFile, hosts: ['api.dotted.com.', '*.Wild.com.', '2001:0db8:0000::1'], upstreamCa: null },
      metrics,
    );
    expect(
      ['api.dotted.com', 'API.DOTTED.COM.', 'x.wild.com', 'x.wild.com.', '2001:db8::1', '2001:DB8:0::0001'].map((h) =>
        interceptor.matches(h),
      ),
    ).toEqual([true, true, true, true, true, true]);
    expect(['wild.com', 'x.dotted.com', '2001:db8::2'].map((h) => interceptor.matches(h))).toEqual([
      false,
      false,
      false,
    ]);
  });

  it('signs with a CA key stored as SEC1 ("EC PRIVATE KEY"), as openssl ecparam writes it', async () => {
    const sec1 = path.join(path.dirname(caKeyFile), 'sec1.key');
    writeFileSync(sec1, createPrivateKey(readFileSync(caKeyFile)).export({ type: 'sec1', format: 'pem' }), {
      mode: 0o600,
    });
    expect(readFileSync(sec1, 'utf8')).toContain('BEGIN EC PRIVATE KEY');
    const interceptor = createInterceptor(
      { caCert, caKeyFile: sec1, hosts: ['*.example.com'], upstreamCa: null },
      createMetrics({ defaultMetrics: false }),
    );
    await expect(interceptor.contextFor('a.example.com')).resolves.toBeDefined();
  });

  it('mints one leaf per host, shared by concurrent requests for it', async () => {
    const { interceptor, minted } = make();
    const contexts = await Promise.all(Array.from({ length: 10 }, () => interceptor.contextFor('a.example.com')));
    expect(new Set(contexts).size).toBe(1);
    await interceptor.contextFor('b.example.com');
    expect(await minted()).toBe(2);
  });

  it('mints again a day before the leaf expires', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    const { interceptor, minted } = make();
    const first = await interceptor.contextFor('a.example.com');
    vi.setSystemTime(Date.now() + 5 * 86_400_000);
    expect(await interceptor.contextFor('a.example.com')).toBe(first);
    vi.setSystemTime(Date.now() + 1 * 86_400_000 + 1000);
    expect(await interceptor.contextFor('a.example.com')).not.toBe(first);
    expect(await minted()).toBe(2);
  });
});
