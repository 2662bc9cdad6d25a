/**
 * Forward-proxy allow-lists (SPEC §3, §19.2, §19.3): the global one, and
 * one per caller. A caller is matched on the CONNECT or absolute-form
 * request (every key given must hold: exact header values, the peer's
 * address in a CIDR, the user of `Proxy-Authorization: Basic`); the first
 * match's list, ports and mode replace the global ones. A caller
 * identifies, it does not authenticate: only `source` is a boundary.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { BlockList, isIP } from 'node:net';
import type { ForwardCallerConfig, ForwardProxyConfig, PolicyMode } from '../config/types.js';
import { hostMatches } from './match-route.js';

/** One list, compiled: exact names, exact addresses (canonical), `*.` wildcards, `"*"`. */
export interface AllowList {
  /** The caller's name, or null for the global list. */
  readonly caller: string | null;
  readonly anyHost: boolean;
  readonly exactNames: ReadonlySet<string>;
  readonly exactAddresses: ReadonlySet<string>;
  readonly wildcards: readonly string[];
  readonly ports: ReadonlySet<number>;
  readonly mode: PolicyMode;
}

/** Who is asking: what a caller is matched on. */
export interface Asker {
  readonly headers: IncomingHttpHeaders;
  readonly remoteAddress: string | undefined;
}

export function compileList(
  caller: string | null,
  hosts: readonly string[],
  ports: readonly number[],
  mode: PolicyMode,
  normalise: (host: string) => string | undefined,
  canonical: (address: string) => string,
): AllowList {
  const exactNames = new Set<string>();
  const exactAddresses = new Set<string>();
  const wildcards: string[] = [];
  let anyHost = false;
  for (const entry of hosts) {
    const normal = normalise(entry);
    if (entry === '*') anyHost = true;
    else if (entry.startsWith('*.')) wildcards.push(`*.${normalise(entry.slice(2)) ?? entry.slice(2)}`);
    else if (normal !== undefined && isIP(normal)) exactAddresses.add(canonical(normal));
    else if (normal !== undefined) exactNames.add(normal);
  }
  return { caller, anyHost, exactNames, exactAddresses, wildcards, ports: new Set(ports), mode };
}

/** Whether `host` (normalised) is named by the list. */
export function names(list: AllowList, host: string, canonical: (address: string) => string): boolean {
  if (list.anyHost) return true;
  if (isIP(host)) return list.exactAddresses.has(canonical(host));
  return list.exactNames.has(host) || list.wildcards.some((pattern) => hostMatches(host, pattern));
}

/** The user of `Proxy-Authorization: Basic base64(user:password)`, if any. */
function proxyUserOf(header: string | undefined): string | undefined {
  if (!header || header.slice(0, 6).toLowerCase() !== 'basic ') return undefined;
  const decoded = Buffer.from(header.slice(6).trim(), 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  return colon === -1 ? decoded : decoded.slice(0, colon);
}

function sourceList(sources: readonly string[]): BlockList {
  const list = new BlockList();
  for (const source of sources) {
    const [address = '', bits] = source.split('/');
    const type = isIP(address) === 6 ? 'ipv6' : 'ipv4';
    if (bits === undefined) list.addAddress(address, type);
    else list.addSubnet(address, Number(bits), type);
  }
  return list;
}

/** A caller's match, compiled once. */
function matcher(caller: ForwardCallerConfig): (asker: Asker) => boolean {
  const { header, source, proxyUser } = caller.match;
  const sources = source ? sourceList(source) : null;
  return (asker) => {
    if (header && !Object.entries(header).every(([name, value]) => asker.headers[name] === value)) return false;
    if (sources) {
      const peer = asker.remoteAddress ?? '';
      const v4 = peer.startsWith('::ffff:') && isIP(peer.slice(7)) === 4 ? peer.slice(7) : peer;
      const family = isIP(v4);
      if (family === 0 || !sources.check(v4, family === 6 ? 'ipv6' : 'ipv4')) return false;
    }
    if (proxyUser !== null) {
      const sent = asker.headers['proxy-authorization'];
      if (proxyUserOf(typeof sent === 'string' ? sent : undefined) !== proxyUser) return false;
    }
    return true;
  };
}

/** The global list and the callers' lists, with the function that picks one for a request. */
/** What the allow-lists are made of: the global list and the callers'. */
export type EgressConfig = Pick<ForwardProxyConfig, 'allowHosts' | 'allowPorts' | 'mode' | 'callers'>;

export function egressLists(
  config: EgressConfig,
  normalise: (host: string) => string | undefined,
  canonical: (address: string) => string,
) {
  const global = compileList(null, config.allowHosts, config.allowPorts, config.mode, normalise, canonical);
  const callers = config.callers.map((caller) => ({
    matches: matcher(caller),
    list: compileList(caller.name, caller.allowHosts, caller.allowPorts, caller.mode, normalise, canonical),
  }));
  return {
    all: [global, ...callers.map((caller) => caller.list)],
    listFor: (asker: Asker | undefined): AllowList =>
      (asker && callers.find((caller) => caller.matches(asker))?.list) || global,
  };
}
