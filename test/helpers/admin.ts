/**
 * An admin refusal's body (SPEC §5, §19.1): the problem with no route and
 * nothing of what was asked; every admin answer says nosniff.
 */
import { expect } from 'vitest';
import type { TestResponse } from './proxy.js';

export function expectProblemShape(res: TestResponse, code: string, status: number): void {
  expect(res.status, res.text).toBe(status);
  expect(res.headers['content-type']).toBe('application/problem+json');
  expect(res.headers['x-content-type-options']).toBe('nosniff');
  const body = res.json();
  expect(body).toMatchObject({
    code,
    status,
    route: null,
    upstream: null,
    attempts: 0,
    responsibility: 'client',
    retryable: false,
  });
  expect(typeof body.hint).toBe('string');
}
