/**
 * `forwardProxy.intercept` at load: every file it names readable, the CA
 * key owner-only and belonging to the certificate, the certificate a CA,
 * hosts without ports. Each problem points at its key.
 */
import { generateKeyPairSync } from 'node:crypto';
import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { createCa, createLeafIssuer } from '../../src/tls/certificates.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'bw-intercept-config-'));
const file = (name: string) => path.join(dir, name);

beforeAll(async () => {
  const ca = await createCa(['*.example.com']);
  const other = await createCa(['*.example.com']);
  writeFileSync(file('ca.crt'), ca.certPem);
  writeFileSync(file('ca.key'), ca.keyPem, { mode: 0o600 });
  writeFileSync(file('other.key'), other.keyPem, { mode: 0o600 });
  writeFileSync(file('loose.key'), ca.keyPem);
  chmodSync(file('loose.key'), 0o640);
  writeFileSync(file('garbage.key'), 'not a key', { mode: 0o600 });
  writeFileSync(
    file('rsa.key'),
    generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'pem' }),
    { mode: 0o600 },
  );
  writeFileSync(
    file('p384.key'),
    generateKeyPairSync('ec', { namedCurve: 'secp384r1' }).privateKey.export({ type: 'pkcs8', format: 'pem' }),
    { mode: 0o600 },
  );
  const leaf = await createLeafIssuer(ca);
  writeFileSync(
    file('leaf.crt'),
    (await leaf.issue('a.example.com')).certChainPem.split(/(?=-----BEGIN CERTIFICATE-----)/)[0]!,
  );
});

function load(intercept: string): { path: string; message: string }[] {
  const text = `version: 1
routes: [{ name: r, match: { host: "*.example.com" } }]
forwardProxy:
  enabled: true
  connect: { mode: intercept }
  intercept: ${intercept}
`;
  const result = parseConfig(text, file('breakwater.yaml'));
  return result.ok ? [] : result.problems.map((p) => ({ path: p.path, message: p.message }));
}

describe('forwardProxy.intercept', () => {
  it('accepts a CA from breakwater ca create (paths relative to the config file)', () => {
    expect(load('{ caCert: ca.crt, caKey: ca.key, hosts: ["*.example.com", api.other.com, 10.1.2.3] }')).toEqual([]);
  });

  it.each([
    ['{ caKey: ca.key, hosts: [a.example.com] }', 'forwardProxy.intercept', /caCert is missing/],
    ['{ caCert: ca.crt, hosts: [a.example.com] }', 'forwardProxy.intercept', /caKey is missing/],
    ['{ caCert: ca.crt, caKey: ca.key }', 'forwardProxy.intercept', /hosts is empty/],
    ['{ caCert: ca.crt, caKey: ca.key, hosts: [] }', 'forwardProxy.intercept.hosts', /hosts is empty/],
    [
      '{ caCert: ca.crt, caKey: ca.key, hosts: ["a.example.com:443"] }',
      'forwardProxy.intercept.hosts[0]',
      /names a host, not a port/,
    ],
    [
      '{ caCert: nowhere.crt, caKey: ca.key, hosts: [a.example.com] }',
      'forwardProxy.intercept.caCert',
      /cannot read the CA file .*nowhere\.crt: ENOENT/,
    ],
    [
      '{ caCert: ca.crt, caKey: nowhere.key, hosts: [a.example.com] }',
      'forwardProxy.intercept.caKey',
      /cannot read the CA key .*nowhere\.key: ENOENT/,
    ],
    [
      '{ caCert: ca.crt, caKey: loose.key, hosts: [a.example.com] }',
      'forwardProxy.intercept.caKey',
      /readable by others \(mode 0640\): run chmod 600/,
    ],
    [
      '{ caCert: ca.crt, caKey: garbage.key, hosts: [a.example.com] }',
      'forwardProxy.intercept.caKey',
      /holds no private key/,
    ],
    [
      '{ caCert: ca.crt, caKey: other.key, hosts: [a.example.com] }',
      'forwardProxy.intercept.caKey',
      /does not belong to caCert/,
    ],
    [
      '{ caCert: ca.crt, caKey: rsa.key, hosts: [a.example.com] }',
      'forwardProxy.intercept.caKey',
      /ECDSA P-256: this is a rsa key/,
    ],
    [
      '{ caCert: ca.crt, caKey: p384.key, hosts: [a.example.com] }',
      'forwardProxy.intercept.caKey',
      /ECDSA P-256: this is a ec secp384r1 key/,
    ],
    ['{ caCert: leaf.crt, caKey: ca.key, hosts: [a.example.com] }', 'forwardProxy.intercept.caCert', /not a CA/],
    [
      '{ caCert: ca.crt, caKey: "-----BEGIN PRIVATE KEY-----x", hosts: [a.example.com] }',
      'forwardProxy.intercept.caKey',
      /path of the key file, not the key/,
    ],
    [
      '{ caCert: ca.crt, caKey: ca.key, hosts: [a.example.com], upstreamCa: nowhere.pem }',
      'forwardProxy.intercept.upstreamCa',
      /cannot read the CA file/,
    ],
  ])('refuses %s', (intercept, at, message) => {
    const problems = load(intercept);
    expect(problems.length, JSON.stringify(problems)).toBeGreaterThan(0);
    expect(
      problems.find((p) => p.path === at && message.test(p.message)),
      JSON.stringify(problems),
    ).toBeDefined();
  });

  it('never keeps the key in the loaded config', () => {
    const text = `version: 1
routes: [{ name: r, match: { host: "*.example.com" } }]
forwardProxy: { enabled: true, connect: { mode: intercept }, intercept: { caCert: ca.crt, caKey: ca.key, hosts: [a.example.com] } }
`;
    const result = parseConfig(text, file('breakwater.yaml'));
    expect(result.ok).toBe(true);
    if (result.ok) expect(JSON.stringify(result.loaded.config)).not.toMatch(/PRIVATE KEY/);
  });
});
