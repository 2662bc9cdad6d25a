/**
 * The ports' edges as the resolved config holds them (SPEC §19.1, §19.3):
 * the admin token, read from its file, and the forward proxy's callers.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { Json } from './json.js';
import type { ForwardCallerConfig } from './types.js';

/** The admin token (SPEC §19.1): the literal, or the file's content without its trailing whitespace (crossCheck made sure it reads). */
export function adminToken(token: string | null, tokenFile: string | null, baseDir: string): string | null {
  if (token !== null) return token;
  return tokenFile === null ? null : readFileSync(path.resolve(baseDir, tokenFile), 'utf8').trimEnd();
}

/** `forwardProxy.callers` (SPEC §19.3): each caller's list, ports and mode defaulting to the global ones. */
export function toCallers(forwardProxy: Json): ForwardCallerConfig[] {
  return ((forwardProxy.callers as Json[] | undefined) ?? []).map((caller) => {
    const match = caller.match as Json;
    const header = match.header as Record<string, string> | undefined;
    const source = match.source as string | string[] | undefined;
    return {
      name: caller.name as string,
      match: {
        header: header ? Object.fromEntries(Object.entries(header).map(([name, value]) => [name.toLowerCase(), value])) : null,
        source: source === undefined ? null : Array.isArray(source) ? source : [source],
        proxyUser: (match.proxyUser as string | undefined) ?? null,
      },
      allowHosts: ((caller.allowHosts as string[] | undefined) ?? []).map((host) => host.toLowerCase()),
      allowPorts: [...((caller.allowPorts as number[] | undefined) ?? (forwardProxy.allowPorts as number[]))],
      mode: (caller.mode as ForwardCallerConfig['mode'] | undefined) ?? (forwardProxy.mode as ForwardCallerConfig['mode']),
    };
  });
}
