/**
 * Values that go on the wire as they are (SPEC §20.6): header values set by
 * routes and failover targets, and the URLs Breakwater connects to. One that
 * holds CR, LF or NUL after `${env:}` substitution (a variable read from a
 * file often ends in a newline) is a config problem at the value: never
 * trimmed, never sent. Sent, a header value with a newline makes every
 * attempt fail before a byte leaves (and the breaker open); URL parsing
 * drops tabs and newlines silently and would connect somewhere else than
 * written. Messages name the character, never the value: it may be a secret.
 */
import { isObject, type Json } from './json.js';
import type { Issue, PathSegment } from './problems.js';

const FORBIDDEN: readonly (readonly [string, string])[] = [
  ['\r', 'a carriage return (CR, \\r)'],
  ['\n', 'a line feed (LF, \\n)'],
  ['\0', 'a NUL character (\\0)'],
];

/** The name of the first CR, LF or NUL in `value`, or undefined. */
export function forbiddenCharacter(value: string): string | undefined {
  let first = -1;
  let name: string | undefined;
  for (const [char, described] of FORBIDDEN) {
    const at = value.indexOf(char);
    if (at !== -1 && (first === -1 || at < first)) [first, name] = [at, described];
  }
  return name;
}

function checkHeaderValues(set: unknown, at: readonly PathSegment[], issues: Issue[]): void {
  if (!isObject(set)) return;
  for (const [name, value] of Object.entries(set)) {
    const found = typeof value === 'string' ? forbiddenCharacter(value) : undefined;
    if (found) {
      issues.push({
        path: [...at, name],
        message: `holds ${found}: a header value cannot carry CR, LF or NUL, and it is never trimmed nor sent (a variable read from a file keeps its trailing newline)`,
      });
    }
  }
}

function checkUrl(value: unknown, at: readonly PathSegment[], issues: Issue[]): void {
  const found = typeof value === 'string' ? forbiddenCharacter(value) : undefined;
  if (found) {
    issues.push({
      path: [...at],
      message: `holds ${found}: a URL cannot carry CR, LF or NUL, and it is never trimmed (a variable read from a file keeps its trailing newline)`,
    });
  }
}

function checkUpstreams(upstreams: unknown, issues: Issue[]): void {
  if (!isObject(upstreams)) return;
  for (const [name, upstream] of Object.entries(upstreams)) {
    if (!isObject(upstream)) continue;
    checkUrl(upstream.url, ['upstreams', name, 'url'], issues);
    if (!Array.isArray(upstream.failover)) continue;
    upstream.failover.forEach((target: unknown, index) => {
      if (!isObject(target)) return;
      const at = ['upstreams', name, 'failover', index];
      checkUrl(target.url, [...at, 'url'], issues);
      if (isObject(target.headers)) checkHeaderValues(target.headers.set, [...at, 'headers', 'set'], issues);
    });
  }
}

/**
 * CR, LF or NUL in a header value or URL, after `${env:}` substitution. Defensive: `file` may have failed the
 * schema.
 */
export function checkWireValues(file: unknown): Issue[] {
  const issues: Issue[] = [];
  if (!isObject(file)) return issues;
  checkUpstreams(file.upstreams, issues);
  if (Array.isArray(file.routes)) {
    file.routes.forEach((route: unknown, index) => {
      const headers = isObject(route) ? route.headers : undefined;
      if (!isObject(headers)) return;
      for (const side of ['request', 'response']) {
        const edits = headers[side];
        if (isObject(edits)) checkHeaderValues(edits.set, ['routes', index, 'headers', side, 'set'], issues);
      }
    });
  }
  if (isObject(file.tracing)) checkUrl(file.tracing.endpoint, ['tracing', 'endpoint'], issues);
  if (isObject(file.redis)) checkUrl((file.redis as Json).url, ['redis', 'url'], issues);
  return issues;
}
