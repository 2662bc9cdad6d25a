import { codeOf, isObject, text, type Dialect } from './types.js';

/** RFC 9457 problem details: `detail` or `title`, and `type` (or a `code` extension). */
export const problemJson: Dialect = {
  name: 'problem+json',
  extract(body, contentType) {
    if (body.kind !== 'json' || !isObject(body.value)) return undefined;
    const value = body.value;
    if (!contentType.includes('problem+json') && !(typeof value.type === 'string' && typeof value.title === 'string'))
      return undefined;
    return { message: text(value.detail) ?? text(value.title), code: codeOf(value.code) ?? codeOf(value.type) };
  },
};
