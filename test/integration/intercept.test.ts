/**
 * TLS interception (SPEC §3 `forwardProxy.connect.mode: intercept`) with
 * real clients: curl, python3-requests and undici reach an HTTPS upstream
 * (its own test CA) through CONNECT and get policies (a 503-then-200 is
 * retried) once they trust Breakwater's CA, and fail with their certificate
 * error when they do not. Hosts outside `intercept.hosts` are tunnelled
 * (the client sees the upstream's own certificate); the CA's name
 * constraints hold in OpenSSL, Python and Node; the CONNECT host is the
 * identity (another SNI or Host gets 421); an h2-only client is tunnelled,
 * never left hanging; 1,000 requests over 50 hosts mint 50 leaves.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net, { type AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ProxyAgent, request as undiciRequest } from 'undici';
import { createCa, createLeafIssuer, type CaFiles } from '../../src/tls/certificates.js';
import { metricValue, startProxy, type TestProxy } from '../helpers/proxy.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'bw-intercept-'));
let ca: CaFiles; // Breakwater's interception CA (constrained to *.bw.test)
let upstreamCa: CaFiles; // the upstream's own CA
let upstream: https.Server;
let upstreamPort: number;
let proxy: TestProxy;
/** Requests the upstream saw, per path. */
const seen = new Map<string, number>();
/** WebSocket upgrades the upstream accepted. */
const upgrades: { host: string; proto: string; url: string }[] = [];
const files = {
  ca: path.join(dir, 'ca.crt'),
  key: path.join(dir, 'ca.key'),
  upstreamCa: path.join(dir, 'upstream-ca.crt'),
};

/** Every *.bw.test name resolves to 127.0.0.1 inside Breakwater (tests never leave loopback). */
const lookup = async (hostname: string) =>
  hostname.endsWith('.bw.test') || hostname === 'localhost' ? [{ address: '127.0.0.1', family: 4 }] : [];

beforeAll(async () => {
  ca = await createCa(['*.bw.test']);
  writeFileSync(files.ca, ca.certPem);
  writeFileSync(files.key, ca.keyPem, { mode: 0o600 });
  upstreamCa = await createCa([], { name: 'Upstream test CA' });
  writeFileSync(files.upstreamCa, upstreamCa.certPem);
  // The upstream presents a certificate from its own CA for whatever name the client asks (SNI).
  const issuer = await createLeafIssuer(upstreamCa);
  const contexts = new Map<string, Promise<tls.SecureContext>>();
  const contextFor = (name: string) => {
    if (!contexts.has(name))
      contexts.set(
        name,
        issuer
          .issue(name)
          .then(({ certChainPem }) => tls.createSecureContext({ key: issuer.keyPem, cert: certChainPem })),
      );
    return contexts.get(name)!;
  };
  upstream = https.createServer(
    {
      SNICallback: (name, callback) => contextFor(name).then((context) => callback(null, context), callback),
      key: issuer.keyPem,
      cert: (await issuer.issue('localhost')).certChainPem,
    },
    (req, res) => {
      const path = (req.url ?? '').split('?')[0]!;
      const n = (seen.get(path) ?? 0) + 1;
      seen.set(path, n);
      // /flaky/*: 503 first, then 200.
      const status = path.startsWith('/flaky/') && n === 1 ? 503 : 200;
      res.writeHead(status, { 'content-type': 'text/plain' });
      res.end(`${status} ${req.headers.host} ${path}`);
    },
  );
  upstream.on('upgrade', (req: http.IncomingMessage, socket: import('node:stream').Duplex) => {
    upgrades.push({
      host: String(req.headers.host),
      proto: String(req.headers['x-forwarded-proto']),
      url: req.url ?? '',
    });
    const accept = createHash('sha1')
      .update(`${req.headers['sec-websocket-key']}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`)
      .digest('base64');
    socket.write(
      `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`,
    );
    socket.on('data', (chunk: Buffer) => socket.write(chunk)); // echo
    socket.on('error', () => {});
  });
  await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
  upstreamPort = (upstream.address() as AddressInfo).port;
  proxy = await startProxy(
    `version: 1
defaults: { retry: { maxRetries: 2, backoff: { base: 10ms, max: 20ms } } }
upstreams: {}
routes:
  - { name: egress, match: { host: "*.bw.test" } }
  - { name: local, match: { host: localhost } }
forwardProxy:
  enabled: true
  allowHosts: ["*.bw.test", localhost]
  allowPorts: [${upstreamPort}]
  denyPrivateNetworks: false
  connect: { mode: intercept }
  intercept:
    caCert: ${files.ca}
    caKey: ${files.key}
    hosts: ["*.bw.test"]
    upstreamCa: ${files.upstreamCa}
`,
    { lookup },
  );
}, 30_000);

afterAll(async () => {
  await proxy?.close();
  upstream?.closeAllConnections();
  await new Promise((resolve) => upstream?.close(resolve));
});

function run(
  command: string,
  args: string[],
  env: NodeJS.ProcessEnv = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(command, args, { env: { PATH: process.env.PATH, ...env }, timeout: 20_000 }, (error, stdout, stderr) =>
      resolve({ code: error ? Number((error as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

const intercepts = (result: string) => metricValue(proxy.metrics, 'breakwater_tls_intercept_total', { result });

/** Opens a CONNECT tunnel through the proxy and starts TLS on it; resolves with the TLS socket once secure (or its error). */
function connectTls(authority: string, options: tls.ConnectionOptions): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: '127.0.0.1',
      port: Number(new URL(proxy.url).port),
      method: 'CONNECT',
      path: authority,
    });
    req.once('connect', (res, socket) => {
      if (res.statusCode !== 200) return reject(new Error(`CONNECT answered ${res.statusCode}`));
      const secure = tls.connect({ socket, ...options }, () => resolve(secure));
      secure.once('error', reject);
      secure.setTimeout(10_000, () => secure.destroy(new Error('TLS over the tunnel hung')));
    });
    req.once('error', reject);
    req.end();
  });
}

/** Sends one HTTP/1.1 request on a TLS socket and reads the whole answer. */
function ask(socket: tls.TLSSocket, host: string, path: string): Promise<string> {
  return new Promise((resolve) => {
    let answer = '';
    socket.on('data', (chunk: Buffer) => {
      answer += chunk.toString();
      if (/\r\n\r\n/.test(answer) && /content-length: (\d+)/i.test(answer)) {
        const length = Number(/content-length: (\d+)/i.exec(answer)![1]);
        if (Buffer.byteLength(answer.split('\r\n\r\n').slice(1).join('\r\n\r\n')) >= length) resolve(answer);
      }
    });
    socket.once('close', () => resolve(answer));
    socket.write(`GET ${path} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);
  });
}

describe('clients that trust the CA get policies inside HTTPS', () => {
  it('curl --cacert: 200, a 503-then-200 retried', async () => {
    const result = await run('curl', [
      '-sS',
      '-i',
      '--cacert',
      files.ca,
      '-x',
      proxy.url,
      `https://api.bw.test:${upstreamPort}/flaky/curl`,
    ]);
    expect(result.stderr).toBe('');
    expect(result.stdout).toMatch(/^HTTP\/1\.1 200 Connection Established/);
    expect(result.stdout).toMatch(/HTTP\/1\.1 200 OK/);
    expect(result.stdout).toMatch(/x-breakwater-attempts: 2/i);
    expect(result.stdout).toContain(`200 api.bw.test:${upstreamPort} /flaky/curl`);
    expect(seen.get('/flaky/curl')).toBe(2);
  });

  it('python3-requests with REQUESTS_CA_BUNDLE: 200, retried', async () => {
    const script = `import requests\nr = requests.get("https://api.bw.test:${upstreamPort}/flaky/python")\nprint(r.status_code, r.headers.get("x-breakwater-attempts"), r.text)`;
    const result = await run('/usr/bin/python3', ['-c', script], {
      HTTPS_PROXY: proxy.url,
      REQUESTS_CA_BUNDLE: files.ca,
      NO_PROXY: '',
    });
    expect(result.stderr).toBe('');
    expect(result.stdout.trim()).toBe(`200 2 200 api.bw.test:${upstreamPort} /flaky/python`);
    expect(seen.get('/flaky/python')).toBe(2);
  });

  it('undici with NODE_EXTRA_CA_CERTS: 200, retried', async () => {
    const script = `
      const { ProxyAgent, request } = require('undici');
      request('https://api.bw.test:${upstreamPort}/flaky/undici', { dispatcher: new ProxyAgent(process.env.HTTPS_PROXY) })
        .then(async (r) => { console.log(r.statusCode, r.headers['x-breakwater-attempts'], await r.body.text()); process.exit(0); })
        .catch((e) => { console.log('error', e.cause?.code ?? e.code ?? e.message); process.exit(0); });`;
    const result = await run(process.execPath, ['-e', script], {
      HTTPS_PROXY: proxy.url,
      NODE_EXTRA_CA_CERTS: files.ca,
      NODE_PATH: path.resolve('node_modules'),
    });
    expect(result.stdout.trim()).toBe(`200 2 200 api.bw.test:${upstreamPort} /flaky/undici`);
    expect(seen.get('/flaky/undici')).toBe(2);
  });

  it('without trusting the CA, each client fails with its certificate error (counted as refused)', async () => {
    const before = await intercepts('refused');
    const curl = await run('curl', ['-sS', '-x', proxy.url, `https://api.bw.test:${upstreamPort}/untrusted`]);
    expect(curl.code).toBe(60);
    expect(curl.stderr).toMatch(/SSL certificate problem/);
    const python = await run(
      '/usr/bin/python3',
      [
        '-c',
        `import requests\ntry:\n  requests.get("https://api.bw.test:${upstreamPort}/untrusted")\nexcept requests.exceptions.SSLError as e:\n  print("SSLError", "CERTIFICATE_VERIFY_FAILED" in str(e))`,
      ],
      {
        HTTPS_PROXY: proxy.url,
        NO_PROXY: '',
      },
    );
    expect(python.stdout.trim()).toBe('SSLError True');
    const node = await run(
      process.execPath,
      [
        '-e',
        `require('undici').request('https://api.bw.test:${upstreamPort}/untrusted', { dispatcher: new (require('undici').ProxyAgent)(process.env.HTTPS_PROXY) }).then(() => console.log('ok'), (e) => console.log(e.cause?.code ?? e.code))`,
      ],
      { HTTPS_PROXY: proxy.url, NODE_PATH: path.resolve('node_modules') },
    );
    expect(node.stdout.trim()).toMatch(
      /^(SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT_LOCALLY)$/,
    );
    expect(seen.get('/untrusted')).toBeUndefined();
    await expect.poll(() => intercepts('refused')).toBe(before + 3);
    expect(
      proxy.logs().some((line) => /client refused the intercepted TLS for api\.bw\.test/.test(String(line.msg))),
    ).toBe(true);
  });
});

describe('the re-originated TLS', () => {
  it('verifies the real upstream: without its CA in upstreamCa, 502 UPSTREAM_TLS_FAILED and nothing sent', async () => {
    const strict = await startProxy(
      `version: 1
upstreams: {}
routes:
  - { name: egress, match: { host: "*.bw.test" } }
forwardProxy:
  enabled: true
  allowHosts: ["*.bw.test"]
  allowPorts: [${upstreamPort}]
  denyPrivateNetworks: false
  connect: { mode: intercept }
  intercept: { caCert: ${files.ca}, caKey: ${files.key}, hosts: ["*.bw.test"] }
`,
      { lookup },
    );
    try {
      const result = await run('curl', [
        '-sS',
        '-i',
        '--cacert',
        files.ca,
        '-x',
        strict.url,
        `https://api.bw.test:${upstreamPort}/unverified`,
      ]);
      expect(result.stdout).toMatch(/HTTP\/1\.1 502/);
      expect(result.stdout).toContain('"code":"UPSTREAM_TLS_FAILED"');
      expect(seen.get('/unverified')).toBeUndefined();
    } finally {
      await strict.close();
    }
  });
});

describe('what is not intercepted', () => {
  it("tunnels a host outside intercept.hosts: the client sees the upstream's own certificate", async () => {
    const before = await intercepts('tunnelled');
    const socket = await connectTls(`localhost:${upstreamPort}`, { servername: 'localhost', ca: upstreamCa.certPem });
    expect(socket.getPeerCertificate().issuer.CN).toBe('Upstream test CA');
    const answer = await ask(socket, `localhost:${upstreamPort}`, '/flaky/tunnel');
    expect(answer).toMatch(/^HTTP\/1\.1 503/); // untouched: no retry inside a tunnel
    expect(await intercepts('tunnelled')).toBe(before + 1);
  });

  it('an intercepted host presents our leaf, from our CA', async () => {
    const socket = await connectTls(`leaf.bw.test:${upstreamPort}`, { servername: 'leaf.bw.test', ca: ca.certPem });
    const cert = socket.getPeerCertificate();
    expect(cert.issuer.CN).toBe('Breakwater interception CA');
    expect(cert.subjectaltname).toBe('DNS:leaf.bw.test');
    expect(socket.alpnProtocol).toBe(false);
    socket.destroy();
  });

  it('tunnels an h2-only client to the upstream (no hang), counted and logged', async () => {
    const before = await intercepts('tunnelled');
    // The tunnel reaches the real upstream, an HTTP/1.1 server: it answers
    // the h2-only offer with its own TLS alert, at once (no hang).
    const outcome = await connectTls(`h2.bw.test:${upstreamPort}`, {
      servername: 'h2.bw.test',
      ca: upstreamCa.certPem,
      ALPNProtocols: ['h2'],
    }).then(
      (socket) => {
        socket.destroy();
        return 'connected';
      },
      (error: Error) => error.message,
    );
    expect(outcome).toMatch(/no application protocol/);
    expect(await intercepts('tunnelled')).toBe(before + 1);
    expect(proxy.logs().some((line) => /client offered only h2 for h2\.bw\.test/.test(String(line.msg)))).toBe(true);
  });
});

describe('the CONNECT host is the identity', () => {
  it('answers 421 when the TLS server name names another host', async () => {
    const socket = await connectTls(`api.bw.test:${upstreamPort}`, {
      servername: 'other.bw.test',
      ca: ca.certPem,
      checkServerIdentity: () => undefined,
    });
    const answer = await ask(socket, `api.bw.test:${upstreamPort}`, '/misdirected-sni');
    expect(answer).toMatch(/^HTTP\/1\.1 421/);
    expect(answer).toContain('"code":"MISDIRECTED_REQUEST"');
    expect(answer).toContain('other.bw.test');
    expect(seen.get('/misdirected-sni')).toBeUndefined();
  });

  it('answers 421 when the Host header names another host', async () => {
    const socket = await connectTls(`api.bw.test:${upstreamPort}`, { servername: 'api.bw.test', ca: ca.certPem });
    const answer = await ask(socket, 'other.bw.test', '/misdirected-host');
    expect(answer).toMatch(/^HTTP\/1\.1 421/);
    expect(answer).toContain('"code":"MISDIRECTED_REQUEST"');
    expect(seen.get('/misdirected-host')).toBeUndefined();
  });
});

describe('WebSocket upgrades inside interception', () => {
  it('are proxied to the CONNECT host over verified TLS, bytes echoed both ways', async () => {
    const socket = await connectTls(`api.bw.test:${upstreamPort}`, { servername: 'api.bw.test', ca: ca.certPem });
    const received = await new Promise<string>((resolve) => {
      let text = '';
      socket.on('data', (chunk: Buffer) => {
        text += chunk.toString('latin1');
        if (text.includes('\r\n\r\n') && !text.includes('ping-through')) socket.write('ping-through');
        if (text.includes('ping-through')) {
          resolve(text);
          socket.destroy();
        }
      });
      socket.once('close', () => resolve(text));
      socket.write(
        `GET /ws HTTP/1.1\r\nHost: api.bw.test:${upstreamPort}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`,
      );
    });
    expect(received).toMatch(/^HTTP\/1\.1 101/);
    expect(received).toMatch(/sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK\+xOo=/i);
    expect(received).toContain('ping-through');
    expect(upgrades).toEqual([{ host: `api.bw.test:${upstreamPort}`, proto: 'https', url: '/ws' }]);
  });

  it('in a CONNECT to another host than the Host header: 421, never forwarded', async () => {
    const socket = await connectTls(`api.bw.test:${upstreamPort}`, { servername: 'api.bw.test', ca: ca.certPem });
    const answer = await new Promise<string>((resolve) => {
      let text = '';
      socket.on('data', (chunk: Buffer) => (text += chunk.toString()));
      socket.once('close', () => resolve(text));
      socket.write(
        `GET /ws2 HTTP/1.1\r\nHost: other.bw.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`,
      );
    });
    expect(answer).toMatch(/^HTTP\/1\.1 421/);
    expect(answer).toContain('"code":"MISDIRECTED_REQUEST"');
    expect(upgrades.map((u) => u.url)).not.toContain('/ws2');
  });
});

describe('the Host header, parsed strictly', () => {
  it.each([
    ['[api.bw.test]evil.bw.test', 421],
    ['api.bw.test:1', 421],
    ['api.bw.test@evil.bw.test', 421],
    ['API.BW.TEST.', 200],
  ])('Host %s -> %i', async (host, status) => {
    const socket = await connectTls(`api.bw.test:${upstreamPort}`, { servername: 'api.bw.test', ca: ca.certPem });
    const answer = await ask(socket, host.includes(':') ? host : `${host}:${upstreamPort}`, '/host-check');
    expect(answer.slice(0, 12)).toBe(`HTTP/1.1 ${status}`);
  });
});

/** A real client's ClientHello (the first bytes it sends), captured from a local listener. */
function captureHello(options: tls.ConnectionOptions): Promise<Buffer> {
  return new Promise((resolve) => {
    const server = net.createServer((socket) =>
      socket.once('data', (chunk: Buffer) => {
        resolve(chunk);
        socket.destroy();
        server.close();
      }),
    );
    server.listen(0, '127.0.0.1', () => {
      tls
        .connect({ host: '127.0.0.1', port: (server.address() as AddressInfo).port, ...options })
        .on('error', () => {});
    });
  });
}

describe('clients that misbehave at the TLS layer', () => {
  /** Raw CONNECT; `first` is sent in the same write as the CONNECT head. Resolves with every byte received until the proxy closes (or `timeoutMs`). */
  function rawConnect(
    authority: string,
    first: Buffer,
    timeoutMs: number,
  ): Promise<{ bytes: Buffer; closedAfterMs: number | undefined }> {
    return new Promise((resolve) => {
      const started = Date.now();
      const chunks: Buffer[] = [];
      const socket = net.connect(Number(new URL(proxy.url).port), '127.0.0.1', () =>
        socket.write(
          Buffer.concat([Buffer.from(`CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n\r\n`), first]),
        ),
      );
      socket.on('data', (chunk: Buffer) => chunks.push(chunk));
      socket.on('error', () => {});
      const timer = setTimeout(() => {
        socket.destroy();
        resolve({ bytes: Buffer.concat(chunks), closedAfterMs: undefined });
      }, timeoutMs);
      socket.once('close', () => {
        clearTimeout(timer);
        resolve({ bytes: Buffer.concat(chunks), closedAfterMs: Date.now() - started });
      });
    });
  }

  it('answers 200 once when an h2-only ClientHello comes with the CONNECT', async () => {
    const hello = await captureHello({ servername: 'h2.bw.test', ALPNProtocols: ['h2'] });
    const { bytes } = await rawConnect(`h2.bw.test:${upstreamPort}`, hello, 3000);
    expect(bytes.toString('latin1').split('200 Connection Established')).toHaveLength(2);
  });

  it('closes a connection whose client sends its ClientHello and then nothing (counted refused)', async () => {
    const before = await intercepts('refused');
    const hello = await captureHello({ servername: 'silent.bw.test' });
    const { closedAfterMs } = await rawConnect(`silent.bw.test:${upstreamPort}`, hello, 30_000);
    expect(closedAfterMs).toBeDefined();
    expect(closedAfterMs!).toBeGreaterThan(5000); // the 10 s handshake timeout, not at once
    expect(await intercepts('refused')).toBe(before + 1);
  }, 40_000);

  it('closes a connection whose client never completes its ClientHello', async () => {
    const before = { intercepted: await intercepts('intercepted'), tunnelled: await intercepts('tunnelled') };
    const hello = await captureHello({ servername: 'partial.bw.test' });
    const { bytes, closedAfterMs } = await rawConnect(`partial.bw.test:${upstreamPort}`, hello.subarray(0, 20), 30_000);
    // Told 200, then nothing more (no problem body inside what the client takes for TLS) ...
    expect(bytes.toString('latin1')).toBe('HTTP/1.1 200 Connection Established\r\n\r\n');
    // ... and closed by the 10 s ClientHello timeout: not at once, not left open.
    expect(closedAfterMs).toBeGreaterThan(5000);
    expect(closedAfterMs).toBeLessThan(15_000);
    // Neither intercepted nor tunnelled to the real host.
    expect({ intercepted: await intercepts('intercepted'), tunnelled: await intercepts('tunnelled') }).toEqual(before);
  }, 40_000);
});

describe("the CA's name constraints", () => {
  /** A TLS server presenting a leaf for `name` minted from our (constrained) CA. */
  async function serve(name: string): Promise<{ port: number; leaf: string; close: () => void }> {
    const issuer = await createLeafIssuer(ca);
    const { certChainPem } = await issuer.issue(name);
    const server = tls.createServer({ key: issuer.keyPem, cert: certChainPem }, (socket) => socket.end('hi'));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return {
      port: (server.address() as AddressInfo).port,
      leaf: certChainPem.split(/(?=-----BEGIN CERTIFICATE-----)/)[0]!,
      close: () => server.close(),
    };
  }

  it.each([
    ['evil.example', false],
    ['ok.bw.test', true],
  ])('a leaf for %s: accepted = %s by OpenSSL, Python and Node', async (name, accepted) => {
    const server = await serve(name);
    try {
      const leafFile = path.join(dir, `${name}.pem`);
      writeFileSync(leafFile, server.leaf);
      const openssl = await run('openssl', ['verify', '-CAfile', files.ca, leafFile]);
      if (accepted) expect(openssl.stdout).toContain(': OK');
      else expect(openssl.stderr + openssl.stdout).toMatch(/permitted subtree violation/);

      const python = await run('/usr/bin/python3', [
        '-c',
        `import socket, ssl\nctx = ssl.create_default_context(cafile="${files.ca}")\ntry:\n  s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", ${server.port})), server_hostname="${name}")\n  print("accepted")\nexcept ssl.SSLCertVerificationError as e:\n  print("refused", e.verify_message)`,
      ]);
      if (accepted) expect(python.stdout.trim()).toBe('accepted');
      else expect(python.stdout.trim()).toBe('refused permitted subtree violation');

      const node = await new Promise<string>((resolve) => {
        const socket = tls.connect({ host: '127.0.0.1', port: server.port, servername: name, ca: ca.certPem }, () => {
          resolve('accepted');
          socket.destroy();
        });
        socket.once('error', (error: NodeJS.ErrnoException) => resolve(`refused ${error.message}`));
      });
      if (accepted) expect(node).toBe('accepted');
      else expect(node).toBe('refused permitted subtree violation');
    } finally {
      server.close();
    }
  });
});

describe('leaves', () => {
  it('1,000 requests over 50 hosts mint 50 leaves', async () => {
    const before = await metricValue(proxy.metrics, 'breakwater_tls_certificates_minted_total', {});
    const agent = new ProxyAgent({ uri: proxy.url, requestTls: { ca: ca.certPem }, connections: 4 });
    try {
      const statuses: number[] = [];
      let next = 0;
      await Promise.all(
        Array.from({ length: 16 }, async () => {
          while (next < 1000) {
            const i = next++;
            const res = await undiciRequest(`https://h${i % 50}.mint.bw.test:${upstreamPort}/mint`, {
              dispatcher: agent,
            });
            await res.body.text();
            statuses.push(res.statusCode);
          }
        }),
      );
      expect(statuses).toHaveLength(1000);
      expect(statuses.every((s) => s === 200)).toBe(true);
    } finally {
      await agent.close();
    }
    expect((await metricValue(proxy.metrics, 'breakwater_tls_certificates_minted_total', {})) - before).toBe(50);
  }, 120_000);
});

describe('reload', () => {
  it('keeps the minted leaves while intercept is unchanged, mints again when it changes', async () => {
    const file = path.join(dir, 'reload.yaml');
    const yaml = (hosts: string, extraRoute = '') => `version: 1
upstreams: {}
routes:
  - { name: egress, match: { host: "*.bw.test" } }
${extraRoute}forwardProxy:
  enabled: true
  allowHosts: ["*.bw.test"]
  allowPorts: [${upstreamPort}]
  denyPrivateNetworks: false
  connect: { mode: intercept }
  intercept: { caCert: ${files.ca}, caKey: ${files.key}, hosts: ${hosts}, upstreamCa: ${files.upstreamCa} }
`;
    const reloading = await startProxy(yaml('["*.bw.test"]'), { lookup, file });
    const minted = () => metricValue(reloading.metrics, 'breakwater_tls_certificates_minted_total', {});
    const get = async () =>
      (
        await run('curl', [
          '-sS',
          '-o',
          '/dev/null',
          '-w',
          '%{http_code}',
          '--cacert',
          files.ca,
          '-x',
          reloading.url,
          `https://reload.bw.test:${upstreamPort}/r`,
        ])
      ).stdout;
    try {
      expect(await get()).toBe('200');
      expect(await minted()).toBe(1);
      // Another route, the same intercept section: the leaf is kept.
      writeFileSync(
        file,
        `listen: { host: 127.0.0.1, port: 0 }\nadmin: { host: 127.0.0.1, port: 0 }\n${yaml('["*.bw.test"]', '  - { name: more, match: { host: more.example } }\n')}`,
      );
      expect(await reloading.app.reload('test')).toMatchObject({ result: 'success' });
      expect(await get()).toBe('200');
      expect(await minted()).toBe(1);
      // intercept.hosts changed: a new interceptor, a new leaf.
      writeFileSync(
        file,
        `listen: { host: 127.0.0.1, port: 0 }\nadmin: { host: 127.0.0.1, port: 0 }\n${yaml('["*.bw.test", "x.example"]')}`,
      );
      expect(await reloading.app.reload('test')).toMatchObject({ result: 'success' });
      expect(await get()).toBe('200');
      expect(await minted()).toBe(2);
    } finally {
      await reloading.close();
    }
  });
});

describe('config', () => {
  it('refuses a CA key that others can read', async () => {
    const loose = path.join(dir, 'loose.key');
    writeFileSync(loose, ca.keyPem);
    chmodSync(loose, 0o644);
    const { parseConfig } = await import('../../src/config/load.js');
    const result = parseConfig(
      `version: 1\nroutes: [{ name: r, match: { host: "*.bw.test" } }]\nforwardProxy: { enabled: true, connect: { mode: intercept }, intercept: { caCert: ${files.ca}, caKey: ${loose}, hosts: ["*.bw.test"] } }\n`,
      path.join(dir, 'x.yaml'),
    );
    expect(result.ok).toBe(false);
    expect(JSON.stringify(!result.ok && result.problems)).toMatch(/readable by others \(mode 0644\): run chmod 600/);
  });
});
