/**
 * The string grammars of the config file, as ajv formats. Each format is one
 * function that returns `null` for a good value or the message to show for a
 * bad one, so that ajv's yes/no check and the message the user reads come
 * from the same code.
 */
import { isIP } from 'node:net';
import { CONDITION_WORDS, COST_PRESETS, isCondition } from './defaults.js';
import { parseDuration, parseRate, parseShare, parseSize, type Parsed } from './units.js';
import { suggest } from './suggest.js';

type Check = (value: string) => string | null;

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
/** `json:<path>` (SPEC §15): up to 8 field names joined by dots. */
const JSON_PATH = /^[A-Za-z0-9_-]{1,64}(\.[A-Za-z0-9_-]{1,64}){0,7}$/;
/** Names a JSON path never reads: an object's inherited members. */
const FORBIDDEN_KEYS = new Set(['__proto__', 'constructor', 'prototype']);
const HOST_LABELS =
  /^(\*\.)?[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?)*\.?$/;

function positive(parsed: Parsed<number>, what: string): string | null {
  if (!parsed.ok) return parsed.message;
  return parsed.value > 0 ? null : `must be more than zero: a ${what} of 0 means nothing here`;
}

function nonNegative(parsed: Parsed<number>): string | null {
  return parsed.ok ? null : parsed.message;
}

/** A host name, `*.` wildcard or IP literal, without a port (what a certificate can name). */
export function isHostPattern(value: string): boolean {
  return isIP(value) !== 0 || HOST_LABELS.test(value);
}

function checkHostPattern(value: string): string | null {
  const bare = value.replace(/:\d{1,5}$/, '');
  if (isIP(value) || isIP(bare) || /^\[[0-9A-Fa-f:.]+\](:\d{1,5})?$/.test(value)) return null;
  if (HOST_LABELS.test(bare)) return null;
  return `"${value}" is not a host name: write a name like api.example.com, a wildcard like *.example.com, or an IP address`;
}

function checkUrl(
  value: string,
  protocols: readonly string[],
  example: string,
  allow: { query?: boolean } = {},
): string | null {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return `"${value}" is not a URL: write it in full, like ${example}`;
  }
  if (!protocols.includes(url.protocol)) {
    return `"${value}" uses ${url.protocol.slice(0, -1)}: only ${protocols.map((p) => p.slice(0, -1)).join(' or ')} is supported`;
  }
  if (!url.hostname) return `"${value}" has no host`;
  if (allow.query && !url.hash && !value.includes('#')) return null;
  if (url.search || url.hash || value.includes('?') || value.includes('#')) {
    return `"${value}" carries a query or fragment: give the base URL only`;
  }
  return null;
}

/** A browser origin (RFC 6454 serialization): scheme://host[:port], nothing after; or "*". */
function checkOrigin(value: string): string | null {
  if (value === '*') return null;
  const bad = `"${value}" is not an origin: write scheme://host[:port] without a path, like https://app.example.com, or "*" (no browser check)`;
  try {
    const url = new URL(value);
    return (url.protocol === 'http:' || url.protocol === 'https:') &&
      url.origin === value.toLowerCase().replace(/\/$/, '') &&
      !value.endsWith('/')
      ? null
      : bad;
  } catch {
    return bad;
  }
}

/** An address or a network: 10.1.0.0/16, fd00::/8, 10.0.0.5. */
function checkCidr(value: string): string | null {
  const [address = '', bits, extra] = value.split('/');
  const family = isIP(address);
  const max = family === 4 ? 32 : 128;
  if (family !== 0 && extra === undefined && (bits === undefined || (/^\d{1,3}$/.test(bits) && Number(bits) <= max)))
    return null;
  return `"${value}" is not a CIDR: write an address and a prefix length, like 10.1.0.0/16 or fd00::/8`;
}

export const FORMATS: Record<string, Check> = {
  duration: (v) => positive(parseDuration(v), 'duration'),
  'duration-or-zero': (v) => nonNegative(parseDuration(v)),
  size: (v) => positive(parseSize(v), 'size'),
  'size-or-zero': (v) => nonNegative(parseSize(v)),
  rate: (v) => positive(parseRate(v), 'rate'),
  share: (v) => nonNegative(parseShare(v)),
  condition: (v) => {
    if (isCondition(v)) return null;
    const close = suggest(v, CONDITION_WORDS);
    return (
      `unknown condition "${v}"${close ? `; did you mean "${close}"?` : ''} ` +
      `(known: ${CONDITION_WORDS.join(', ')}, or a status code as a string such as "429")`
    );
  },
  'header-name': (v) => (TOKEN.test(v) ? null : `"${v}" is not a valid header name`),
  'header-selector': (v) => {
    const match = /^header:(.*)$/.exec(v);
    if (!match) return `"${v}" must be header:<name>, like header:x-ratelimit-resource`;
    return TOKEN.test(match[1]!) ? null : `"${match[1]}" is not a valid header name`;
  },
  'cost-source': (v) => {
    if ((COST_PRESETS as readonly string[]).includes(v)) return null;
    const header = /^header:(.*)$/.exec(v);
    if (header) return TOKEN.test(header[1]!) ? null : `"${header[1]}" is not a valid header name`;
    const json = /^json:(.*)$/.exec(v);
    if (json)
      return JSON_PATH.test(json[1]!) && !json[1]!.split('.').some((key) => FORBIDDEN_KEYS.has(key))
        ? null
        : `"${json[1]}" is not a JSON path: write field names joined by dots, like usage.total_tokens`;
    const close = suggest(v, COST_PRESETS);
    return `"${v}" is not a cost${close ? `; did you mean "${close}"?` : ''}: write openai, anthropic, header:<name> or json:<path>`;
  },
  'limit-key': (v) => {
    if (v === 'route' || v === 'client-ip') return null;
    const match = /^header:(.*)$/.exec(v);
    if (match && TOKEN.test(match[1]!)) return null;
    if (match) return `"${match[1]}" is not a valid header name`;
    const close = suggest(v, ['route', 'client-ip']);
    return `"${v}" is not a limiter key${close ? `; did you mean "${close}"?` : ''}: write route, client-ip or header:<name>`;
  },
  name: (v) =>
    NAME.test(v)
      ? null
      : `"${v}" is not a valid name: use up to 64 letters, digits, '-', '_' and '.', starting with a letter or digit`,
  'path-prefix': (v) => {
    if (!v.startsWith('/')) return `"${v}" must start with "/"`;
    if (/[?#\s]/.test(v)) return `"${v}" must be a path only, without query, fragment or spaces`;
    return null;
  },
  'host-pattern': checkHostPattern,
  'allow-host': (v) => (v === '*' ? null : checkHostPattern(v)),
  cidr: checkCidr,
  'server-name': (v) =>
    v === '*' || isHostPattern(v.toLowerCase())
      ? null
      : `"${v}" is not a server name: write a host like api.internal, a wildcard like *.internal, or "*" (no Host check)`,
  origin: checkOrigin,
  'http-url': (v) => checkUrl(v, ['http:', 'https:'], 'https://api.example.com'),
  // A collector may take its token in the query (redacted as a secret, SPEC §20.6); a fragment is never sent.
  'otlp-url': (v) => checkUrl(v, ['http:', 'https:'], 'http://127.0.0.1:4318/v1/traces', { query: true }),
  'redis-url': (v) => checkUrl(v, ['redis:', 'rediss:'], 'redis://127.0.0.1:6379'),
  'host-port': (v) => {
    const match = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(v);
    if (!match || Number(match[2]) < 1 || Number(match[2]) > 65535)
      return `"${v}" is not host:port (like 10.0.0.5:26379 or [::1]:26379)`;
    return null;
  },
};

/** The message for a value that failed `format`, or a generic one for an unknown format. */
export function describeFormatError(format: string, value: unknown): string {
  const check = FORMATS[format];
  const message = check && typeof value === 'string' ? check(value) : null;
  return message ?? `must be a valid ${format}`;
}
