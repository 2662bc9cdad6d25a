import { isObject, text, type Dialect } from './types.js';

/** Slack Web API: `{ "ok": false, "error": "channel_not_found" }`: the error is both code and message. */
export const slack: Dialect = {
  name: 'slack',
  extract(body) {
    if (body.kind !== 'json' || !isObject(body.value) || body.value.ok !== false) return undefined;
    const error = text(body.value.error);
    return error ? { message: error, code: error } : undefined;
  },
};
