/**
 * `credentials` of an upstream and of each failover target (SPEC §18): the
 * secret Breakwater sends so that the app never holds it. One closed object
 * with a `type`; which keys each type takes and needs is checked by
 * credential-checks.ts, which also reads every secret at load.
 */
import { Type } from '@sinclair/typebox';
import { Bool, Duration, Fmt, Obj, OneOf, Opt, OrNull } from './schema-parts.js';
import { CLIENT_AUTH, CREDENTIAL_TYPES, DEFAULTS } from './defaults.js';

const C = DEFAULTS.upstream.credentials;

/** A secret: a file's content (trailing whitespace removed; relative to the config file) or a variable's value. */
export const Secret = Obj(
  {
    file: Opt(Type.String({ minLength: 1, description: 'a file holding the secret, re-read when it changes' })),
    env: Opt(
      Type.String({ pattern: '^[A-Za-z_][A-Za-z0-9_]*$', description: 'an environment variable, read at load' }),
    ),
  },
  { minProperties: 1, maxProperties: 1, description: 'one of { file: PATH } or { env: NAME }' },
);

export const Credentials = Obj(
  {
    type: OneOf(CREDENTIAL_TYPES, { description: 'how the secret is sent' }),
    secret: Opt(Secret),
    header: Opt(Fmt('header-name', { description: 'header: the header that carries the secret' })),
    prefix: Opt(Type.String({ default: C.prefix, description: 'header: written before the secret' })),
    username: Opt(Type.String({ minLength: 1, description: 'basic: the user name' })),
    password: Opt(Secret),
    tokenUrl: Opt(Fmt('http-url', { description: 'oauth2: the token endpoint (client credentials grant)' })),
    clientId: Opt(Type.String({ minLength: 1 })),
    clientSecret: Opt(Secret),
    scope: Opt(OrNull(Type.String({ minLength: 1, default: C.scope }))),
    audience: Opt(OrNull(Type.String({ minLength: 1, default: C.audience }))),
    clientAuth: Opt(
      OneOf(CLIENT_AUTH, {
        default: C.clientAuth,
        description: 'basic: HTTP Basic (RFC 6749 §2.3.1); body: client_id and client_secret in the form',
      }),
    ),
    refreshBefore: Opt(Duration('oauth2: renewed this long before expiry, at most half its lifetime', C.refreshBefore)),
    timeout: Opt(Duration('oauth2: one token request', C.timeout)),
    region: Opt(Type.String({ pattern: '^[a-z0-9-]{1,32}$', description: 'aws-sigv4: the region signed for' })),
    service: Opt(Type.String({ pattern: '^[a-z0-9.-]{1,64}$', description: 'aws-sigv4: the service signed for' })),
    accessKeyId: Opt(Secret),
    secretAccessKey: Opt(Secret),
    sessionToken: Opt(Secret),
    unsignedPayload: Opt(
      Bool(
        'aws-sigv4: X-Amz-Content-Sha256: UNSIGNED-PAYLOAD and bodies stream (else read whole and hashed)',
        C.unsignedPayload,
      ),
    ),
  },
  { required: ['type'], description: 'the credentials Breakwater sends (SPEC §18); the app never holds them' },
);
