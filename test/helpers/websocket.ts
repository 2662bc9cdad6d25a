/**
 * A WebSocket handshake through the proxy: the 101 and its socket, or the
 * answer that came instead, read whole.
 */
import http from 'node:http';
import type { Socket } from 'node:net';

export interface UpgradeAnswer {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: string;
  /** The tunnel, after a 101. */
  readonly socket?: Socket;
}

export function upgradeThrough(
  proxyUrl: string,
  path: string,
  headers: http.OutgoingHttpHeaders = {},
): Promise<UpgradeAnswer> {
  return new Promise((resolve, reject) => {
    const req = http.request(`${proxyUrl}${path}`, {
      agent: false,
      headers: {
        connection: 'Upgrade',
        upgrade: 'websocket',
        'sec-websocket-version': '13',
        'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==',
        ...headers,
      },
    });
    req.on('upgrade', (res, socket: Socket) =>
      resolve({ socket, status: res.statusCode ?? 0, body: '', headers: res.headers }),
    );
    req.on('response', (res) => {
      let body = '';
      res.on('data', (chunk: Buffer) => (body += chunk.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
    });
    req.on('error', reject);
    req.end();
  });
}
