/**
 * The cross-checks (cross-check.ts) of the sections for services around
 * the proxy (schema-services.ts): Redis, and TLS interception's CA, which
 * must be readable, owner-only and able to sign the leaves.
 */
import { X509Certificate } from 'node:crypto';
import { isHostPattern } from './formats.js';
import { readCa, readCaKey } from './ca-files.js';
import { getIn, isObject, type Json } from './json.js';
import type { Issue, PathSegment } from './problems.js';

/** `redis`: one form at a time, a database a Cluster has, a readable CA. */
export function checkRedis(redis: Json, baseDir: string, issues: Issue[]): void {
  const forms = (['sentinel', 'cluster'] as const).filter((form) => isObject(redis[form]));
  if (forms.length === 2)
    issues.push({
      path: ['redis', 'cluster'],
      message: 'redis names a sentinel group and a cluster: keep one of them',
    });
  if (isObject(redis.cluster) && typeof redis.db === 'number' && redis.db !== 0) {
    issues.push({
      path: ['redis', 'db'],
      message: `a Redis Cluster has only database 0 (db is ${redis.db}): remove db`,
    });
  }
  const ca = getIn(redis, ['tls', 'ca']);
  if (typeof ca === 'string' && ca !== '') {
    const read = readCa(ca, baseDir);
    if (!read.ok) issues.push({ path: ['redis', 'tls', 'ca'], message: read.message });
  }
}

/** `forwardProxy.intercept` when `connect.mode: intercept`: everything needed, readable, the key owner-only and matching the certificate. */
export function checkIntercept(intercept: unknown, baseDir: string, issues: Issue[]): void {
  const at = (...keys: PathSegment[]): PathSegment[] => ['forwardProxy', 'intercept', ...keys];
  if (!isObject(intercept)) {
    issues.push({
      path: ['forwardProxy', 'connect', 'mode'],
      message:
        'intercept needs forwardProxy.intercept: { caCert, caKey, hosts } (make them with "breakwater ca create")',
    });
    return;
  }
  let cert: X509Certificate | undefined;
  if (typeof intercept.caCert !== 'string')
    issues.push({
      path: at(),
      message: 'caCert is missing: the CA certificate apps trust (breakwater ca create writes ca.crt)',
    });
  else {
    const read = readCa(intercept.caCert, baseDir);
    if (!read.ok) issues.push({ path: at('caCert'), message: read.message });
    else {
      try {
        cert = new X509Certificate(read.value);
        if (!cert.ca)
          issues.push({
            path: at('caCert'),
            message: 'this certificate is not a CA (basicConstraints CA:FALSE): it cannot sign leaves',
          });
      } catch (error) {
        issues.push({ path: at('caCert'), message: `not a readable certificate: ${(error as Error).message}` });
      }
    }
  }
  if (typeof intercept.caKey !== 'string')
    issues.push({
      path: at(),
      message: 'caKey is missing: the CA private key file (breakwater ca create writes ca.key)',
    });
  else {
    const key = readCaKey(intercept.caKey, baseDir);
    if (!key.ok) issues.push({ path: at('caKey'), message: key.message });
    else if (key.value.asymmetricKeyType !== 'ec' || key.value.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
      issues.push({
        path: at('caKey'),
        message: `leaves are signed with ECDSA P-256: this is a ${key.value.asymmetricKeyType ?? 'unknown'}${key.value.asymmetricKeyDetails?.namedCurve ? ` ${key.value.asymmetricKeyDetails.namedCurve}` : ''} key (make a CA with "breakwater ca create")`,
      });
    } else if (cert && !cert.checkPrivateKey(key.value))
      issues.push({ path: at('caKey'), message: 'this key does not belong to caCert' });
  }
  const hosts = intercept.hosts;
  if (!Array.isArray(hosts) || hosts.length === 0)
    issues.push({
      path: at(...(Array.isArray(hosts) ? ['hosts'] : [])),
      message: 'hosts is empty: list the CONNECT targets to intercept (others are tunnelled)',
    });
  else
    hosts.forEach((host, i) => {
      if (typeof host === 'string' && !isHostPattern(host))
        issues.push({
          path: at('hosts', i),
          message: `"${host}": a certificate names a host, not a port: write the host alone`,
        });
    });
  if (typeof intercept.upstreamCa === 'string') {
    const read = readCa(intercept.upstreamCa, baseDir);
    if (!read.ok) issues.push({ path: at('upstreamCa'), message: read.message });
  }
}
