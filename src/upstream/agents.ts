/**
 * One keep-alive agent per upstream (SPEC §3 `pool`, `tls`), able to hand
 * the request it was just given to the attempt that created it.
 *
 * Why: http-proxy-3 only exposes its outgoing request in a `proxyReq` event
 * fired once a socket is assigned (and never for `Expect: 100-continue`),
 * but a per-try timer must be able to destroy a request still waiting for a
 * pooled socket. `http.request` calls `agent.addRequest` synchronously,
 * inside `proxy.web`, so the agent records it in a one-slot mailbox that
 * the caller empties right after `proxy.web` returns. JavaScript being
 * single-threaded, no other request can run in between.
 */
import http, { type ClientRequest } from 'node:http';
import https from 'node:https';
import type { SecureContext } from 'node:tls';
import type { UpstreamConfig } from '../config/types.js';

let lastRequest: ClientRequest | undefined;

type AddRequest = (request: ClientRequest, options: unknown) => void;

class CapturingHttpAgent extends http.Agent {}
class CapturingHttpsAgent extends https.Agent {}
for (const Agent of [CapturingHttpAgent, CapturingHttpsAgent]) {
  const base = (Object.getPrototypeOf(Agent.prototype) as { addRequest: AddRequest }).addRequest;
  (Agent.prototype as unknown as { addRequest: AddRequest }).addRequest = function addRequest(this: http.Agent, request, options) {
    lastRequest = request;
    base.call(this, request, options);
  };
}

/** The request the last `addRequest` on any upstream agent received; empties the slot. */
export function takeLastRequest(): ClientRequest | undefined {
  const request = lastRequest;
  lastRequest = undefined;
  return request;
}

export function createUpstreamAgent(config: UpstreamConfig): http.Agent {
  const options = { keepAlive: config.pool.keepAlive, maxSockets: config.pool.maxSockets, scheduling: 'lifo' as const };
  if (new URL(config.url).protocol === 'https:') {
    return new CapturingHttpsAgent({ ...options, ca: config.tls.ca ?? undefined, rejectUnauthorized: !config.tls.insecureSkipVerify });
  }
  return new CapturingHttpAgent(options);
}

/**
 * The agent of a forward-proxy target: keep-alive, connecting only to
 * addresses the target check allowed. With `tls`, an https agent (an
 * intercepted CONNECT's re-originated TLS): always verified, against the
 * roots of `secureContext` (built once) or the system roots.
 */
export function createForwardAgent(lookup: http.AgentOptions['lookup'], tls?: { readonly secureContext: SecureContext | undefined }): http.Agent {
  const options = { keepAlive: true, maxSockets: 256, scheduling: 'lifo' as const, lookup };
  if (tls) return new CapturingHttpsAgent({ ...options, secureContext: tls.secureContext, rejectUnauthorized: true });
  return new CapturingHttpAgent(options);
}
