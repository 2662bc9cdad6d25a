/**
 * Config problems never show a secret (SPEC §7, §20.6): a value that came
 * from `${env:…}` is quoted as written (`${env:NAME}`, `Bearer ${env:NAME}`),
 * a password or query in a URL and a header value as `<redacted>`. The
 * checks that write messages quote the values they were given (the
 * substituted ones), so the problems are scrubbed once, where they leave
 * the loader, rather than each check being taught which values are secret.
 */
import { isObject } from './json.js';
import { formatPath, type ConfigProblem, type PathSegment } from './problems.js';

export const REDACTED = '<redacted>';

export interface SecretText {
  /** The text as the checks saw it: a variable's value, a substituted string, a password. */
  readonly value: string;
  /** What a message shows instead: the value as written or `<redacted>`. */
  readonly shown: string;
  /** Only in problems at this path (formatted); null: in every problem (a check may quote it about another key). */
  readonly path: string | null;
  /** Replaced wherever it appears however short: a form no message word has (`:pw@`). */
  readonly bare?: boolean;
}

/**
 * How much of a message a secret's text is looked for in. Inside a quoted
 * part (`"…"`, where checks put the values they quote), a text of
 * {@link MIN_BARE} characters or more anywhere, a shorter one only as the
 * whole quote; outside quotes, only a text that is not a plain word (`true`
 * from a variable must not turn "must be true or false" into nonsense).
 */
const MIN_BARE = 4;
const PLAIN_WORD = /^[A-Za-z]+$/;
/** A double-quoted part of a message, JSON escapes included (linear: no nested repetition). */
const QUOTED = /"(?:[^"\\]|\\.)*"/g;
/** describeValue (validate.ts) quotes a long string as its first 57 characters and `...`. */
const QUOTED_PREFIX = 57;

/** A string as it reads inside a JSON-quoted message (`"a\nb"`). */
function inJson(text: string): string {
  return JSON.stringify(text).slice(1, -1);
}

/** The password and the query of a URL as written (parsed by hand: the URL may be one the parser refuses). */
function urlSecrets(value: unknown, path: readonly PathSegment[], query: boolean): SecretText[] {
  if (typeof value !== 'string') return [];
  const out: SecretText[] = [];
  const scheme = value.indexOf('://');
  const rest = scheme === -1 ? '' : value.slice(scheme + 3);
  let hostEnd = rest.length;
  for (const stop of ['/', '?', '#']) if (rest.includes(stop)) hostEnd = Math.min(hostEnd, rest.indexOf(stop));
  const authority = rest.slice(0, hostEnd);
  const at = authority.lastIndexOf('@');
  const colon = authority.indexOf(':');
  if (at !== -1 && colon !== -1 && colon < at - 1) {
    const password = authority.slice(colon + 1, at);
    out.push({ value: `:${password}@`, shown: `:${REDACTED}@`, path: null, bare: true });
    try {
      out.push({ value: decodeURIComponent(password), shown: REDACTED, path: null });
    } catch {
      // Not percent-encoded as a URL would be: the text as written is enough.
    }
  }
  const mark = value.indexOf('?');
  if (query && mark !== -1)
    out.push({ value: value.slice(mark + 1).split('#')[0]!, shown: REDACTED, path: formatPath(path) });
  return out;
}

function headerSecrets(set: unknown, at: readonly PathSegment[]): SecretText[] {
  if (!isObject(set)) return [];
  return Object.entries(set).flatMap(([name, value]) =>
    typeof value === 'string' ? [{ value, shown: REDACTED, path: formatPath([...at, name]) }] : [],
  );
}

function upstreamSecrets(upstreams: unknown): SecretText[] {
  if (!isObject(upstreams)) return [];
  return Object.entries(upstreams).flatMap(([name, upstream]) => {
    if (!isObject(upstream)) return [];
    const targets = Array.isArray(upstream.failover) ? (upstream.failover as unknown[]) : [];
    return [
      ...urlSecrets(upstream.url, ['upstreams', name, 'url'], false),
      ...targets.flatMap((target, index) => {
        if (!isObject(target)) return [];
        const at = ['upstreams', name, 'failover', index];
        return [
          ...urlSecrets(target.url, [...at, 'url'], false),
          ...(isObject(target.headers) ? headerSecrets(target.headers.set, [...at, 'headers', 'set']) : []),
        ];
      }),
    ];
  });
}

/**
 * The secrets written in the file itself (after substitution): URL passwords, the tracing endpoint's query,
 * header values.
 */
export function literalSecrets(file: unknown): SecretText[] {
  if (!isObject(file)) return [];
  const out = upstreamSecrets(file.upstreams);
  if (Array.isArray(file.routes)) {
    file.routes.forEach((route: unknown, index) => {
      const headers = isObject(route) ? route.headers : undefined;
      if (!isObject(headers)) return;
      for (const side of ['request', 'response'])
        if (isObject(headers[side]))
          out.push(...headerSecrets(headers[side].set, ['routes', index, 'headers', side, 'set']));
    });
  }
  if (isObject(file.redis)) out.push(...urlSecrets(file.redis.url, ['redis', 'url'], false));
  if (isObject(file.tracing)) out.push(...urlSecrets(file.tracing.endpoint, ['tracing', 'endpoint'], true));
  return out;
}

function replaceForm(message: string, form: string, shown: string, bare: boolean): string {
  const long = form.length >= MIN_BARE;
  const quoted = message.replace(QUOTED, (part) =>
    long ? part.split(form).join(shown) : part === `"${form}"` ? `"${shown}"` : part,
  );
  return bare || (long && !PLAIN_WORD.test(form)) ? quoted.split(form).join(shown) : quoted;
}

function scrub(message: string, path: string, secrets: readonly SecretText[]): string {
  let out = message;
  for (const secret of secrets) {
    if (secret.value === '' || (secret.path !== null && secret.path !== path)) continue;
    const forms = new Map<string, string>([
      [secret.value, secret.shown],
      [inJson(secret.value), inJson(secret.shown)],
    ]);
    if (secret.value.length > QUOTED_PREFIX + 3)
      forms.set(`${inJson(secret.value.slice(0, QUOTED_PREFIX))}...`, inJson(secret.shown));
    for (const [form, shown] of forms) out = replaceForm(out, form, shown, secret.bare === true);
  }
  return out;
}

/**
 * The problems with every secret quoted as written or as `<redacted>`; the longest secrets first, so a whole
 * value goes before its parts.
 */
export function scrubProblems(problems: readonly ConfigProblem[], secrets: readonly SecretText[]): ConfigProblem[] {
  const ordered = [...secrets].sort((a, b) => b.value.length - a.value.length);
  return problems.map((problem) => ({ ...problem, message: scrub(problem.message, problem.path, ordered) }));
}
