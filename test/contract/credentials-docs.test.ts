/**
 * docs/credentials.md: its four examples are valid configs that do what the
 * page says, each run against providers of the test's own: the Kubernetes
 * Secret file's bearer, an OAuth2 client credentials grant, a Bedrock call
 * signed with SigV4 (checked by @smithy/signature-v4 on the provider's
 * side), and a Stripe POST given an idempotency key and retried with it.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Hash } from '@smithy/hash-node';
import { SignatureV4 } from '@smithy/signature-v4';
import { afterAll, describe, expect, it } from 'vitest';
import { formatProblem, parseConfig } from '../../src/config/index.js';
import { startFaultUpstream, type FaultUpstream } from '../fixtures/fault-upstream.js';
import { request, startProxy, type TestProxy } from '../helpers/proxy.js';

const page = (await import('node:fs')).readFileSync('docs/credentials.md', 'utf8');
const examples = [...page.matchAll(/```yaml\n([\s\S]*?)```/g)].map((match) => match[1]!);

/** The page's secret files, under a folder of the test's own. */
const secrets = mkdtempSync(path.join(tmpdir(), 'bw-credentials-docs-'));
const SECRET_FILES: Record<string, string> = {
  'openai/api-key': 'sk-openai-0123456789abcdef',
  'billing/client-secret': 'billing-client-secret-0123',
  'aws/secret-access-key': 'aws-secret-key-0123456789abcdef',
  'stripe/secret-key': 'sk_test_0123456789abcdef',
};
for (const [file, value] of Object.entries(SECRET_FILES)) {
  mkdirSync(path.join(secrets, path.dirname(file)), { recursive: true });
  writeFileSync(path.join(secrets, file), `${value}\n`);
}
const ENV = { AWS_ACCESS_KEY_ID: 'AKIDDOCS', AWS_SESSION_TOKEN: 'session-token-0123456789' };
const local = (example: string, url: string, replacements: Record<string, string> = {}) => {
  let text = example.replaceAll('/var/run/secrets/', `${secrets}/`).replace(/url: https:\/\/\S+/, `url: ${url}`);
  for (const [from, to] of Object.entries(replacements)) text = text.replace(from, to);
  return text;
};

const running: { proxy?: TestProxy; upstream?: FaultUpstream; server?: http.Server }[] = [];
afterAll(async () => {
  for (const { proxy, upstream, server } of running) {
    await proxy?.close();
    await upstream?.close();
    if (server) await new Promise((resolve) => server.close(resolve));
  }
});

async function serve(yaml: string, respond: Parameters<typeof startFaultUpstream>[0] = () => ({ kind: 'echo' })) {
  const upstream = await startFaultUpstream(respond);
  const proxy = await startProxy(yaml.replace('__UPSTREAM__', upstream.url), { env: ENV });
  running.push({ proxy, upstream });
  return { proxy, upstream };
}

describe('docs/credentials.md', () => {
  it('has four examples, each valid, with the credentials the page describes', () => {
    expect(examples).toHaveLength(4);
    const types = examples.map((example) => {
      const result = parseConfig(local(example, 'http://127.0.0.1:1'), 'docs/credentials.md', { env: ENV });
      if (!result.ok) throw new Error(result.problems.map(formatProblem).join('\n'));
      return Object.values(result.loaded.config.upstreams).map((upstream) => upstream.credentials?.type);
    });
    expect(types).toEqual([['bearer'], ['oauth2'], ['aws-sigv4'], ['bearer']]);
  });

  it('Kubernetes: the key from the Secret file reaches OpenAI; the app sends none', async () => {
    const { proxy, upstream } = await serve(local(examples[0]!, '__UPSTREAM__'));
    const res = await request(`${proxy.url}/openai/v1/models`, { headers: { authorization: 'Bearer from-the-app' } });
    expect(res.status).toBe(200);
    expect(upstream.requests[0]!.headers.authorization).toBe('Bearer sk-openai-0123456789abcdef');
  });

  it('OAuth2: one client credentials grant with the scope, its token on the request', async () => {
    const grants: { authorization?: string; body: string }[] = [];
    const server = http.createServer((req, res) => {
      let body = '';
      req.on('data', (chunk: Buffer) => (body += chunk.toString()));
      req.on('end', () => {
        grants.push({ authorization: req.headers.authorization, body });
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ access_token: 'billing-token-0123456789', token_type: 'Bearer', expires_in: 300 }));
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    running.push({ server });
    const tokenUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/oauth2/token`;
    const yaml = local(examples[1]!, '__UPSTREAM__', { 'https://auth.example.com/oauth2/token': tokenUrl });
    const { proxy, upstream } = await serve(yaml);
    await Promise.all([1, 2, 3].map((n) => request(`${proxy.url}/billing/invoices/${n}`)));
    expect(grants).toHaveLength(1);
    const form = new URLSearchParams(grants[0]!.body);
    expect(form.get('grant_type')).toBe('client_credentials');
    expect(form.get('scope')).toBe('invoices:read invoices:write');
    const [id, secret] = Buffer.from(grants[0]!.authorization!.slice(6), 'base64').toString().split(':');
    expect([decodeURIComponent(id!), decodeURIComponent(secret!)]).toEqual([
      'breakwater-checkout',
      'billing-client-secret-0123',
    ]);
    expect(upstream.requests.map((r) => r.headers.authorization)).toEqual(
      Array(3).fill('Bearer billing-token-0123456789'),
    );
  });

  it('Bedrock: the invoke is signed for bedrock in us-east-1, as AWS would check it', async () => {
    const { proxy, upstream } = await serve(local(examples[2]!, '__UPSTREAM__'));
    const body = JSON.stringify({ anthropic_version: 'bedrock-2023-05-31', max_tokens: 16, messages: [] });
    const model = 'anthropic.claude-3-5-sonnet-20240620-v1:0';
    const res = await request(`${proxy.url}/bedrock/model/${model}/invoke`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body,
    });
    expect(res.status).toBe(200);
    const received = upstream.requests[0]!;
    const headers = received.headers as Record<string, string>;
    expect(headers.authorization).toMatch(
      /^AWS4-HMAC-SHA256 Credential=AKIDDOCS\/\d{8}\/us-east-1\/bedrock\/aws4_request, /,
    );
    expect(headers['x-amz-security-token']).toBe('session-token-0123456789');
    expect(headers['x-amz-content-sha256']).toBe(createHash('sha256').update(body).digest('hex'));
    const names = /SignedHeaders=([^,]+)/.exec(headers.authorization!)![1]!.split(';');
    const date = headers['x-amz-date']!;
    const signed = await new SignatureV4({
      credentials: {
        accessKeyId: 'AKIDDOCS',
        secretAccessKey: SECRET_FILES['aws/secret-access-key']!,
        sessionToken: 'session-token-0123456789',
      },
      region: 'us-east-1',
      service: 'bedrock',
      sha256: Hash.bind(null, 'sha256'),
    }).sign(
      {
        method: 'POST',
        protocol: 'http:',
        hostname: headers.host!,
        path: decodeURIComponent(received.url),
        headers: Object.fromEntries(names.map((name) => [name, headers[name]!])),
        body: received.body,
      },
      { signingDate: new Date(date.replace(/^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/, '$1-$2-$3T$4:$5:$6Z')) },
    );
    expect(headers.authorization).toBe(signed.headers.authorization);
  });

  it('Stripe: a POST without a key gets one, is retried with the same after a 503, and carries the secret key', async () => {
    const { proxy, upstream } = await serve(local(examples[3]!, '__UPSTREAM__'), (n) =>
      n === 1 ? { kind: 'respond', status: 503 } : { kind: 'echo' },
    );
    const res = await request(`${proxy.url}/stripe/v1/charges`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: 'amount=2000&currency=eur',
    });
    expect(res.status).toBe(200);
    expect(res.headers['x-breakwater-attempts']).toBe('2');
    const keys = upstream.requests.map((r) => r.headers['idempotency-key']);
    expect(keys).toHaveLength(2);
    expect(keys[1]).toBe(keys[0]);
    expect(upstream.requests.every((r) => r.headers.authorization === 'Bearer sk_test_0123456789abcdef')).toBe(true);
  });
});
