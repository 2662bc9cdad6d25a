/**
 * Where the leak guard (SPEC §18, credentials/leak-guard.ts) meets a
 * request: once its destination is known, before its body is read, any
 * name is resolved or any connection made. A refused request shows where
 * the secret was (a header's name, or `url`), never the value: its path and
 * host are logged, journaled, answered and traced masked (the exchange
 * logs the warning).
 */
import type { IncomingHttpHeaders } from 'node:http';
import { LeakGuard } from '../credentials/leak-guard.js';
import type { BreakwaterError } from '../errors/breakwater-error.js';
import type { ExchangeRecord } from './exchange-record.js';

/**
 * The refusal when the request carries another upstream's secret (`destination`: its upstream, or null); its path
 * and host as they may be shown, either way.
 */
export function leakRefusal(
  guard: LeakGuard | null,
  request: { readonly headers: IncomingHttpHeaders; readonly url: string; readonly destination: string | null },
  record: ExchangeRecord,
): BreakwaterError | undefined {
  if (guard === null) return undefined;
  const leak = guard.find(request.headers, request.url, request.destination);
  // Shown masked whether refused or not: a secret in the path to its own upstream (`/bot<token>/`) is sent, never
  // logged.
  const path = guard.mask(record.path);
  const host = guard.mask(record.host);
  if (path !== record.path) record.shownPath = path;
  if (host !== record.host) record.shownHost = host;
  if (path !== record.path || host !== record.host) record.trace?.redact(path, host);
  return leak ? LeakGuard.refusal(leak) : undefined;
}
