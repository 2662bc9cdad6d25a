/**
 * The admin token's file (SPEC §19.1): `token` or `tokenFile`, not both; a
 * file that reads, holds at least 16 characters once its trailing
 * whitespace is dropped, and no line break inside (it is compared with a
 * header value). Its content is a secret: never in a message.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { Json } from './json.js';
import type { Issue } from './problems.js';

export const MIN_ADMIN_TOKEN = 16;

export function checkAdminToken(admin: Json, baseDir: string): Issue[] {
  const { token, tokenFile } = admin;
  if (typeof tokenFile !== 'string') return [];
  if (typeof token === 'string') return [{ path: ['admin', 'tokenFile'], message: 'give the admin token as token or as tokenFile, not both' }];
  let content: string;
  try {
    content = readFileSync(path.resolve(baseDir, tokenFile), 'utf8').trimEnd();
  } catch (error) {
    return [{ path: ['admin', 'tokenFile'], message: `cannot read ${tokenFile}: ${(error as NodeJS.ErrnoException).code ?? 'unreadable'}` }];
  }
  if (content.length < MIN_ADMIN_TOKEN) return [{ path: ['admin', 'tokenFile'], message: `${tokenFile} holds fewer than ${MIN_ADMIN_TOKEN} characters: use a longer token` }];
  if (/[\r\n\0]/.test(content)) return [{ path: ['admin', 'tokenFile'], message: `${tokenFile} holds a line break or NUL inside the token: one line only` }];
  return [];
}
