/**
 * A target's credentials built from its config (SPEC §18): each secret
 * starts from the value read at load (config/credential-checks.ts) and,
 * when it is a file, is polled for changes by the runtime's SecretFiles.
 */
import type { SecretRef, SecretValues } from '../config/credential-checks.js';
import { readSecretFile, secretKey } from '../config/credential-checks.js';
import type { CredentialsConfig } from '../config/types.js';
import { StaticCredential, type Credential } from './credential.js';
import { OAuth2Credential, type OAuth2Deps } from './oauth2.js';
import { SecretFiles, SecretSource } from './secret-source.js';
import { SigV4Credential } from './sigv4.js';

export interface CredentialDeps extends OAuth2Deps {
  /** The values read at load; a runtime built without them (a test) reads the files and `process.env` itself. */
  readonly secrets?: SecretValues;
}

/** The value a secret starts with; undefined for an unset optional one (SigV4's session token). */
function initialValue(ref: SecretRef, deps: CredentialDeps): string | undefined {
  const loaded = deps.secrets?.get(secretKey(ref));
  if (loaded !== undefined || deps.secrets) return loaded;
  if ('env' in ref) return process.env[ref.env] || undefined;
  const read = readSecretFile(ref.file);
  return read.ok ? read.value : undefined;
}

export function buildCredential(
  config: CredentialsConfig | null,
  owner: string,
  files: SecretFiles,
  deps: CredentialDeps,
): Credential | null {
  if (config === null) return null;
  const source = (ref: SecretRef) => files.add(new SecretSource(ref, initialValue(ref, deps) ?? '', owner, deps));
  switch (config.type) {
    case 'bearer':
      return new StaticCredential('bearer', 'authorization', [source(config.secret)], ([secret]) => `Bearer ${secret}`);
    case 'header':
      return new StaticCredential(
        'header',
        config.header,
        [source(config.secret)],
        ([secret]) => `${config.prefix}${secret}`,
      );
    case 'basic':
      return new StaticCredential(
        'basic',
        'authorization',
        [source(config.password)],
        ([password]) => `Basic ${Buffer.from(`${config.username}:${password}`).toString('base64')}`,
      );
    case 'oauth2':
      return new OAuth2Credential(config, source(config.clientSecret), owner, deps);
    case 'aws-sigv4': {
      const token = initialValue(config.sessionToken, deps);
      return new SigV4Credential(
        config,
        {
          accessKeyId: source(config.accessKeyId),
          secretAccessKey: source(config.secretAccessKey),
          sessionToken: token === undefined ? null : source(config.sessionToken),
        },
        deps.wall,
      );
    }
  }
}

export { SecretFiles };
