import { describe, expect, it } from 'vitest';
import { classifyError, classifyStatus } from '../../src/upstream/classify.js';

function err(code: string, message = code): Error {
  return Object.assign(new Error(message), { code });
}

describe('classifyStatus', () => {
  it.each([
    [200, 'success'],
    [204, 'success'],
    [302, 'success'],
    [304, 'success'],
    [400, 'http_4xx'],
    [404, 'http_4xx'],
    [429, 'http_429'],
    [500, 'http_5xx'],
    [503, 'http_5xx'],
    [599, 'http_5xx'],
  ])('maps %d to %s', (status, outcome) => {
    expect(classifyStatus(status)).toEqual({ outcome, status });
  });
});

describe('classifyError', () => {
  it.each([
    ['ECONNREFUSED', false, 'connect_failure', 'UPSTREAM_CONNECT_FAILED'],
    ['ENOTFOUND', false, 'connect_failure', 'UPSTREAM_CONNECT_FAILED'],
    ['EAI_AGAIN', false, 'connect_failure', 'UPSTREAM_CONNECT_FAILED'],
    ['EHOSTUNREACH', false, 'connect_failure', 'UPSTREAM_CONNECT_FAILED'],
    ['ENETUNREACH', false, 'connect_failure', 'UPSTREAM_CONNECT_FAILED'],
    ['ETIMEDOUT', false, 'connect_failure', 'UPSTREAM_CONNECT_FAILED'],
    ['ECONNRESET', false, 'connect_failure', 'UPSTREAM_CONNECT_FAILED'],
    ['ECONNRESET', true, 'reset', 'UPSTREAM_RESET'],
    ['EPIPE', true, 'reset', 'UPSTREAM_RESET'],
    ['HPE_INVALID_CONSTANT', true, 'reset', 'UPSTREAM_PROTOCOL_ERROR'],
    ['HPE_INVALID_STATUS', true, 'reset', 'UPSTREAM_PROTOCOL_ERROR'],
    ['DEPTH_ZERO_SELF_SIGNED_CERT', false, 'connect_failure', 'UPSTREAM_TLS_FAILED'],
    ['CERT_HAS_EXPIRED', false, 'connect_failure', 'UPSTREAM_TLS_FAILED'],
    ['ERR_TLS_CERT_ALTNAME_INVALID', false, 'connect_failure', 'UPSTREAM_TLS_FAILED'],
    ['ERR_SSL_WRONG_VERSION_NUMBER', false, 'reset', 'UPSTREAM_PROTOCOL_ERROR'],
    ['ERR_SSL_SSLV3_ALERT_HANDSHAKE_FAILURE', false, 'connect_failure', 'UPSTREAM_TLS_FAILED'],
    // undici's own codes (the attempt path, upstream/forward.ts)
    ['UND_ERR_CONNECT_TIMEOUT', false, 'connect_failure', 'UPSTREAM_CONNECT_FAILED'],
    ['UND_ERR_SOCKET', false, 'connect_failure', 'UPSTREAM_CONNECT_FAILED'],
    ['UND_ERR_SOCKET', true, 'reset', 'UPSTREAM_RESET'],
    ['UND_ERR_HEADERS_OVERFLOW', true, 'reset', 'UPSTREAM_PROTOCOL_ERROR'],
    ['SOMETHING_NEW', true, 'reset', 'UPSTREAM_RESET'],
  ] as const)('maps %s (connected: %s) to %s / %s', (code, connected, outcome, errorCode) => {
    const result = classifyError(err(code), { connected });
    expect(result.outcome).toBe(outcome);
    expect(result.code).toBe(errorCode);
    expect(result.detail).toContain(code);
  });

  it('reads a TLS record sent to a plain server as a protocol mix-up', () => {
    expect(classifyError(err('EPROTO', 'write EPROTO ... wrong version number'), { connected: false }).code).toBe(
      'UPSTREAM_PROTOCOL_ERROR',
    );
  });

  it("reads undici's parser error (no code, its name says it) as a protocol error", () => {
    const parser = Object.assign(new Error('Response does not match the HTTP/1.1 protocol (Expected HTTP/)'), {
      name: 'HTTPParserError',
    });
    expect(classifyError(parser, { connected: true })).toMatchObject({
      outcome: 'reset',
      code: 'UPSTREAM_PROTOCOL_ERROR',
      detail: expect.stringContaining('Expected HTTP/'),
    });
  });

  it('copes with errors that are not Error objects', () => {
    expect(classifyError('boom', { connected: true })).toMatchObject({ outcome: 'reset', code: 'UPSTREAM_RESET' });
    expect(classifyError(null, { connected: false })).toMatchObject({ outcome: 'connect_failure' });
  });
});
