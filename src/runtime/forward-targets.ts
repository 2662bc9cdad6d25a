/**
 * Forward-proxy targets (SPEC §3 `forwardProxy`): one per host:port (and
 * scheme), each with its own agent that connects only to the addresses the
 * target check approved, and its own breaker. Kept in a bounded map in
 * least-recently-used order; beyond MAX_FORWARD_TARGETS, idle targets (no
 * socket, no queued request) are closed first, busy ones are never evicted.
 */
import type { BreakerDeps } from '../policy/circuit-breaker.js';
import { createUpstreamBreaker, type UpstreamBreaker } from '../policy/circuit-breaker.js';
import { defaultCircuitBreaker } from '../config/resolve.js';
import type { TargetChecker } from '../router/target-check.js';
import { createForwardAgent } from '../upstream/agents.js';
import type { UpstreamTarget } from '../upstream/forward.js';
import type tls from 'node:tls';
import { BoundedMap } from '../lib/bounded-map.js';

/** Live forward-proxy targets kept (idle ones beyond this are closed). */
export const MAX_FORWARD_TARGETS = 500;

export interface ForwardTarget {
  readonly target: UpstreamTarget;
  readonly breaker: UpstreamBreaker;
}

export interface ForwardTargets {
  /** The target for host:port (https: re-originated TLS, verified against `host`), created on first use. */
  get(host: string, port: number, https?: boolean): ForwardTarget;
  size(): number;
  close(): void;
}

export function createForwardTargets(targets: TargetChecker, upstreamContext: () => tls.SecureContext | undefined, deps: BreakerDeps): ForwardTargets {
  const breakerConfig = defaultCircuitBreaker();
  const entries = new BoundedMap<string, ForwardTarget>({
    max: MAX_FORWARD_TARGETS,
    busy: (entry) => {
      const agent = entry.target.agent as unknown as { sockets: Record<string, unknown[]>; requests: Record<string, unknown[]> };
      return Object.keys(agent.sockets).length > 0 || Object.keys(agent.requests).length > 0;
    },
    onEvict: (entry) => closeOne(entry),
  });
  function closeOne(entry: ForwardTarget): void {
    entry.breaker.close();
    entry.target.agent.destroy();
  }
  return {
    get(host, port, https = false) {
      const name = `${host.includes(':') ? `[${host}]` : host}:${port}`;
      const key = https ? `https://${name}` : name;
      return entries.getOrCreate(key, () => {
        const url = new URL(`${https ? 'https' : 'http'}://${name}`);
        // Re-originated TLS is always verified, against the CONNECT host as server name.
        const agent = createForwardAgent(targets.lookup as never, https ? { secureContext: upstreamContext() } : undefined);
        return {
          target: { name, url, agent, ca: undefined, rejectUnauthorized: true, proxyOptions: { target: url, agent, ca: undefined, secure: true, prependPath: false } },
          breaker: createUpstreamBreaker(name, breakerConfig, deps),
        };
      });
    },
    size: () => entries.size,
    close() {
      for (const entry of entries.values()) closeOne(entry);
      entries.clear();
    },
  };
}
