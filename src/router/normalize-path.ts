/**
 * Request paths are normalized before they are matched (SPEC §10, RFC 3986
 * §6.2.2): percent-encoded unreserved characters are decoded (`%2E` -> `.`,
 * `%7E` -> `~`, `%41` -> `A`), then dot segments are removed (§5.2.4). `%2F`
 * and every other encoded reserved character stay encoded, in the case the
 * client wrote; empty segments stay. A path whose dot segments climb above
 * `/`, or with an invalid escape (`%zz`, a lone `%`), is refused: a gateway
 * that clamps `/../admin` to `/admin` lets a client reach a route the prefix
 * in front of it was meant to keep it out of.
 *
 * The normalized path is what routes match, what is stripped and forwarded,
 * and the access log's `path`. Pure and allocation-free for the common path
 * (no `%`, no dot segment): it is returned as it is.
 */

export type NormalizedPath =
  { readonly ok: true; readonly path: string } | { readonly ok: false; readonly reason: string };

const HEX = /^[0-9A-Fa-f]{2}$/;

/** RFC 3986 §2.3: ALPHA / DIGIT / "-" / "." / "_" / "~". */
function isUnreserved(code: number): boolean {
  return (
    (code >= 0x41 && code <= 0x5a) ||
    (code >= 0x61 && code <= 0x7a) ||
    (code >= 0x30 && code <= 0x39) ||
    code === 0x2d ||
    code === 0x2e ||
    code === 0x5f ||
    code === 0x7e
  );
}

/** Decodes the escapes of unreserved characters; null on an invalid escape. */
function decodeUnreserved(path: string): string | null {
  let out = '';
  let from = 0;
  for (let i = path.indexOf('%'); i !== -1; i = path.indexOf('%', i + 1)) {
    const hex = path.slice(i + 1, i + 3);
    if (!HEX.test(hex)) return null;
    const code = parseInt(hex, 16);
    if (!isUnreserved(code)) continue;
    out += path.slice(from, i) + String.fromCharCode(code);
    from = i + 3;
    i += 2;
  }
  return from === 0 ? path : out + path.slice(from);
}

/** A segment that is `.` or `..` (after decoding), where the path needs the §5.2.4 pass. */
function hasDotSegment(path: string): boolean {
  return /(^|\/)\.\.?(\/|$)/.test(path);
}

/** Normalizes an origin-form path (no query). */
export function normalizePath(path: string): NormalizedPath {
  if (!path.startsWith('/') || (!path.includes('%') && !path.includes('.'))) return { ok: true, path };
  const decoded = decodeUnreserved(path);
  if (decoded === null) return { ok: false, reason: 'it has an invalid percent-escape' };
  if (!hasDotSegment(decoded)) return { ok: true, path: decoded };
  // RFC 3986 §5.2.4 on segments, refusing to climb above the root.
  const segments = decoded.split('/');
  const out: string[] = [];
  const last = segments.length - 1;
  for (let i = 1; i <= last; i++) {
    const segment = segments[i]!;
    if (segment === '.') {
      if (i === last) out.push('');
    } else if (segment === '..') {
      if (out.length === 0) return { ok: false, reason: 'its dot segments climb above the root' };
      out.pop();
      if (i === last) out.push('');
    } else {
      out.push(segment);
    }
  }
  return { ok: true, path: `/${out.join('/')}` };
}

export type NormalizedTarget =
  | { readonly ok: true; readonly path: string; readonly url: string }
  | { readonly ok: false; readonly path: string; readonly reason: string };

/**
 * An origin-form request target (path and query) with its path normalized;
 * the query is kept as sent. Refused targets keep the raw path (for the
 * access log and the problem's `instance`).
 */
export function normalizeTarget(target: string): NormalizedTarget {
  const query = target.indexOf('?');
  const rawPath = query === -1 ? target : target.slice(0, query);
  const normalized = normalizePath(rawPath);
  if (!normalized.ok) return { ok: false, path: rawPath, reason: normalized.reason };
  if (normalized.path === rawPath) return { ok: true, path: rawPath, url: target };
  return {
    ok: true,
    path: normalized.path,
    url: query === -1 ? normalized.path : normalized.path + target.slice(query),
  };
}

/**
 * The path and query of an absolute-form target as the client wrote them
 * (`http://host:8080/a/../b?x` -> `/a/../b?x`): WHATWG URL parsing would
 * already have clamped the dot segments at the root.
 */
export function rawTargetOf(absoluteForm: string): string {
  const afterScheme = absoluteForm.indexOf('//') + 2;
  const rest = absoluteForm.slice(afterScheme);
  const start = rest.search(/[/?#]/);
  if (start === -1) return '/';
  const target = rest.slice(start).split('#')[0]!;
  return target.startsWith('/') ? target : `/${target}`;
}
