/**
 * `credentials` checked at load (SPEC §18): the keys each type takes and
 * needs, and every secret read, so that a missing, unreadable or empty file
 * or an unset variable is a problem at its `file`/`env` line at start,
 * `validate` and reload, never a failing request later. The values read
 * are handed to the runtime beside the config (load.ts), never put in it:
 * `/config` and every comparison of configs see the references only.
 */
import { closeSync, constants, fstatSync, openSync, readSync } from 'node:fs';
import path from 'node:path';
import { isObject, tryMs, type Json } from './json.js';
import type { Issue, PathSegment } from './problems.js';
import type { Parsed } from './units.js';

/** A secret's reference as the resolved config holds it: an absolute file path or a variable's name. */
export type SecretRef = { readonly file: string } | { readonly env: string };

/** The values read at load, by {@link secretKey}. */
export type SecretValues = ReadonlyMap<string, string>;

export const secretKey = (ref: SecretRef): string => ('file' in ref ? `file:${ref.file}` : `env:${ref.env}`);

/** A secret file is small; a bigger one is a mistake (a wrong path), not read whole into every request. */
export const MAX_SECRET_FILE_BYTES = 64 * 1024;

/** The keys each type needs, then the ones it may have; every other key of `credentials` is refused. */
const KEYS: Readonly<Record<string, readonly [readonly string[], readonly string[]]>> = {
  bearer: [['secret'], []],
  header: [['header', 'secret'], ['prefix']],
  basic: [['username', 'password'], []],
  oauth2: [
    ['tokenUrl', 'clientId', 'clientSecret'],
    ['scope', 'audience', 'clientAuth', 'refreshBefore', 'timeout'],
  ],
  'aws-sigv4': [
    ['region', 'service'],
    ['accessKeyId', 'secretAccessKey', 'sessionToken', 'unsignedPayload'],
  ],
};

/** The secrets of each type, by key. */
export const SECRET_KEYS: Readonly<Record<string, readonly string[]>> = {
  bearer: ['secret'],
  header: ['secret'],
  basic: ['password'],
  oauth2: ['clientSecret'],
  'aws-sigv4': ['accessKeyId', 'secretAccessKey', 'sessionToken'],
};

/** SigV4's secrets when not written: the variables the AWS SDKs read. */
export const AWS_DEFAULT_ENV: Readonly<Record<string, string>> = {
  accessKeyId: 'AWS_ACCESS_KEY_ID',
  secretAccessKey: 'AWS_SECRET_ACCESS_KEY',
  sessionToken: 'AWS_SESSION_TOKEN',
};

/** Headers a credential may not carry: they frame the message or address the proxy. */
const FRAMING = new Set(['host', 'content-length', 'transfer-encoding', 'connection', 'te', 'upgrade', 'trailer']);

/** What a header value may hold (undici refuses the rest): a secret that cannot be sent is refused where it is read. */
export const HEADER_SAFE = /^[\t\x20-\x7e\x80-\xff]+$/;
const UNSENDABLE = 'holds a line break, a NUL or a character a header cannot carry';

/** The longest token request: AbortSignal.timeout takes at most 2^31 - 1 ms, and a longer wait helps no one. */
const MAX_TOKEN_TIMEOUT_MS = 5 * 60_000;

/** A file's secret as sent: its content with trailing whitespace removed. */
export function readSecretFile(file: string): Parsed<string> {
  let text: string;
  let fd: number | undefined;
  try {
    // Opened without blocking and checked on the descriptor: a FIFO or a device would block the read (at load,
    // the whole process), and a file swapped between a stat and the read is not read unchecked.
    fd = openSync(file, constants.O_RDONLY | constants.O_NONBLOCK);
    if (!fstatSync(fd).isFile()) return { ok: false, message: `${file} is not a regular file` };
    const buffer = Buffer.alloc(MAX_SECRET_FILE_BYTES + 1);
    const size = readSync(fd, buffer, 0, buffer.length, 0);
    if (size > MAX_SECRET_FILE_BYTES) return { ok: false, message: `${file} is larger than 64 KiB: not a secret file` };
    text = buffer.subarray(0, size).toString('utf8');
  } catch (error) {
    return { ok: false, message: `cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? 'unreadable'}` };
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
  return secretText(file, text);
}

/** A file's content as a secret: trailing whitespace removed, not empty, sendable in a header. */
export function secretText(file: string, content: string): Parsed<string> {
  const value = content.trimEnd();
  if (value === '') return { ok: false, message: `${file} is empty` };
  return HEADER_SAFE.test(value) ? { ok: true, value } : { ok: false, message: `${file} ${UNSENDABLE}` };
}

function readEnv(name: string, env: NodeJS.ProcessEnv): Parsed<string> {
  const value = env[name];
  if (value === undefined) return { ok: false, message: `environment variable ${name} is not set` };
  if (value === '') return { ok: false, message: `environment variable ${name} is empty` };
  return HEADER_SAFE.test(value)
    ? { ok: true, value }
    : { ok: false, message: `environment variable ${name} ${UNSENDABLE}` };
}

/** The reference of a written secret (`file` resolved against the config's folder). */
export function refOf(secret: Json, baseDir: string): SecretRef {
  return typeof secret.file === 'string' ? { file: path.resolve(baseDir, secret.file) } : { env: String(secret.env) };
}

interface Reading {
  readonly issues: Issue[];
  readonly values: Map<string, string>;
  readonly env: NodeJS.ProcessEnv;
  readonly baseDir: string;
}

function readSecret(secret: Json, at: PathSegment[], reading: Reading): void {
  const ref = refOf(secret, reading.baseDir);
  const read = 'file' in ref ? readSecretFile(ref.file) : readEnv(ref.env, reading.env);
  if (read.ok) reading.values.set(secretKey(ref), read.value);
  else reading.issues.push({ path: [...at, 'file' in ref ? 'file' : 'env'], message: read.message });
}

/** SigV4's three secrets, each written or from its default variable (no session token when that one is unset). */
function readAwsDefaults(credentials: Json, at: PathSegment[], reading: Reading): void {
  for (const [key, name] of Object.entries(AWS_DEFAULT_ENV)) {
    if (credentials[key] !== undefined) continue;
    const value = reading.env[name];
    if (value !== undefined && value !== '') reading.values.set(secretKey({ env: name }), value);
    else if (key !== 'sessionToken')
      reading.issues.push({
        path: at,
        message: `${key} is not written and its default, environment variable ${name}, is ${value === undefined ? 'not set' : 'empty'}`,
      });
  }
}

/** A token URL with no user:pass@ (it would show in /config, and fetch refuses it), a bounded timeout. */
function checkOAuth2(credentials: Json, at: PathSegment[], issues: Issue[]): void {
  if (typeof credentials.tokenUrl === 'string' && /^[a-z]+:\/\/[^/?#]*@/i.test(credentials.tokenUrl))
    issues.push({
      path: [...at, 'tokenUrl'],
      message: 'a token URL carries no user:pass@: the client id and secret are clientId and clientSecret',
    });
  const timeout = tryMs(credentials.timeout);
  if (timeout !== undefined && timeout > MAX_TOKEN_TIMEOUT_MS)
    issues.push({ path: [...at, 'timeout'], message: 'one token request may take at most 5m' });
}

function checkOne(credentials: unknown, at: PathSegment[], reading: Reading): void {
  if (!isObject(credentials) || typeof credentials.type !== 'string') return;
  const keys = KEYS[credentials.type];
  if (!keys) return;
  const [required, optional] = keys;
  for (const key of required)
    if (credentials[key] === undefined)
      reading.issues.push({ path: at, at: 'value', message: `type ${credentials.type} needs ${key}` });
  for (const key of Object.keys(credentials))
    if (key !== 'type' && !required.includes(key) && !optional.includes(key))
      reading.issues.push({
        path: [...at, key],
        at: 'key',
        message: `type ${credentials.type} does not take ${key} (it takes ${[...required, ...optional].join(', ')})`,
      });
  const header = credentials.header;
  if (credentials.type === 'header' && typeof header === 'string' && FRAMING.has(header.toLowerCase()))
    reading.issues.push({ path: [...at, 'header'], message: `${header} frames the request: it cannot carry a secret` });
  if (credentials.type === 'oauth2') checkOAuth2(credentials, at, reading.issues);
  for (const key of SECRET_KEYS[credentials.type] ?? [])
    if (isObject(credentials[key])) readSecret(credentials[key], [...at, key], reading);
  if (credentials.type === 'aws-sigv4') readAwsDefaults(credentials, at, reading);
}

/** Every upstream's and failover target's credentials: problems, and the secrets' values as read. */
export function checkCredentials(
  file: unknown,
  baseDir: string,
  env: NodeJS.ProcessEnv,
): { issues: Issue[]; values: SecretValues } {
  const reading: Reading = { issues: [], values: new Map(), env, baseDir };
  const upstreams = isObject(file) && isObject(file.upstreams) ? file.upstreams : {};
  for (const [name, upstream] of Object.entries(upstreams)) {
    if (!isObject(upstream)) continue;
    checkOne(upstream.credentials, ['upstreams', name, 'credentials'], reading);
    if (Array.isArray(upstream.failover))
      upstream.failover.forEach((target: unknown, index) => {
        if (isObject(target))
          checkOne(target.credentials, ['upstreams', name, 'failover', index, 'credentials'], reading);
      });
  }
  return { issues: reading.issues, values: reading.values };
}
