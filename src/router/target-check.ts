/**
 * Forward-proxy target checks (SPEC §3 `forwardProxy`), in one place and
 * before any connection is made: the proxy must never become an open proxy
 * or a way into the private network or the cloud metadata service.
 *
 * Order: enabled; port in `allowPorts`; host in `allowHosts` (exact names,
 * `*.` wildcards, IP addresses in any spelling, `"*"` for any host); then
 * the literal address, or every address the name resolves to, is checked
 * against the private ranges in every IPv6 spelling (SPEC §20.8; unless an
 * exact `allowHosts` entry names the host), and the connection is made to an
 * address that was checked: the agent's lookup runs the same check, so a
 * name that flips to a private address between check and connect is
 * refused too (no DNS-rebinding window).
 */
import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { BlockList, isIP } from 'node:net';
import type { ForwardProxyConfig } from '../config/types.js';
import { egressLists, names, type AllowList, type Asker, type EgressConfig } from './egress.js';

/**
 * IPv4 ranges that are no public destination: this host, RFC 1918, CGNAT, loopback, link-local
 * (169.254.169.254), IETF, benchmarking, multicast, reserved.
 */
const PRIVATE_V4: readonly (readonly [string, number])[] = [
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
];

/**
 * IPv6 ranges refused whole (SPEC §20.8): loopback, ULA, link-local, multicast, local-use NAT64, site-local,
 * Teredo, discard, documentation.
 */
const PRIVATE_V6: readonly (readonly [string, number])[] = [
  ['::1', 128],
  ['fc00::', 7],
  ['fe80::', 10],
  ['ff00::', 8],
  ['64:ff9b:1::', 48],
  ['fec0::', 10],
  ['2001::', 32],
  ['100::', 64],
  ['2001:db8::', 32],
];

/**
 * IPv6 forms that carry an IPv4 address (SPEC §20.8), refused when that
 * IPv4 is private: the form's prefix as a 128-bit number and the bit where
 * the IPv4 starts. `::/96` (compatible) also covers `::` and `::1`.
 */
const EMBEDDINGS: readonly (readonly [bigint, number])[] = [
  [0xffffn << 32n, 96], // mapped ::ffff:0:0/96
  [0xffffn << 48n, 96], // translated ::ffff:0:0:0/96
  [0n, 96], // compatible ::/96 (::7f00:1)
  [0x64ff9bn << 96n, 96], // NAT64 64:ff9b::/96
  [0x2002n << 112n, 16], // 6to4 2002::/16, the IPv4 in bits 16-47
];

/** An IPv6 address in full hexadecimal groups. */
function ipv6Text(value: bigint): string {
  const groups: string[] = [];
  for (let shift = 112n; shift >= 0n; shift -= 16n) groups.push(((value >> shift) & 0xffffn).toString(16));
  return groups.join(':');
}

/**
 * Every private range, IPv6 forms included. node's BlockList parses the
 * address however it is spelled (compressed, upper case, dotted tail);
 * zone ids are cut off before it is asked ({@link isPrivateAddress}).
 */
const PRIVATE = new BlockList();
for (const [network, prefix] of PRIVATE_V4) {
  PRIVATE.addSubnet(network, prefix, 'ipv4');
  const v4 = network.split('.').reduce((bits, octet) => (bits << 8n) | BigInt(octet), 0n);
  for (const [base, at] of EMBEDDINGS) PRIVATE.addSubnet(ipv6Text(base | (v4 << BigInt(96 - at))), at + prefix, 'ipv6');
}
for (const [network, prefix] of PRIVATE_V6) PRIVATE.addSubnet(network, prefix, 'ipv6');

/**
 * True for an address in a private range (SPEC §3 `denyPrivateNetworks`,
 * §20.8), in any spelling; a zone id (`fe80::1%eth0`) does not hide it.
 * Anything that is not an address counts as private.
 */
export function isPrivateAddress(address: string): boolean {
  const family = isIP(address);
  if (family === 4) return PRIVATE.check(address, 'ipv4');
  if (family === 6) {
    const zone = address.indexOf('%');
    return PRIVATE.check(zone === -1 ? address : address.slice(0, zone), 'ipv6');
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

/**
 * The same address however it was written: an IPv4-mapped IPv6 address
 * (`::ffff:127.0.0.1`) is its IPv4, other IPv6 addresses their normal
 * form. NAT64 and 6to4 forms are other addresses (they go through a
 * gateway): an allowHosts entry for the IPv4 does not admit them.
 */
function canonicalAddress(address: string): string {
  if (isIP(address) !== 6) return address;
  const normal = normaliseHost(address) ?? address;
  const mapped = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(normal);
  if (!mapped) return normal;
  const high = parseInt(mapped[1]!, 16);
  const low = parseInt(mapped[2]!, 16);
  return `${high >> 8}.${high & 255}.${low >> 8}.${low & 255}`;
}

export type Lookup = (hostname: string) => Promise<readonly LookupAddress[]>;

export const systemLookup: Lookup = (hostname) =>
  new Promise((resolve, reject) =>
    dnsLookup(hostname, { all: true }, (error, addresses) => (error ? reject(error) : resolve(addresses))),
  );

export type TargetCheck =
  | {
      readonly ok: true;
      readonly host: string;
      readonly port: number;
      readonly address: string;
      readonly family: 4 | 6;
      /** The caller whose list applied (SPEC §19.3), null for the global one. */
      readonly caller: string | null;
      /** In report mode (SPEC §19.2): why the list would have refused it. */
      readonly wouldDeny?: string;
    }
  | { readonly ok: false; readonly reason: string; readonly dnsFailed?: boolean; readonly caller: string | null };

export interface TargetChecker {
  /** Checks `host:port` for `asker` (its caller's list, else the global one) and picks the address to connect to. */
  check(host: string, port: number, asker?: Asker): Promise<TargetCheck>;
  /** An agent/socket `lookup` that only ever yields checked addresses. */
  readonly lookup: (
    hostname: string,
    options: unknown,
    callback: (error: NodeJS.ErrnoException | null, address?: string | LookupAddress[], family?: number) => void,
  ) => void;
}

/**
 * Resolved addresses of a host that may be connected to; `exact`: an exact entry names it (private addresses
 * admitted).
 */
async function checkedAddresses(
  host: string,
  exact: boolean,
  resolve: Lookup,
  denyPrivateNetworks: boolean,
): Promise<{ addresses: LookupAddress[]; reason?: string; dnsFailed?: boolean }> {
  const family = isIP(host);
  let addresses: LookupAddress[];
  if (family) {
    addresses = [{ address: host, family }];
  } else {
    try {
      addresses = [...(await resolve(host))];
    } catch (error) {
      return {
        addresses: [],
        reason: `${host} does not resolve (${(error as NodeJS.ErrnoException).code ?? 'DNS error'})`,
        dnsFailed: true,
      };
    }
  }
  if (!denyPrivateNetworks || exact) return { addresses };
  const open = addresses.filter((entry) => !isPrivateAddress(entry.address));
  if (open.length < addresses.length) {
    return {
      addresses: [],
      reason: `${host} resolves to a private address (${addresses.find((entry) => isPrivateAddress(entry.address))!.address}); only an exact allowHosts entry admits it`,
    };
  }
  return { addresses: open };
}

export function createTargetChecker(
  config: EgressConfig & Pick<ForwardProxyConfig, 'enabled' | 'denyPrivateNetworks'>,
  resolve: Lookup = systemLookup,
): TargetChecker {
  const lists = egressLists(config, normaliseHost, canonicalAddress);
  /** An exact entry of any list: the connect-time lookup runs after the request's own list admitted the host. */
  const exactAnywhere = (host: string) =>
    lists.all.some((list) =>
      isIP(host) ? list.exactAddresses.has(canonicalAddress(host)) : list.exactNames.has(host),
    );

  const addressesFor = (host: string, exact: boolean) =>
    checkedAddresses(host, exact, resolve, config.denyPrivateNetworks);

  /** Why `list` refuses host:port, or undefined. */
  const refusal = (list: AllowList, host: string, port: number): string | undefined => {
    const whose = list.caller === null ? 'forwardProxy' : `caller '${list.caller}'s`;
    if (!list.ports.has(port)) return `port ${port} is not in ${whose} allowPorts`;
    if (!names(list, host, canonicalAddress)) return `${host} is not in ${whose} allowHosts`;
    return undefined;
  };

  return {
    async check(rawHost, port, asker) {
      const list = lists.listFor(asker);
      const caller = list.caller;
      // Never report-only (SPEC §19.2): a disabled proxy, a host that is no host, a private address.
      if (!config.enabled)
        return { ok: false, reason: 'the forward proxy is disabled (forwardProxy.enabled: false)', caller };
      const host = normaliseHost(rawHost);
      if (host === undefined || host === '') return { ok: false, reason: `"${rawHost}" is not a valid host`, caller };
      const refused = refusal(list, host, port);
      if (refused !== undefined && list.mode === 'enforce') return { ok: false, reason: refused, caller };
      const exact =
        refused === undefined &&
        (isIP(host) ? list.exactAddresses.has(canonicalAddress(host)) : list.exactNames.has(host));
      const { addresses, reason, dnsFailed } = await addressesFor(host, exact);
      if (addresses.length === 0) return { ok: false, reason: reason ?? `${host} has no address`, dnsFailed, caller };
      const chosen = addresses[0]!;
      return {
        ok: true,
        host,
        port,
        address: chosen.address,
        family: chosen.family as 4 | 6,
        caller,
        ...(refused !== undefined && { wouldDeny: refused }),
      };
    },
    lookup(hostname, options, callback) {
      const host = normaliseHost(hostname) ?? hostname;
      addressesFor(host, exactAnywhere(host)).then(
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
