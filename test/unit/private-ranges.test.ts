/**
 * Issue 32: the private-address guard (SPEC §3 `denyPrivateNetworks`,
 * §20.8) knows every IPv6 spelling of a private address: the forms that
 * embed a private IPv4 (mapped, translated, compatible, NAT64, 6to4) and
 * the IPv6 ranges refused whole, compressed or not, in upper case, with a
 * dotted tail or a zone id.
 */
import type { LookupAddress } from 'node:dns';
import { describe, expect, it } from 'vitest';
import type { ForwardProxyConfig } from '../../src/config/types.js';
import { createTargetChecker, isPrivateAddress } from '../../src/router/target-check.js';

const PRIVATE_SPELLINGS = [
  // IPv4-mapped ::ffff:0:0/96
  '::ffff:127.0.0.1',
  '::ffff:7f00:1',
  '::FFFF:7F00:0001',
  '0:0:0:0:0:ffff:10.0.0.1',
  '::ffff:169.254.169.254',
  // IPv4-translated ::ffff:0:0:0/96
  '::ffff:0:7f00:1',
  '::ffff:0:10.0.0.1',
  // IPv4-compatible ::/96
  '::7f00:1',
  '::127.0.0.1',
  '::a00:1',
  '::',
  '::1',
  '0:0:0:0:0:0:0:1',
  // NAT64 64:ff9b::/96
  '64:ff9b::10.0.0.1',
  '64:ff9b::7f00:1',
  '64:FF9B::A9FE:A9FE',
  // 6to4 2002::/16 (the IPv4 in bits 16-47)
  '2002:7f00:1::',
  '2002:a00:1::1',
  '2002:c0a8:101:0:0:0:0:1',
  // whole ranges
  '64:ff9b:1::1',
  'fec0::1',
  'FEC0:0:0:0:0:0:0:1',
  '2001::1',
  '2001:0:4136:e378:8000:63bf:3fff:fdd2',
  '100::1',
  '2001:db8::1',
  'fc00::1',
  'fd12:3456::1',
  'fe80::1',
  'ff02::1',
  // zone ids
  'fe80::1%eth0',
  '::ffff:127.0.0.1%lo',
  // IPv4
  '127.0.0.1',
  '10.1.2.3',
  '169.254.169.254',
];

const PUBLIC_ADDRESSES = [
  '93.184.216.34',
  '2606:2800:220:1:248:1893:25c8:1946',
  '::ffff:93.184.216.34',
  '64:ff9b::5db8:d822',
  '2002:5db8:d822::1',
  '2001:4860:4860::8888',
  '100:0:0:1::1',
];

describe('isPrivateAddress', () => {
  for (const address of PRIVATE_SPELLINGS) {
    it(`refuses ${address}`, () => expect(isPrivateAddress(address)).toBe(true));
  }
  for (const address of PUBLIC_ADDRESSES) {
    it(`admits ${address}`, () => expect(isPrivateAddress(address)).toBe(false));
  }
});

/** A target checker with `allowHosts` and test DNS. */
function checker(allowHosts: string[], names: Record<string, string> = {}) {
  const config = {
    enabled: true,
    allowHosts,
    allowPorts: [80, 443],
    denyPrivateNetworks: true,
    mode: 'enforce',
    callers: [],
  } satisfies Partial<ForwardProxyConfig>;
  return createTargetChecker(config, async (name): Promise<LookupAddress[]> => {
    const address = names[name];
    if (address === undefined) throw Object.assign(new Error(`ENOTFOUND ${name}`), { code: 'ENOTFOUND' });
    return [{ address, family: 6 }];
  });
}

describe('createTargetChecker', () => {
  it('with allowHosts "*" refuses every private literal, bracketed or not, and admits a public one', async () => {
    const any = checker(['*']);
    for (const spelling of [
      '[::7f00:1]',
      '::7f00:1',
      '[::ffff:127.0.0.1]',
      '[64:ff9b::10.0.0.1]',
      '[2002:7f00:1::]',
      '[FEC0::1]',
      '[2001:db8::1]',
      '10.0.0.1',
    ]) {
      const result = await any.check(spelling, 443);
      expect(result.ok, spelling).toBe(false);
      expect(result.ok ? '' : result.reason, spelling).toMatch(/private address/);
    }
    expect(await any.check('[2606:2800:220:1:248:1893:25c8:1946]', 443)).toMatchObject({ ok: true });
  });

  it('with allowHosts "*" lets a private address through only by an exact entry, in any spelling', async () => {
    const exact = checker(['*', '127.0.0.1']);
    expect(await exact.check('[::ffff:127.0.0.1]', 80)).toMatchObject({ ok: true });
    expect(await exact.check('[::ffff:7f00:1]', 80)).toMatchObject({ ok: true });
    // Other addresses carrying 127.0.0.1 are other addresses: not named by the entry.
    expect(await exact.check('[::7f00:1]', 80)).toMatchObject({ ok: false });
    expect(await exact.check('[2002:7f00:1::]', 80)).toMatchObject({ ok: false });
  });

  it('refuses a name resolving to an embedded or zoned private address, and its lookup never yields it', async () => {
    const names = {
      'a.test': '::7f00:1',
      'b.test': '64:ff9b::a00:1',
      'c.test': 'fe80::1%eth0',
      'd.test': '2002:a9fe:a9fe::',
    };
    const wild = checker(['*.test'], names);
    for (const name of Object.keys(names)) {
      expect(await wild.check(name, 443), name).toMatchObject({ ok: false });
      const error = await new Promise<NodeJS.ErrnoException | null>((resolve) =>
        wild.lookup(name, {}, (failure) => resolve(failure)),
      );
      expect(error?.code, name).toBe('EHOSTNOTALLOWED');
    }
  });
});
