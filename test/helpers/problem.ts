/**
 * Asserts an error response against SPEC §5, field by field. The expected
 * status, retryability and responsibility are written out here from the
 * SPEC's table, not read from the code under test.
 */
import { expect } from 'vitest';
import type { TestResponse } from './proxy.js';

const SPEC_TABLE: Record<string, { status: number; retryable: boolean; responsibility: string }> = {
  NO_ROUTE: { status: 404, retryable: false, responsibility: 'client' },
  HOST_NOT_ALLOWED: { status: 403, retryable: false, responsibility: 'client' },
  BAD_REQUEST: { status: 400, retryable: false, responsibility: 'client' },
  MISDIRECTED_REQUEST: { status: 421, retryable: false, responsibility: 'client' },
  CROSS_ORIGIN_REFUSED: { status: 403, retryable: false, responsibility: 'client' },
  REQUEST_BODY_TIMEOUT: { status: 408, retryable: true, responsibility: 'client' },
  ADMIN_FORBIDDEN: { status: 403, retryable: false, responsibility: 'client' },
  ADMIN_UNAUTHORIZED: { status: 401, retryable: false, responsibility: 'client' },
  HEADERS_TOO_LARGE: { status: 431, retryable: false, responsibility: 'client' },
  PAYLOAD_TOO_LARGE: { status: 413, retryable: false, responsibility: 'client' },
  RATE_LIMITED: { status: 429, retryable: true, responsibility: 'client' },
  CIRCUIT_OPEN: { status: 503, retryable: true, responsibility: 'upstream' },
  UPSTREAM_TIMEOUT: { status: 504, retryable: true, responsibility: 'upstream' },
  UPSTREAM_CONNECT_FAILED: { status: 502, retryable: true, responsibility: 'upstream' },
  UPSTREAM_RESET: { status: 502, retryable: true, responsibility: 'upstream' },
  UPSTREAM_TLS_FAILED: { status: 502, retryable: false, responsibility: 'proxy' },
  UPSTREAM_PROTOCOL_ERROR: { status: 502, retryable: false, responsibility: 'upstream' },
  PROXY_DRAINING: { status: 503, retryable: true, responsibility: 'proxy' },
  INTERNAL_ERROR: { status: 500, retryable: true, responsibility: 'proxy' },
};

export interface ProblemExpectation {
  readonly instance?: string;
  readonly route: string | null;
  readonly upstream: string | null;
  readonly attempts: number;
  readonly detail?: RegExp;
  /** Overrides the code's `retryable` (a request that can never fit its quota, SPEC §15). */
  readonly retryable?: boolean;
}

export function expectProblem(
  response: TestResponse,
  code: string,
  expected: ProblemExpectation,
): Record<string, unknown> {
  const spec = SPEC_TABLE[code];
  if (!spec) throw new Error(`unknown code ${code}`);
  expect(response.status, response.text).toBe(spec.status);
  expect(response.headers['content-type']).toBe('application/problem+json');
  expect(response.headers['x-breakwater-error']).toBe(code);
  const body = response.json();
  expect(body.type).toBe(`urn:breakwater:error:${code.toLowerCase().replace(/_/g, '-')}`);
  expect(body.code).toBe(code);
  expect(body.status).toBe(spec.status);
  expect(body.source).toBe('proxy');
  expect(body.responsibility).toBe(spec.responsibility);
  expect(body.retryable).toBe(expected.retryable ?? spec.retryable);
  expect(typeof body.title).toBe('string');
  expect((body.title as string).length).toBeGreaterThan(3);
  expect(typeof body.hint).toBe('string');
  expect((body.hint as string).length).toBeGreaterThan(20);
  expect(typeof body.detail).toBe('string');
  if (expected.detail) expect(body.detail).toMatch(expected.detail);
  if (expected.instance !== undefined) expect(body.instance).toBe(expected.instance);
  expect(body.route).toBe(expected.route);
  expect(body.upstream).toBe(expected.upstream);
  expect(body.attempts).toBe(expected.attempts);
  expect(body.requestId).toBe(response.headers['x-request-id']);
  expect(typeof body.requestId).toBe('string');
  // Never a stack trace or an internal error message.
  expect(response.text).not.toMatch(/\n\s+at |Error: |node:internal|\.ts:\d+|\.js:\d+/);
  return body;
}
