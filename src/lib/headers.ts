/**
 * Reading a header that node may give as a list (repeated fields): its
 * first value. Shared by the quota reader and the provider rules.
 */
import type { IncomingHttpHeaders } from 'node:http';

export function firstHeader(headers: IncomingHttpHeaders, name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value[0] : value;
}
