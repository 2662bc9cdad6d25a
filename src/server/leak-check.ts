/**
 * Where the leak guard (SPEC §18, credentials/leak-guard.ts) meets a
 * request: once its destination is known, before its body is read or any
 * connection made. A refused request shows where the secret was (a header's
 * name, or `url`), never the value: a path that carried it is logged,
 * journaled and answered masked.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { LeakGuard, masked } from '../credentials/leak-guard.js';
import type { BreakwaterError } from '../errors/breakwater-error.js';
import type { Logger } from '../observe/logger.js';
import type { ExchangeRecord } from './exchange-record.js';

/** The refusal when the request carries another upstream's secret (`destination`: its upstream, or null). */
export function leakRefusal(
  guard: LeakGuard | null,
  request: { readonly headers: IncomingHttpHeaders; readonly url: string; readonly destination: string | null },
  record: ExchangeRecord,
  logger: Logger,
): BreakwaterError | undefined {
  if (guard === null) return undefined;
  const leak = guard.find(request.headers, request.url, request.destination);
  if (!leak) return undefined;
  record.shownPath = masked(record.path, leak.secret);
  logger.warn(
    { requestId: record.requestId, where: leak.where, owner: leak.owner, destination: request.destination },
    'request refused: it carries a managed secret to another destination (CREDENTIAL_LEAK)',
  );
  return LeakGuard.refusal(leak);
}
