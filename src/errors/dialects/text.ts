import { collapseSpace, elementText, firstLine, stripTags } from './scan.js';
import type { Dialect } from './types.js';

/** HTML: the page's `<title>` (or first heading), found by scans linear in the page's size (scan.ts). */
export const html: Dialect = {
  name: 'html',
  extract(body) {
    if (body.kind !== 'html') return undefined;
    const content = elementText(body.text, 'title') ?? elementText(body.text, 'h1');
    const message = content === undefined ? '' : collapseSpace(stripTags(content));
    return { message: message || undefined };
  },
};

/** Anything else: the first non-empty line. */
export const plainText: Dialect = {
  name: 'text',
  extract(body) {
    const line = firstLine(body.text);
    return { message: line ? line.slice(0, 500) : undefined };
  },
};
