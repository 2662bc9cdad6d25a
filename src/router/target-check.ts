/**
 * Forward-proxy target checks (SPEC §3 `forwardProxy`), in one place and
 * before any connection is made: the proxy must never become an open proxy
 * or a way into the private network or the cloud metadata service.
 *
 * Order: enabled; port in `allowPorts`; host in `allowHosts` (exact names,
 * `*.` wildcards, IP addresses in any spelling); then every address the
 * name resolves to is checked against the private ranges (unless an exact
 * `allowHosts` entry names the host), and the connection is made to an
 * address that was checked: the agent's lookup runs the same check, so a
 * name that flips to a private address between check and connect is
 * refused too (no DNS-rebinding window).
 */
import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { BlockList, isIP } from 'node:net';
import type { ForwardProxyConfig } from '../config/types.js';
import { hostMatches } from './match-route.js';

const PRIVATE = new BlockList();
for (const [network, prefix] of [
  ['0.0.0.0', 8],
  ['10.0.0.0', 8],
  ['100.64.0.0', 10],
  ['127.0.0.0', 8],
  ['169.254.0.0', 16],
  ['172.16.0.0', 12],
  ['192.0.0.0', 24],
  ['192.168.0.0', 16],
  ['198.18.0.0', 15],
  ['224.0.0.0', 4],
  ['240.0.0.0', 4],
] as const) {
  PRIVATE.addSubnet(network, prefix, 'ipv4');
}
for (const [network, prefix] of [
  ['::', 128],
  ['::1', 128],
  ['fc00::', 7],
  ['fe80::', 10],
  ['ff00::', 8],
] as const) {
  PRIVATE.addSubnet(network, prefix, 'ipv6');
}

/** The IPv4 address inside an IPv4-mapped (::ffff:a.b.c.d) or NAT64 (64:ff9b::/96) IPv6 address. */
function embeddedIPv4(address: string): string | undefined {
  const lower = address.toLowerCase();
  const dotted = /^(?:::ffff:|64:ff9b::)(\d+\.\d+\.\d+\.\d+)$/.exec(lower);
  if (dotted) return dotted[1];
  const hex = /^(?:::ffff:|64:ff9b::)([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(lower);
  if (!hex) return undefined;
  const high = parseInt(hex[1]!, 16);
  const low = parseInt(hex[2]!, 16);
  return `${high >> 8}.${high & 255}.${low >> 8}.${low & 255}`;
}

/** True for loopback, RFC 1918, CGNAT, link-local (169.254.169.254), ULA, and their mapped forms. */
export function isPrivateAddress(address: string): boolean {
  const family = isIP(address);
  if (family === 4) return PRIVATE.check(address, 'ipv4');
  if (family === 6) {
    const v4 = embeddedIPv4(address);
    if (v4 !== undefined) return PRIVATE.check(v4, 'ipv4');
    return PRIVATE.check(address, 'ipv6');
  }
  return true; // not an address: never trust it
}

/**
 * A host as a URL parser reads it: lower case, no trailing dot (`a.com.` is
 * `a.com`), IPv4 odd spellings (`2130706433`, `0x7f.1`, `127.1`) normalised
 * to dotted quads, IPv6 without brackets (given with or without them).
 * Undefined when it is not a valid host. Every comparison of host
 * identities (allow-lists, interception, 421) goes through it.
 */
export function normaliseHost(host: string): string | undefined {
  const bare = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  const bracketed = isIP(bare) === 6 ? `[${bare}]` : bare;
  try {
    const parsed = new URL(`http://${bracketed}/`).hostname.replace(/\.$/, '');
    return parsed.startsWith('[') ? parsed.slice(1, -1) : parsed;
  } catch {
    return undefined;
  }
}

/** The same address however it was written (IPv4-mapped IPv6 counts as the IPv4). */
function canonicalAddress(address: string): string {
  if (isIP(address) === 6) return embeddedIPv4(address) ?? address;
  return address;
}

export type Lookup = (hostname: string) => Promise<readonly LookupAddress[]>;

export const systemLookup: Lookup = (hostname) => new Promise((resolve, reject) => dnsLookup(hostname, { all: true }, (error, addresses) => (error ? reject(error) : resolve(addresses))));

export type TargetCheck =
  { readonly ok: true; readonly host: string; readonly port: number; readonly address: string; readonly family: 4 | 6 } | { readonly ok: false; readonly reason: string; readonly dnsFailed?: boolean };

export interface TargetChecker {
  /** Checks `host:port` and picks the address to connect to. */
  check(host: string, port: number): Promise<TargetCheck>;
  /** An agent/socket `lookup` that only ever yields checked addresses. */
  readonly lookup: (hostname: string, options: unknown, callback: (error: NodeJS.ErrnoException | null, address?: string | LookupAddress[], family?: number) => void) => void;
}

export function createTargetChecker(config: ForwardProxyConfig, resolve: Lookup = systemLookup): TargetChecker {
  const exactNames = new Set<string>();
  const exactAddresses = new Set<string>();
  const wildcards: string[] = [];
  for (const entry of config.allowHosts) {
    const normal = normaliseHost(entry);
    if (entry.startsWith('*.')) wildcards.push(`*.${normaliseHost(entry.slice(2)) ?? entry.slice(2)}`);
    else if (normal !== undefined && isIP(normal)) exactAddresses.add(canonicalAddress(normal));
    else if (normal !== undefined) exactNames.add(normal);
  }
  const allowedPorts = new Set(config.allowPorts);

  /** Resolved addresses of an allowed host that may be connected to. */
  async function addressesFor(host: string): Promise<{ addresses: LookupAddress[]; reason?: string; dnsFailed?: boolean }> {
    const family = isIP(host);
    const exact = family ? exactAddresses.has(canonicalAddress(host)) : exactNames.has(host);
    let addresses: LookupAddress[];
    if (family) {
      addresses = [{ address: host, family }];
    } else {
      try {
        addresses = [...(await resolve(host))];
      } catch (error) {
        return { addresses: [], reason: `${host} does not resolve (${(error as NodeJS.ErrnoException).code ?? 'DNS error'})`, dnsFailed: true };
      }
    }
    if (!config.denyPrivateNetworks || exact) return { addresses };
    const open = addresses.filter((entry) => !isPrivateAddress(entry.address));
    if (open.length < addresses.length) {
      return { addresses: [], reason: `${host} resolves to a private address (${addresses.find((entry) => isPrivateAddress(entry.address))!.address}); only an exact allowHosts entry admits it` };
    }
    return { addresses: open };
  }

  return {
    async check(rawHost, port) {
      if (!config.enabled) return { ok: false, reason: 'the forward proxy is disabled (forwardProxy.enabled: false)' };
      const host = normaliseHost(rawHost);
      if (host === undefined || host === '') return { ok: false, reason: `"${rawHost}" is not a valid host` };
      if (!allowedPorts.has(port)) return { ok: false, reason: `port ${port} is not in forwardProxy.allowPorts` };
      const named = isIP(host) ? exactAddresses.has(canonicalAddress(host)) : exactNames.has(host) || wildcards.some((pattern) => hostMatches(host, pattern));
      if (!named) return { ok: false, reason: `${host} is not in forwardProxy.allowHosts` };
      const { addresses, reason, dnsFailed } = await addressesFor(host);
      if (addresses.length === 0) return { ok: false, reason: reason ?? `${host} has no address`, dnsFailed };
      const chosen = addresses[0]!;
      return { ok: true, host, port, address: chosen.address, family: chosen.family as 4 | 6 };
    },
    lookup(hostname, options, callback) {
      const host = normaliseHost(hostname) ?? hostname;
      addressesFor(host).then(
        ({ addresses, reason }) => {
          if (addresses.length === 0) {
            callback(Object.assign(new Error(reason ?? `${host} is not allowed`), { code: 'EHOSTNOTALLOWED' }));
            return;
          }
          if ((options as { all?: boolean } | undefined)?.all) callback(null, addresses);
          else callback(null, addresses[0]!.address, addresses[0]!.family);
        },
        (error: NodeJS.ErrnoException) => callback(error),
      );
    },
  };
}
