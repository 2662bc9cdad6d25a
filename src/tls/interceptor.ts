/**
 * TLS interception (SPEC §3 `forwardProxy.connect.mode: intercept`): the
 * leaf certificates for intercepted CONNECT targets, and the mark that
 * tells the HTTP server a decrypted connection's true target.
 *
 * The CA key is read once, when the runtime is built, and kept only inside
 * the (non-extractable) signing key object. Leaves share one key per process and are kept as
 * ready `SecureContext`s per host (least recently used dropped first);
 * concurrent CONNECTs to one new host wait on one mint.
 */
import { BoundedMap } from '../lib/bounded-map.js';
import type { IncomingMessage } from 'node:http';
import { isIP } from 'node:net';
import tls from 'node:tls';
import { readCaKey } from '../config/ca-files.js';
import type { ForwardProxyConfig } from '../config/types.js';
import { BreakwaterError } from '../errors/breakwater-error.js';
import type { Metrics } from '../observe/metrics.js';
import { normaliseHost } from '../router/target-check.js';
import type { LeafIssuer } from './certificates.js';
import { systemClock } from '../lib/clock.js';

/** Hosts whose leaf is kept ready. */
export const MAX_LEAVES = 1000;
/** Leaves are short-lived; one is minted again a day before it expires. */
const LEAF_DAYS = 7;

/** Where a decrypted connection really goes: the CONNECT target, its identity. */
export interface InterceptedTarget {
  /** As normaliseHost gives it: lower case, no trailing dot, IPv6 without brackets. */
  readonly host: string;
  readonly port: number;
}

const marks = new WeakMap<object, InterceptedTarget>();

export function markIntercepted(socket: object, target: InterceptedTarget): void {
  marks.set(socket, target);
}

/** The CONNECT target behind a decrypted socket, or undefined for a plain client connection. */
export function interceptedTarget(socket: object): InterceptedTarget | undefined {
  return marks.get(socket);
}

/** The target as a request authority (`host`, `host:port` unless 443, IPv6 in brackets), for route matching. */
export function authorityOf(target: InterceptedTarget): string {
  return `${target.host.includes(':') ? `[${target.host}]` : target.host}${target.port === 443 ? '' : `:${target.port}`}`;
}

/**
 * The CONNECT host is a decrypted request's identity: a TLS server name, or
 * a Host header (parsed as an authority: one host, an optional port), that
 * names another host or port is refused with 421 MISDIRECTED_REQUEST.
 */
export function checkIdentity(req: IncomingMessage, target: InterceptedTarget): void {
  const sni = (req.socket as tls.TLSSocket).servername;
  if (typeof sni === 'string' && sni !== '' && normaliseHost(sni) !== target.host) {
    throw new BreakwaterError(
      'MISDIRECTED_REQUEST',
      `The TLS server name ${sni} is not the CONNECT target ${target.host}.`,
    );
  }
  const hostHeader = req.headers.host;
  if (!hostHeader) return;
  let named: URL | undefined;
  try {
    named = new URL(`https://${hostHeader}/`);
  } catch {
    named = undefined;
  }
  const name = named && named.username === '' && named.pathname === '/' ? normaliseHost(named.hostname) : undefined;
  const port = named?.port ? Number(named.port) : target.port;
  if (name !== target.host || port !== target.port) {
    throw new BreakwaterError(
      'MISDIRECTED_REQUEST',
      `The Host header names ${hostHeader}, but this connection was opened (CONNECT) to ${target.host}:${target.port}.`,
    );
  }
}

export interface Interceptor {
  /**
   * True when CONNECTs to `host` are intercepted (`intercept.hosts`: exact, `*.` for names under a domain, IP
   * literals).
   */
  matches(host: string): boolean;
  /** The TLS context presenting a leaf for `host`. */
  contextFor(host: string): Promise<tls.SecureContext>;
  /** The roots for the re-originated TLS (system roots plus `upstreamCa`), or undefined: the system roots. */
  readonly upstreamContext: tls.SecureContext | undefined;
}

/** `wall`: epoch ms, for leaf validity and renewal (the system clock by default). */
export function createInterceptor(
  config: NonNullable<ForwardProxyConfig['intercept']>,
  metrics: Metrics,
  wall: () => number = systemClock.wall,
): Interceptor {
  // Read once, as PKCS#8 (a SEC1 "EC PRIVATE KEY" file is converted), and
  // handed to the issuer at once: only its signing key object keeps it.
  // The same reader and checks as at load (owner-only file, a private key).
  const key = readCaKey(config.caKeyFile, '/');
  if (!key.ok) throw new Error(`forwardProxy.intercept.caKey: ${key.message}`);
  const keyPem = key.value.export({ type: 'pkcs8', format: 'pem' }) as string;
  // The certificate stack (@peculiar/x509, ~20 MiB) loads only for a config that intercepts.
  const issuer: Promise<LeafIssuer> = import('./certificates.js').then(({ createLeafIssuer }) =>
    createLeafIssuer({ certPem: config.caCert, keyPem }, { days: LEAF_DAYS, wall }),
  );
  issuer.catch(() => {}); // reported by each contextFor that awaits it
  /** Per host: the context, and when to mint again (a day before the leaf expires). */
  const contexts = new BoundedMap<string, { context: Promise<tls.SecureContext>; renewAt: number }>({
    max: MAX_LEAVES,
  });
  const canonical = (host: string) => normaliseHost(host) ?? host.toLowerCase();
  const exact = new Set(config.hosts.filter((host) => !host.startsWith('*.')).map(canonical));
  const suffixes = config.hosts.filter((host) => host.startsWith('*.')).map((host) => `.${canonical(host.slice(2))}`);
  return {
    matches(host) {
      const name = canonical(host);
      if (exact.has(name)) return true;
      return isIP(name) === 0 && suffixes.some((suffix) => name.endsWith(suffix));
    },
    contextFor(host) {
      let entry = contexts.get(host);
      if (!entry || wall() >= entry.renewAt) {
        const context = issuer.then(async (leaves) => {
          const { certChainPem } = await leaves.issue(host);
          metrics.tlsCertificatesMinted.inc({});
          return tls.createSecureContext({ key: leaves.keyPem, cert: certChainPem, minVersion: 'TLSv1.2' });
        });
        // A failed mint is not kept: the next CONNECT tries again.
        context.catch(() => contexts.delete(host));
        entry = { context, renewAt: wall() + (LEAF_DAYS - 1) * 86_400_000 };
      }
      contexts.set(host, entry);
      return entry.context;
    },
    upstreamContext: config.upstreamCa
      ? tls.createSecureContext({ ca: [...tls.rootCertificates, config.upstreamCa] })
      : undefined,
  };
}
