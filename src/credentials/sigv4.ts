/**
 * AWS Signature Version 4 (SPEC §18) with `aws4`: every attempt (retries
 * and failover targets too) is signed when it is sent, over the request as
 * sent: method, path and query, `host` and every `x-amz-*` header, and the
 * body's SHA-256 (or UNSIGNED-PAYLOAD). Only those headers are signed: the
 * others may be rewritten on the way without breaking the signature.
 *
 * aws4 over @smithy/signature-v4 (measured on this machine, 20,000 signs of
 * a DynamoDB request, 3 runs): 17.5-25.6 us against 47-51.6 us a signature,
 * no dependencies against 8.2 MB of @smithy packages; both give the same
 * signatures (the tests verify ours with @smithy's on the upstream's side).
 */
import { createHash } from 'node:crypto';
import type { OutgoingHttpHeaders } from 'node:http';
import aws4 from 'aws4';
import { BreakwaterError } from '../errors/breakwater-error.js';
import type { CredentialsConfig } from '../config/types.js';
import { guarded, statusOf, type Credential, type CredentialStatus, type SendingRequest } from './credential.js';
import type { SecretSource } from './secret-source.js';

type SigV4Config = Extract<CredentialsConfig, { type: 'aws-sigv4' }>;

export const SIGV4_MANAGED = ['authorization', 'x-amz-date', 'x-amz-security-token', 'x-amz-content-sha256'];

/** `20261208T010203Z`: the form X-Amz-Date takes. */
export function amzDate(wall: number): string {
  return new Date(wall).toISOString().replace(/[:-]|\.\d{3}/g, '');
}

export class SigV4Credential implements Credential {
  readonly type = 'aws-sigv4';
  readonly managed = SIGV4_MANAGED;
  readonly sources: readonly SecretSource[];
  private held: readonly string[] | null = null;

  constructor(
    private readonly config: SigV4Config,
    private readonly keys: {
      readonly accessKeyId: SecretSource;
      readonly secretAccessKey: SecretSource;
      readonly sessionToken: SecretSource | null;
    },
    private readonly wall: () => number,
  ) {
    this.sources = [keys.accessKeyId, keys.secretAccessKey, ...(keys.sessionToken ? [keys.sessionToken] : [])];
    for (const source of this.sources) source.onChange(() => (this.held = null));
  }

  apply(headers: OutgoingHttpHeaders, request: SendingRequest): void {
    const { config, keys } = this;
    const body = request.body;
    // A body not read whole (a stream) can only go unsigned: routes to a signing upstream read it whole otherwise.
    const payload =
      config.unsignedPayload || (body !== undefined && !Buffer.isBuffer(body))
        ? 'UNSIGNED-PAYLOAD'
        : createHash('sha256')
            .update(body ?? '')
            .digest('hex');
    headers['x-amz-date'] = amzDate(this.wall());
    headers['x-amz-content-sha256'] = payload;
    const sessionToken = keys.sessionToken?.value;
    if (sessionToken !== undefined) headers['x-amz-security-token'] = sessionToken;
    const host = String(headers.host ?? request.url.host);
    const signed: Record<string, string> = { host };
    for (const name in headers) if (name.startsWith('x-amz-')) signed[name] = String(headers[name]);
    let result: ReturnType<typeof aws4.sign>;
    try {
      result = aws4.sign(
        {
          method: request.method,
          host,
          path: request.path,
          service: config.service,
          region: config.region,
          headers: signed,
        },
        {
          accessKeyId: keys.accessKeyId.value,
          secretAccessKey: keys.secretAccessKey.value,
          ...(sessionToken !== undefined && { sessionToken }),
        },
      );
    } catch {
      // aws4 decodes S3 paths: an escape that is no UTF-8 (`%E0%A4`) cannot be signed, and is the client's.
      throw new BreakwaterError(
        'BAD_REQUEST',
        'The request path cannot be signed for AWS: it is not valid percent-encoded UTF-8.',
      );
    }
    headers.authorization = String((result.headers as Record<string, string>).Authorization);
  }

  secrets(): readonly string[] {
    // Built again only when a key file changed: the leak guard asks on every request.
    return (this.held ??= guarded([
      this.keys.secretAccessKey.value,
      ...(this.keys.sessionToken ? [this.keys.sessionToken.value] : []),
    ]));
  }

  status(): CredentialStatus {
    return statusOf('aws-sigv4', this.sources);
  }
}
