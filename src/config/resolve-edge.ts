/**
 * The ports' edges as the resolved config holds them (SPEC §19.1, §19.3):
 * the admin token, read from its file, and the forward proxy's callers.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { ConfigFile } from './schema.js';

type RawCaller = NonNullable<NonNullable<ConfigFile['forwardProxy']>['callers']>[number];

/**
 * The admin token (SPEC §19.1): the literal, or the file's content without its trailing whitespace (crossCheck
 * made sure it reads).
 */
export function adminToken(token: string | null, tokenFile: string | null, baseDir: string): string | null {
  if (token !== null) return token;
  return tokenFile === null ? null : readFileSync(path.resolve(baseDir, tokenFile), 'utf8').trimEnd();
}

/** `forwardProxy.callers` (SPEC §19.3): each caller's list, ports and mode defaulting to the global ones. */
export function toCallers(
  callers: readonly RawCaller[],
  global: { readonly allowPorts: readonly number[]; readonly mode: 'enforce' | 'report' },
) {
  return callers.map((caller) => {
    const { header, source, proxyUser } = caller.match;
    return {
      name: caller.name,
      match: {
        header: header
          ? Object.fromEntries(Object.entries(header).map(([name, value]) => [name.toLowerCase(), value]))
          : null,
        source: source === undefined ? null : Array.isArray(source) ? source : [source],
        proxyUser: proxyUser ?? null,
      },
      allowHosts: (caller.allowHosts ?? []).map((host) => host.toLowerCase()),
      allowPorts: [...(caller.allowPorts ?? global.allowPorts)],
      mode: caller.mode ?? global.mode,
    };
  });
}
