/**
 * Provider error dialects, tried in order: the specific shapes first, the
 * generic ones last. A body is parsed once by its content type and shape; a
 * body that claims JSON but is not valid JSON is read as text.
 */
import { awsJson, awsXml } from './aws.js';
import { problemJson } from './problem-json.js';
import { genericJson, github, google, openai, stripe, twilio } from './providers.js';
import { slack } from './slack.js';
import { html, plainText } from './text.js';
import type { Dialect, ParsedBody, ProviderError } from './types.js';

export type { ParsedBody, ProviderError } from './types.js';

const DIALECTS: readonly Dialect[] = [
  problemJson,
  awsJson,
  slack,
  stripe,
  openai,
  google,
  twilio,
  github,
  genericJson,
  awsXml,
  html,
  plainText,
];

/**
 * A body parsed by its content type and shape. Linear in its size whatever
 * its bytes (SPEC §20.5): JSON.parse, `includes` and anchored patterns of
 * literals only; the dialects then read the parsed value or scan the text
 * (scan.ts), never with a backtracking pattern.
 */
export function parseBody(text: string, contentType: string): ParsedBody {
  const trimmed = text.trimStart();
  if (contentType.includes('json') || trimmed.startsWith('{') || trimmed.startsWith('[')) {
    try {
      return { kind: 'json', value: JSON.parse(text) as unknown, text };
    } catch {
      // not JSON, whatever the header said: read it as text below
    }
  }
  if (contentType.includes('xml') || trimmed.startsWith('<?xml') || /^<Error[\s>]/.test(trimmed))
    return { kind: 'xml', text };
  if (contentType.includes('html') || /^<(!doctype|html)/i.test(trimmed)) return { kind: 'html', text };
  return { kind: 'text', text };
}

/** The provider's message and code, and which dialect found them. */
export function readProviderError(body: ParsedBody, contentType: string): ProviderError & { dialect: string } {
  for (const dialect of DIALECTS) {
    const found = dialect.extract(body, contentType);
    if (found && (found.message !== undefined || found.code !== undefined)) return { ...found, dialect: dialect.name };
  }
  return { dialect: 'none' };
}

/**
 * An error body's text, parsed, and what the provider said in it (dialect `none` for an empty body): one reading
 * for the rules, normalize and the journal.
 */
export function readErrorText(
  text: string,
  contentType: string,
): { parsed: ParsedBody; said: ProviderError & { dialect: string } } {
  const parsed = parseBody(text, contentType);
  return { parsed, said: text.trim() === '' ? { dialect: 'none' } : readProviderError(parsed, contentType) };
}
