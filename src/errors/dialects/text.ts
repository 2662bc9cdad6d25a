import type { Dialect } from './types.js';

/** HTML: the page's `<title>` (or first heading). */
export const html: Dialect = {
  name: 'html',
  extract(body) {
    if (body.kind !== 'html') return undefined;
    const match = /<title[^>]*>([\s\S]*?)<\/title>/i.exec(body.text) ?? /<h1[^>]*>([\s\S]*?)<\/h1>/i.exec(body.text);
    const message = match?.[1]
      ?.replace(/<[^>]+>/g, '')
      .replace(/\s+/g, ' ')
      .trim();
    return { message: message || undefined };
  },
};

/** Anything else: the first non-empty line. */
export const plainText: Dialect = {
  name: 'text',
  extract(body) {
    const line = body.text.split(/\r?\n/).find((candidate) => candidate.trim() !== '');
    return { message: line ? line.trim().slice(0, 500) : undefined };
  },
};
