/**
 * `credentials` resolved (SPEC §18): one shape per type, secrets as
 * references ({@link SecretRef}: a file's absolute path or a variable's
 * name), never their values, durations in ms, header names in lower case.
 */
import { AWS_DEFAULT_ENV, refOf, type SecretRef } from './credential-checks.js';
import { convertUnits } from './convert.js';
import { DEFAULTS } from './defaults.js';
import type { Json } from './json.js';
import { fill } from './merge.js';
import type { RawUpstream } from './schema.js';

type RawCredentials = NonNullable<RawUpstream['credentials']>;

const ref = (secret: unknown, baseDir: string): SecretRef => refOf(secret as Json, baseDir);

function awsRef(raw: RawCredentials, key: 'accessKeyId' | 'secretAccessKey' | 'sessionToken', baseDir: string) {
  return raw[key] ? ref(raw[key], baseDir) : { env: AWS_DEFAULT_ENV[key]! };
}

/** An upstream's or a target's credentials; null without. */
export function toCredentials(raw: RawCredentials | undefined, baseDir: string) {
  if (!raw) return null;
  const c = convertUnits(fill(DEFAULTS.upstream.credentials, raw), DEFAULTS.upstream.credentials);
  switch (raw.type) {
    case 'bearer':
      return { type: 'bearer' as const, secret: ref(raw.secret, baseDir) };
    case 'header':
      return {
        type: 'header' as const,
        header: raw.header!.toLowerCase(),
        prefix: c.prefix,
        secret: ref(raw.secret, baseDir),
      };
    case 'basic':
      return { type: 'basic' as const, username: raw.username!, password: ref(raw.password, baseDir) };
    case 'oauth2':
      return {
        type: 'oauth2' as const,
        tokenUrl: raw.tokenUrl!,
        clientId: raw.clientId!,
        clientSecret: ref(raw.clientSecret, baseDir),
        scope: c.scope,
        audience: c.audience,
        clientAuth: c.clientAuth,
        refreshBefore: c.refreshBefore,
        timeout: c.timeout,
      };
    case 'aws-sigv4':
      return {
        type: 'aws-sigv4' as const,
        region: raw.region!,
        service: raw.service!,
        accessKeyId: awsRef(raw, 'accessKeyId', baseDir),
        secretAccessKey: awsRef(raw, 'secretAccessKey', baseDir),
        sessionToken: awsRef(raw, 'sessionToken', baseDir),
        unsignedPayload: c.unsignedPayload,
      };
  }
}
