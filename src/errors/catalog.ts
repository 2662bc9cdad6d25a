/**
 * Every error Breakwater itself produces (SPEC §5), as data. The status,
 * retryability and responsibility are the contract; titles and hints are
 * written for the engineer reading them at 3 AM: what happened, whose side
 * it is on, and the first thing to check. `test/contract/catalog-docs.test.ts`
 * keeps this table and docs/errors.md equal in both directions.
 */

export type Responsibility = 'client' | 'upstream' | 'proxy';

export interface CatalogEntry {
  /** HTTP status of the error response. */
  readonly status: number;
  readonly title: string;
  readonly retryable: boolean;
  readonly responsibility: Responsibility;
  readonly hint: string;
}

export const CATALOG = {
  NO_ROUTE: {
    status: 404,
    title: 'No route',
    retryable: false,
    responsibility: 'client',
    hint: 'No route matches this request; check the path prefix, Host and method against the routes in the Breakwater config.',
  },
  HOST_NOT_ALLOWED: {
    status: 403,
    title: 'Host not allowed',
    retryable: false,
    responsibility: 'client',
    hint: 'The forward-proxy target is not allowed; add the host to forwardProxy.allowHosts (and its port to allowPorts) if it should be reachable.',
  },
  MISDIRECTED_REQUEST: {
    status: 421,
    title: 'Misdirected request',
    retryable: false,
    responsibility: 'client',
    hint: 'The request names a host this proxy does not serve: another host than the CONNECT it came through, or a Host header no route or listen.serverNames names; send each host through its own CONNECT, or add the name to listen.serverNames.',
  },
  CROSS_ORIGIN_REFUSED: {
    status: 403,
    title: 'Cross-origin request refused',
    retryable: false,
    responsibility: 'client',
    hint: "A web page may not call the proxy; call it from the app, or list the page's origin in listen.allowOrigins.",
  },
  BAD_REQUEST: {
    status: 400,
    title: 'Bad request',
    retryable: false,
    responsibility: 'client',
    hint: 'The request is not valid HTTP or cannot be forwarded; check how the client builds its request line, headers and body framing.',
  },
  HEADERS_TOO_LARGE: {
    status: 431,
    title: 'Request headers too large',
    retryable: false,
    responsibility: 'client',
    hint: 'The request headers exceed limits.maxHeaderSize; look for oversized cookies or tokens, or raise the limit.',
  },
  PAYLOAD_TOO_LARGE: {
    status: 413,
    title: 'Payload too large',
    retryable: false,
    responsibility: 'client',
    hint: 'The request body exceeds limits.maxBodySize; send a smaller body or raise the limit.',
  },
  REQUEST_BODY_TIMEOUT: {
    status: 408,
    title: 'Request body timeout',
    retryable: true,
    responsibility: 'client',
    hint: "The request body stopped arriving; check the client's upload, then send the request again.",
  },
  CREDENTIAL_LEAK: {
    status: 403,
    title: 'Credential leak',
    retryable: false,
    responsibility: 'client',
    hint: "The request carries a secret that belongs to another upstream; remove it: Breakwater adds each upstream's credentials itself.",
  },
  RATE_LIMITED: {
    status: 429,
    title: 'Rate limited',
    retryable: true,
    responsibility: 'client',
    hint: "This route's rate limit refused the request; wait for Retry-After and slow down, or raise the route's rateLimit.",
  },
  CIRCUIT_OPEN: {
    status: 503,
    title: 'Circuit open',
    retryable: true,
    responsibility: 'upstream',
    hint: 'The provider is failing; wait and retry with backoff, check its status page.',
  },
  UPSTREAM_TIMEOUT: {
    status: 504,
    title: 'Upstream timeout',
    retryable: true,
    responsibility: 'upstream',
    hint: 'The upstream did not send response headers (or, with timeouts.firstByte, the first byte of its body) in time; check its latency and status page, or raise timeouts.perTry/total/firstByte.',
  },
  UPSTREAM_STREAM_STALLED: {
    status: 504,
    title: 'Upstream stream stalled',
    retryable: true,
    responsibility: 'upstream',
    hint: 'The provider stopped sending in the middle of its answer; the partial answer is incomplete: retry the whole request.',
  },
  UPSTREAM_CONNECT_FAILED: {
    status: 502,
    title: 'Upstream connect failed',
    retryable: true,
    responsibility: 'upstream',
    hint: 'Breakwater could not connect to the upstream; check its URL, DNS and that it is up and reachable from here.',
  },
  UPSTREAM_RESET: {
    status: 502,
    title: 'Upstream reset',
    retryable: true,
    responsibility: 'upstream',
    hint: 'The upstream closed the connection before answering; check its logs for crashes or restarts, and its keep-alive timeout.',
  },
  UPSTREAM_TLS_FAILED: {
    status: 502,
    title: 'Upstream TLS failed',
    retryable: false,
    responsibility: 'proxy',
    hint: "The TLS handshake with the upstream failed; check the upstream URL's host name and certificate, and tls.ca in the config.",
  },
  UPSTREAM_PROTOCOL_ERROR: {
    status: 502,
    title: 'Upstream protocol error',
    retryable: false,
    responsibility: 'upstream',
    hint: "The upstream did not answer with valid HTTP; check the upstream URL's port and scheme (http vs https).",
  },
  CREDENTIALS_UNAVAILABLE: {
    status: 502,
    title: 'Credentials unavailable',
    retryable: true,
    responsibility: 'proxy',
    hint: "Breakwater could not get a token from the upstream's token endpoint; check the upstream's credentials and the endpoint's health.",
  },
  PROXY_DRAINING: {
    status: 503,
    title: 'Proxy draining',
    retryable: true,
    responsibility: 'proxy',
    hint: 'This Breakwater instance is shutting down; retry on a new connection.',
  },
  INTERNAL_ERROR: {
    status: 500,
    title: 'Internal error',
    retryable: true,
    responsibility: 'proxy',
    hint: 'Breakwater hit a fault of its own; retry, and report it with the requestId (its log line has the details).',
  },
  ADMIN_FORBIDDEN: {
    status: 403,
    title: 'Admin endpoint forbidden',
    retryable: false,
    responsibility: 'client',
    hint: 'Read this from the pod or host itself (loopback, kubectl port-forward), or configure admin.token and send it.',
  },
  ADMIN_UNAUTHORIZED: {
    status: 401,
    title: 'Admin token required',
    retryable: false,
    responsibility: 'client',
    hint: 'Send Authorization: Bearer <admin token>, or open /?token=<admin token> in a browser; the token is admin.token (or admin.tokenFile) in the config.',
  },
} as const satisfies Record<string, CatalogEntry>;

export type ErrorCode = keyof typeof CATALOG;

/**
 * Codes that are recorded but never sent as a body (SPEC §5:
 * RETRY_BUDGET_EXHAUSTED is a log flag and a metric).
 */
export const RECORDED_ONLY_CODES = ['RETRY_BUDGET_EXHAUSTED'] as const;

/** `CIRCUIT_OPEN` → `urn:breakwater:error:circuit-open`. */
export function typeUrn(code: string): string {
  return `urn:breakwater:error:${code.toLowerCase().replace(/_/g, '-')}`;
}
