/**
 * The only place where an attempt's result is mapped to an outcome (SPEC §6
 * label values): a status, a socket error, a passed deadline, or a provider
 * rule's decision about an answer (SPEC §14). Retry, breaker, failover,
 * pacing and the attempt metrics read this one classification; no policy
 * inspects status codes or socket errors itself. (The server reads the
 * status of the answer it sends, to normalize it or replace it with a
 * stored one.)
 */
import type { ErrorCode } from '../errors/catalog.js';
import type { RuleDecision } from '../errors/provider-table.js';

export const OUTCOMES = ['success', 'http_5xx', 'http_429', 'http_4xx', 'timeout', 'connect_failure', 'reset'] as const;
export type Outcome = (typeof OUTCOMES)[number];

export interface Classification {
  readonly outcome: Outcome;
  /** The upstream's status, when response headers arrived. */
  readonly status?: number;
  /** When no response arrived: the error the client would get. */
  readonly code?: ErrorCode;
  /** For the error body: what happened, in words. */
  readonly detail?: string;
  /** A provider rule's decision (SPEC §14): `status` is then the status it is treated as. */
  readonly rule?: RuleDecision;
}

/** An answer a provider rule decided (SPEC §14): classified as the status the rule treats it as, the decision kept. */
export function classifyDecision(status: number, decision: RuleDecision): Classification {
  return { ...classifyStatus(decision.as ?? status), rule: decision };
}

/**
 * Why an attempt's signal aborted, when that is an outcome: its deadline
 * passed (the reason's code is UPSTREAM_TIMEOUT, errors/deadline-exceeded.ts),
 * a timeout. Anything else (the client left) is not: undefined.
 */
export function classifyAbort(reason: unknown): Classification | undefined {
  const timedOut = reason instanceof Error && (reason as { code?: unknown }).code === 'UPSTREAM_TIMEOUT';
  return timedOut ? classifyTimeout(reason.message) : undefined;
}

/** A response that arrived, by its status. 1xx-3xx are successes: the upstream answered. */
export function classifyStatus(status: number): Classification {
  if (status === 429) return { outcome: 'http_429', status };
  if (status >= 500) return { outcome: 'http_5xx', status };
  if (status >= 400) return { outcome: 'http_4xx', status };
  return { outcome: 'success', status };
}

const CONNECT_CODES: Record<string, string> = {
  ECONNREFUSED: 'refused the connection',
  ENOTFOUND: 'has a host name that does not resolve',
  EAI_AGAIN: 'has a host name that could not be resolved (DNS temporary failure)',
  EAI_FAIL: 'has a host name that could not be resolved',
  EHOSTUNREACH: 'is unreachable (no route to host)',
  ENETUNREACH: 'is unreachable (network unreachable)',
  EHOSTDOWN: 'is down',
  EADDRNOTAVAIL: 'could not be connected to (address not available)',
  ETIMEDOUT: 'did not accept the connection in time',
};

const TLS_CODES = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_REVOKED',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'ERR_TLS_HANDSHAKE_TIMEOUT',
  'HOSTNAME_MISMATCH',
]);

/** What the attempt knew about its socket when the error came. */
export interface ErrorPhase {
  /** The TCP connection (and TLS handshake, for https) had completed. */
  readonly connected: boolean;
}

function errorCode(error: unknown): string {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : '';
}

/** TLS records that are not TLS (a plain port), and SSL errors that say the peer spoke HTTP. */
const NOT_TLS_CODES = new Set([
  'ERR_SSL_WRONG_VERSION_NUMBER',
  'ERR_SSL_PACKET_LENGTH_TOO_LONG',
  'ERR_SSL_HTTP_REQUEST',
]);

/** The upstream answered with bytes that are not HTTP (undici's parser errors, node's HPE_ codes), or not TLS. */
function isProtocolError(error: unknown, code: string, message: string): boolean {
  if (code.startsWith('HPE_') || code === 'UND_ERR_HEADERS_OVERFLOW' || NOT_TLS_CODES.has(code)) return true;
  if ((error as Error | null)?.name === 'HTTPParserError') return true;
  return code === 'EPROTO' && /wrong version number|packet length too long|http request/i.test(message);
}

/**
 * The HTTP client refused to send the request itself (its method, path, a
 * header name or value): nothing reached the upstream, and no other
 * attempt would fare better (SPEC §20.2). undici says so before it takes a
 * connection, with InvalidArgumentError.
 */
export function refusedByHttpClient(error: unknown, phase: ErrorPhase): boolean {
  return !phase.connected && errorCode(error) === 'UND_ERR_INVALID_ARG';
}

/** A socket or parser error of an attempt, before response headers. */
export function classifyError(error: unknown, phase: ErrorPhase): Classification {
  const code = errorCode(error);
  const message = (error as Error | null)?.message ?? String(error);
  if (code in CONNECT_CODES) {
    return { outcome: 'connect_failure', code: 'UPSTREAM_CONNECT_FAILED', detail: `${CONNECT_CODES[code]} (${code})` };
  }
  if (code === 'UND_ERR_CONNECT_TIMEOUT') {
    return {
      outcome: 'connect_failure',
      code: 'UPSTREAM_CONNECT_FAILED',
      detail: `did not accept the connection in time (${code})`,
    };
  }
  if (isProtocolError(error, code, message)) {
    return {
      outcome: 'reset',
      code: 'UPSTREAM_PROTOCOL_ERROR',
      detail: `did not answer with valid HTTP (${code || message}); is the port or scheme right?`,
    };
  }
  if (
    TLS_CODES.has(code) ||
    code.startsWith('ERR_SSL_') ||
    code.startsWith('ERR_TLS_') ||
    code === 'EPROTO' ||
    /certificate|ssl|tls/i.test(code)
  ) {
    return {
      outcome: 'connect_failure',
      code: 'UPSTREAM_TLS_FAILED',
      detail: `failed the TLS handshake (${code || message})`,
    };
  }
  if (!phase.connected) {
    return {
      outcome: 'connect_failure',
      code: 'UPSTREAM_CONNECT_FAILED',
      detail: `closed the connection while connecting (${code || message})`,
    };
  }
  return {
    outcome: 'reset',
    code: 'UPSTREAM_RESET',
    detail: `closed the connection before sending response headers (${code || message})`,
  };
}

/** The per-try or total deadline passed before response headers arrived. */
export function classifyTimeout(detail: string): Classification {
  return { outcome: 'timeout', code: 'UPSTREAM_TIMEOUT', detail };
}

/** The connect timer fired before the TCP (and TLS) connection was up. */
export function classifyConnectTimeout(detail: string): Classification {
  return { outcome: 'connect_failure', code: 'UPSTREAM_CONNECT_FAILED', detail };
}
