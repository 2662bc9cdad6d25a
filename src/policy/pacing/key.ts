/**
 * Which pacer a request is paced by (SPEC §3 `pacing.key`, `pacing.scope`):
 * the hashed credential it carries and the scope learned for its route and
 * first path segment.
 */
import { createHash } from 'node:crypto';
import type { PacingConfig } from '../../config/types.js';
import type { IncomingHttpHeaders } from 'node:http';
import type { RequestContext } from '../context.js';
import { headerValue } from './announced.js';

/**
 * Path segments longer than this (characters) are learned under `#` and
 * their SHA-256 (no path as sent holds a `#`): the table of learned scopes
 * (MAX_PACERS entries per upstream) then holds short keys whatever paths
 * clients send.
 */
const MAX_SEGMENT_LENGTH = 64;

/** Where a request is paced: its pacer id, and the key its scope is learned under. */
export interface PacerKey {
  readonly id: string;
  /** The hashed credential part of the id ('' without `key`). */
  readonly keyPart: string;
  /** Route and first path segment ('' without `scope`). */
  readonly learnKey: string;
}

/** `scopeOf`: the scope learned under a route and first path segment, if any. */
export function pacerKeyOf(
  config: PacingConfig,
  scopeOf: (learnKey: string) => string | undefined,
  ctx: RequestContext,
  route: string,
  prefixLength: number,
): PacerKey {
  let keyPart = '';
  if (config.key) {
    // The key (a credential, often) is hashed: never kept, never logged.
    const value = ctx.clientHeaders[config.key];
    // All values, as rate-limit keys read them: two requests share a quota only when they carry the same credential.
    keyPart = createHash('sha256')
      .update(Array.isArray(value) ? value.join(',') : (value ?? ''))
      .digest('hex')
      .slice(0, 16);
  }
  let learnKey = '';
  let scope = '';
  if (config.scope) {
    const rest = ctx.path.slice(prefixLength);
    const start = rest.startsWith('/') ? 1 : 0;
    const end = rest.indexOf('/', start);
    const segment = rest.slice(start, end === -1 ? undefined : end);
    learnKey = `${route}\u0001${segment.length <= MAX_SEGMENT_LENGTH ? segment : `#${createHash('sha256').update(segment).digest('hex')}`}`;
    scope = scopeOf(learnKey) ?? '';
  }
  const id = scope === '' && keyPart === '' ? ':' : `${encodeURIComponent(scope)}:${keyPart}`;
  return { id, keyPart, learnKey };
}

/**
 * The pacer an answer counted against: its scope's (`pacing.scope`'s header names it; learned for the request's
 * route and path segment through `learn`), else the request's own.
 */
export function answeredIdOf(
  config: PacingConfig,
  headers: IncomingHttpHeaders,
  key: PacerKey,
  learn: (learnKey: string, scope: string) => void,
): string {
  if (!config.scope) return key.id;
  const answeredScope = headerValue(headers, config.scope);
  if (!answeredScope) return key.id;
  learn(key.learnKey, answeredScope);
  return `${encodeURIComponent(answeredScope)}:${key.keyPart}`;
}
