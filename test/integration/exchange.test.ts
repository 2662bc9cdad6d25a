/**
 * One exchange per inbound request (src/server/exchange.ts): a refusal that
 * arrives through each entry (a request, a request node's parser refuses, a
 * WebSocket upgrade, a CONNECT) comes back as the same problem body, counts
 * the same metrics and writes the same access-log fields.
 */
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFaultUpstream, type FaultUpstream } from '../fixtures/fault-upstream.js';
import { metricValue, startProxy, type TestProxy } from '../helpers/proxy.js';

let proxy: TestProxy;
let upstream: FaultUpstream;

beforeAll(async () => {
  upstream = await startFaultUpstream(() => ({ kind: 'respond', body: 'ok' }));
  proxy = await startProxy(`version: 1
forwardProxy: { enabled: true, allowHosts: ["allowed.example"], denyPrivateNetworks: false }
upstreams: { u: { url: "${upstream.url}" } }
routes:
  - { name: api, upstream: u, match: { pathPrefix: /api } }
`);
});

afterAll(async () => {
  await proxy.close();
  await upstream.close();
});

/** Sends raw bytes and parses the whole answer (status, headers, JSON body). */
function raw(
  bytes: string,
): Promise<{ status: number; headers: Record<string, string>; body: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(new URL(proxy.url).port), '127.0.0.1', () => socket.write(bytes));
    let answer = '';
    socket.on('data', (chunk) => (answer += chunk.toString('latin1')));
    socket.on('close', () => {
      const [head, ...rest] = answer.split('\r\n\r\n');
      const [statusLine, ...lines] = head!.split('\r\n');
      const headers: Record<string, string> = {};
      for (const line of lines)
        headers[line.slice(0, line.indexOf(':')).toLowerCase()] = line.slice(line.indexOf(':') + 1).trim();
      try {
        resolve({
          status: Number(statusLine!.split(' ')[1]),
          headers,
          body: JSON.parse(rest.join('\r\n\r\n')) as Record<string, unknown>,
        });
      } catch (error) {
        reject(new Error(`not a problem body: ${answer}`, { cause: error }));
      }
    });
    socket.on('error', reject);
    socket.setTimeout(10_000, () => socket.destroy());
  });
}

const ENTRIES = [
  {
    entry: 'request',
    bytes: 'GET /nowhere HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
    code: 'NO_ROUTE',
    status: 404,
    method: 'GET',
    label: 'GET',
    path: '/nowhere',
  },
  {
    entry: 'parser refusal',
    bytes: 'GET /api HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n',
    code: 'BAD_REQUEST',
    status: 400,
    method: '',
    label: 'OTHER',
    path: '',
  },
  {
    entry: 'upgrade',
    bytes:
      'GET /nowhere HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n',
    code: 'NO_ROUTE',
    status: 404,
    method: 'GET',
    label: 'GET',
    path: '/nowhere',
  },
  {
    entry: 'CONNECT',
    bytes: 'CONNECT denied.example:443 HTTP/1.1\r\nHost: denied.example:443\r\n\r\n',
    code: 'HOST_NOT_ALLOWED',
    status: 403,
    method: 'CONNECT',
    label: 'CONNECT',
    path: '',
  },
] as const;

describe('one exchange per inbound request', () => {
  it.each(ENTRIES)(
    'a refused $entry: the same problem body, metrics and access-log fields',
    async ({ bytes, code, status, method, label, path }) => {
      const errorsBefore = await metricValue(proxy.metrics, 'breakwater_errors_total', { route: '', code });
      const requestsBefore = await metricValue(proxy.metrics, 'breakwater_requests_total', {
        route: '',
        method: label,
        code: String(status),
      });
      const linesBefore = proxy.accessLogs().length;

      const answer = await raw(bytes);
      expect(answer.status).toBe(status);
      expect(answer.headers['content-type']).toBe('application/problem+json');
      expect(answer.headers['x-breakwater-error']).toBe(code);
      expect(answer.headers.connection).toBe('close');
      // The same members, whatever the entry (SPEC §5).
      expect(Object.keys(answer.body).sort()).toEqual(
        [
          'attempts',
          'code',
          'detail',
          'hint',
          'instance',
          'requestId',
          'responsibility',
          'retryable',
          'route',
          'source',
          'status',
          'target',
          'title',
          'type',
          'upstream',
        ].sort(),
      );
      expect(answer.body).toMatchObject({
        code,
        status,
        route: null,
        upstream: null,
        target: null,
        attempts: 0,
        source: 'proxy',
      });
      expect(answer.headers['x-request-id']).toBe(answer.body.requestId);

      expect(await metricValue(proxy.metrics, 'breakwater_errors_total', { route: '', code })).toBe(errorsBefore + 1);
      await expect
        .poll(() =>
          metricValue(proxy.metrics, 'breakwater_requests_total', { route: '', method: label, code: String(status) }),
        )
        .toBe(requestsBefore + 1);
      await expect.poll(() => proxy.accessLogs().length).toBe(linesBefore + 1);
      const line = proxy.accessLogs().at(-1)!;
      expect(
        Object.keys(line)
          .filter((key) => !['level', 'time', 'pid', 'hostname', 'msg'].includes(key))
          .sort(),
      ).toEqual(
        // A forward-proxy request (CONNECT) also names its caller (SPEC §19.3): none matched here.
        [
          'requestId',
          'method',
          'host',
          'path',
          'route',
          'upstream',
          'target',
          'status',
          'durationMs',
          'attempts',
          'flags',
          ...(method === 'CONNECT' ? ['caller'] : []),
        ].sort(),
      );
      if (method === 'CONNECT') expect(line.caller).toBeNull();
      expect(line).toMatchObject({
        requestId: answer.body.requestId,
        method,
        path,
        route: '',
        upstream: '',
        target: '',
        status,
        attempts: 0,
      });
      expect(typeof line.durationMs).toBe('number');
      expect(line.flags).toEqual([]); // none of these codes sets a flag
    },
  );
});
