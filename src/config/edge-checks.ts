/**
 * Checks of the ports' edges a schema cannot express (SPEC §19.1, §19.3):
 * the admin token's file (`token` or `tokenFile`, not both; it reads,
 * holds at least 16 characters once its trailing whitespace is dropped, one
 * line; its content a secret, never in a message), and the forward proxy's
 * callers (unique names, a match with a key).
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { Json } from './json.js';
import type { Issue } from './problems.js';

/** `forwardProxy.callers` (SPEC §19.3): unique names (they label metrics), and a `match` with at least one key. */
export function checkCallers(callers: unknown): Issue[] {
  if (!Array.isArray(callers)) return [];
  const issues: Issue[] = [];
  const seen = new Set<string>();
  callers.forEach((caller: unknown, index) => {
    if (!caller || typeof caller !== 'object') return;
    const { name, match } = caller as Json;
    if (typeof name === 'string' && seen.has(name))
      issues.push({
        path: ['forwardProxy', 'callers', index, 'name'],
        message: `duplicate caller name "${name}": names must be unique, they label metrics and logs`,
      });
    if (typeof name === 'string') seen.add(name);
    if (match && typeof match === 'object' && Object.keys(match).length === 0) {
      issues.push({
        path: ['forwardProxy', 'callers', index, 'match'],
        message: 'names no key: give header, source or proxyUser (an empty match would take every request)',
      });
    }
  });
  return issues;
}

export const MIN_ADMIN_TOKEN = 16;

export function checkAdminToken(admin: Json, baseDir: string): Issue[] {
  const { token, tokenFile } = admin;
  if (typeof tokenFile !== 'string') return [];
  if (typeof token === 'string')
    return [{ path: ['admin', 'tokenFile'], message: 'give the admin token as token or as tokenFile, not both' }];
  let content: string;
  try {
    content = readFileSync(path.resolve(baseDir, tokenFile), 'utf8').trimEnd();
  } catch (error) {
    return [
      {
        path: ['admin', 'tokenFile'],
        message: `cannot read ${tokenFile}: ${(error as NodeJS.ErrnoException).code ?? 'unreadable'}`,
      },
    ];
  }
  if (content.length < MIN_ADMIN_TOKEN)
    return [
      {
        path: ['admin', 'tokenFile'],
        message: `${tokenFile} holds fewer than ${MIN_ADMIN_TOKEN} characters: use a longer token`,
      },
    ];
  if (/[\r\n\0]/.test(content))
    return [
      {
        path: ['admin', 'tokenFile'],
        message: `${tokenFile} holds a line break or NUL inside the token: one line only`,
      },
    ];
  return [];
}
