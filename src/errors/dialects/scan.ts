/**
 * Scans over an error body's text (SPEC §20.5): each one walks the text
 * forward with `indexOf`, never going back, so reading a hostile body
 * (37,000 `<title>` without a closing tag, a run of `<` without `>`) costs
 * time linear in its size. The regexes these replace,
 * `<title[^>]*>([\s\S]*?)<\/title>` and `<[^>]+>`, restarted their lazy
 * or greedy run at every opening tag: quadratic, seconds for 256 KiB with
 * the event loop held.
 */

/**
 * Whether `text` has `name` (lower-case ASCII) at `at`, its letters in any case; compared code by code, nothing
 * allocated.
 */
function namedAt(text: string, at: number, name: string): boolean {
  if (text.length - at < name.length) return false;
  for (let i = 0; i < name.length; i++) {
    const want = name.charCodeAt(i);
    const got = text.charCodeAt(at + i);
    // An ASCII letter in either case (`| 0x20` lowers A-Z); anything else exactly.
    if (got !== want && !(want >= 0x61 && want <= 0x7a && (got | 0x20) === want)) return false;
  }
  return true;
}

/** Where the next `<` followed by `prefix` (any case) is, at or after `from`; -1 when none. */
function findTag(text: string, prefix: string, from: number): number {
  for (let at = text.indexOf('<', from); at !== -1; at = text.indexOf('<', at + 1)) {
    if (namedAt(text, at + 1, prefix)) return at;
  }
  return -1;
}

/**
 * The content of the first `<name ...>...</name>` element of an HTML text
 * (the tag name in any case), undefined when it has none: what
 * `/<name[^>]*>([\s\S]*?)<\/name>/i` finds. The first opening tag is the
 * only one tried: when no closing tag follows it, none follows a later one
 * either.
 */
export function elementText(text: string, name: string): string | undefined {
  const open = findTag(text, name, 0);
  if (open === -1) return undefined;
  const start = text.indexOf('>', open);
  if (start === -1) return undefined;
  const close = findTag(text, `/${name}>`, start + 1);
  return close === -1 ? undefined : text.slice(start + 1, close);
}

/**
 * The content of the first `<Name>...</Name>` of an XML text (exact case,
 * no attributes, as AWS writes them), undefined when it has none.
 */
export function xmlElementText(text: string, name: string): string | undefined {
  const open = text.indexOf(`<${name}>`);
  if (open === -1) return undefined;
  const start = open + name.length + 2;
  const close = text.indexOf(`</${name}>`, start);
  return close === -1 ? undefined : text.slice(start, close);
}

/** The text without its tags: each `<` up to the next `>` goes (`<>` and a `<` never closed stay, as text). */
export function stripTags(text: string): string {
  let out = '';
  let kept = 0;
  for (let open = text.indexOf('<'); open !== -1; open = text.indexOf('<', kept)) {
    const close = text.indexOf('>', open + 1);
    // No `>` after this `<`: none after a later one either; the rest is text.
    if (close === -1) break;
    if (close === open + 1) {
      out += text.slice(kept, close);
      kept = close;
      continue;
    }
    out += text.slice(kept, open);
    kept = close + 1;
  }
  return out + text.slice(kept);
}

/** `\s` of a regex: ASCII whitespace, NBSP, BOM and the Unicode space separators and line terminators. */
function isSpace(code: number): boolean {
  if (code <= 0x20) return code === 0x20 || (code >= 0x09 && code <= 0x0d);
  if (code < 0xa0) return false;
  return (
    code === 0xa0 ||
    code === 0x1680 ||
    (code >= 0x2000 && code <= 0x200a) ||
    code === 0x2028 ||
    code === 0x2029 ||
    code === 0x202f ||
    code === 0x205f ||
    code === 0x3000 ||
    code === 0xfeff
  );
}

/** Runs of whitespace made one space, and the ends trimmed (`replace(/\s+/g, ' ').trim()`, in one pass). */
export function collapseSpace(text: string): string {
  let out = '';
  // Where the current word started; -1 inside a run of whitespace.
  let word = -1;
  for (let at = 0; at <= text.length; at++) {
    const space = at === text.length || isSpace(text.charCodeAt(at));
    if (!space && word === -1) word = at;
    if (space && word !== -1) {
      out += (out === '' ? '' : ' ') + text.slice(word, at);
      word = -1;
    }
  }
  return out;
}

/** The first line (split at LF, CRLF included) that is not blank, trimmed; undefined when every line is blank. */
export function firstLine(text: string): string | undefined {
  for (let start = 0; start <= text.length;) {
    const end = text.indexOf('\n', start);
    const line = text.slice(start, end === -1 ? text.length : end).trim();
    if (line !== '') return line;
    if (end === -1) return undefined;
    start = end + 1;
  }
  return undefined;
}
