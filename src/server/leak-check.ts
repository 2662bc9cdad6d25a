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

/** The refusal when the request carries another upstream's secret (`destination`: its upstream, or null). */
export function leakRefusal(
  guard: LeakGuard | null,
  request: { readonly headers: IncomingHttpHeaders; readonly url: string; readonly destination: string | null },
  record: ExchangeRecord,
): BreakwaterError | undefined {
  if (guard === null) return undefined;
  const leak = guard.find(request.headers, request.url, request.destination);
  if (!leak) return undefined;
  record.shownPath = guard.mask(record.path);
  record.shownHost = guard.mask(record.host);
  record.trace?.redact(record.shownPath, record.shownHost);
  return LeakGuard.refusal(leak);
}
