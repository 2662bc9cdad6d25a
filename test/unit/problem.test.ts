import { describe, expect, it } from 'vitest';
import { BreakwaterError } from '../../src/errors/breakwater-error.js';
import { typeUrn } from '../../src/errors/catalog.js';
import { renderProblem } from '../../src/errors/problem.js';

const context = {
  instance: '/stripe/v1/charges',
  route: 'stripe',
  upstream: 'stripe',
  target: null,
  attempts: 0,
  requestId: 'req-1',
};

describe('renderProblem', () => {
  it("renders SPEC §5's example body", () => {
    const error = new BreakwaterError(
      'CIRCUIT_OPEN',
      "Upstream 'stripe' failed 12 of 20 recent calls; calls are refused for 24 s.",
      { retryAfterSeconds: 24 },
    );
    const rendered = renderProblem(error, context);
    expect(rendered.status).toBe(503);
    expect(rendered.headers).toMatchObject({
      'content-type': 'application/problem+json',
      'x-breakwater-error': 'CIRCUIT_OPEN',
      'retry-after': '24',
      'x-request-id': 'req-1',
    });
    expect(JSON.parse(rendered.body)).toEqual({
      type: 'urn:breakwater:error:circuit-open',
      title: 'Circuit open',
      status: 503,
      detail: "Upstream 'stripe' failed 12 of 20 recent calls; calls are refused for 24 s.",
      instance: '/stripe/v1/charges',
      code: 'CIRCUIT_OPEN',
      source: 'proxy',
      responsibility: 'upstream',
      retryable: true,
      retryAfterSeconds: 24,
      hint: 'The provider is failing; wait and retry with backoff, check its status page.',
      route: 'stripe',
      upstream: 'stripe',
      // SPEC §8.1: the target of the last attempt, null before any.
      target: null,
      attempts: 0,
      requestId: 'req-1',
    });
    expect(Number(rendered.headers['content-length'])).toBe(Buffer.byteLength(rendered.body));
  });

  it('leaves out retryAfterSeconds and Retry-After when no delay is known', () => {
    const rendered = renderProblem(new BreakwaterError('UPSTREAM_RESET', 'reset'), context);
    expect(rendered.headers['retry-after']).toBeUndefined();
    expect(JSON.parse(rendered.body)).not.toHaveProperty('retryAfterSeconds');
  });

  it('renders plain text for errors.normalize: off', () => {
    const rendered = renderProblem(new BreakwaterError('NO_ROUTE', 'No route matches GET /x.'), context, true);
    expect(rendered.headers['content-type']).toBe('text/plain; charset=utf-8');
    expect(rendered.headers['x-breakwater-error']).toBe('NO_ROUTE');
    expect(rendered.body).toBe('No route: No route matches GET /x.\n');
  });

  it('derives the type URN from the code', () => {
    expect(typeUrn('UPSTREAM_CONNECT_FAILED')).toBe('urn:breakwater:error:upstream-connect-failed');
  });
});
