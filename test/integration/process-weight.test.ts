/**
 * A running Breakwater loads only what its config uses (issue 21): no
 * TypeBox or ajv compiler (the build's standalone validator checks the
 * config), no ioredis without shared limits, no certificate stack without
 * interception, no http-proxy-3 before a WebSocket upgrade, no
 * OpenTelemetry SDK with tracing off, and undici's
 * pool without its index (fetch, WebSocket, cache). A node loader hook in
 * the child records every module it resolves, and the CommonJS cache at
 * exit: the list is what the process loaded.
 */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startReplica, writeTemp } from '../helpers/cli.js';
import { startFaultUpstream, type FaultUpstream } from '../fixtures/fault-upstream.js';
import { request } from '../helpers/proxy.js';

const HOOKS = `
import { appendFileSync } from 'node:fs';
export async function resolve(specifier, context, next) {
  const result = await next(specifier, context);
  appendFileSync(process.env.BW_LOAD_LOG, result.url + '\\n');
  return result;
}`;

const PRELOAD = `
import { register, createRequire } from 'node:module';
import { appendFileSync } from 'node:fs';
register('data:text/javascript,' + encodeURIComponent(${JSON.stringify(HOOKS)}));
const cache = createRequire(import.meta.url).cache;
process.on('exit', () => appendFileSync(process.env.BW_LOAD_LOG, Object.keys(cache).join('\\n') + '\\n'));
`;

describe('what a running process loads', () => {
  let upstream: FaultUpstream;
  let loaded: string[];

  beforeAll(async () => {
    upstream = await startFaultUpstream(() => ({ kind: 'respond', status: 200, body: 'ok' }));
    const log = writeTemp('loaded.log', '');
    const preload = writeTemp('preload.mjs', PRELOAD);
    const config = writeTemp(
      'weight.yaml',
      `version: 1\nlisten: { host: 127.0.0.1, port: 0 }\nadmin: { host: 127.0.0.1, port: 0 }\nlogging: { level: info, accessLog: false }\nupstreams:\n  api: { url: "${upstream.url}" }\nroutes:\n  - { name: api, upstream: api }\n`,
    );
    const replica = await startReplica(config, {
      nodeArgs: ['--import', preload],
      env: { ...process.env, BW_LOAD_LOG: log },
    });
    try {
      const res = await request(`${replica.url}/x`);
      expect(res.status).toBe(200);
      expect(res.text).toBe('ok');
    } finally {
      await replica.stop();
    }
    loaded = readFileSync(log, 'utf8').split('\n').filter(Boolean);
  });

  afterAll(async () => {
    await upstream.close();
  });

  it('records what it loads (the hook works: the CLI and undici’s pool are there)', () => {
    expect(loaded.some((file) => file.endsWith('/dist/cli.js'))).toBe(true);
    expect(loaded.some((file) => file.endsWith('/undici/lib/dispatcher/pool.js'))).toBe(true);
    expect(loaded.some((file) => file.endsWith('/dist/config/validate-file.cjs'))).toBe(true);
  });

  it.each([
    ['TypeBox (the schema is checked by the standalone validator)', /@sinclair\/typebox/],
    ["ajv's compiler", /ajv\/dist\/(core|ajv|compile\/index)\.js/],
    ['the schema module', /dist\/config\/schema\.js/],
    ['ioredis (no shared limits)', /\/ioredis\//],
    ['the certificate stack (no interception)', /@peculiar\//],
    ['http-proxy-3 (no WebSocket upgrade)', /\/http-proxy-3\//],
    ["undici's index (fetch, WebSocket, cache)", /\/undici\/index\.js$/],
    // The API package alone is prom-client's (its CPU metric looks for a span to attach exemplars to).
    ['the OpenTelemetry SDK (tracing off)', /@opentelemetry\/(?!api\/)/],
  ])('does not load %s', (_what, pattern) => {
    expect(loaded.filter((file) => pattern.test(file))).toEqual([]);
  });
});
