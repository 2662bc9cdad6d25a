/**
 * The JSON dialects of the big providers. Each recognises its own shape;
 * `genericJson` catches the common `{message}` / `{error: ...}` forms last.
 */
import { codeOf, isObject, text, type Dialect } from './types.js';

/** Stripe: `{ "error": { "type", "code", "message", "doc_url" } }`. */
export const stripe: Dialect = {
  name: 'stripe',
  extract(body) {
    if (body.kind !== 'json' || !isObject(body.value) || !isObject(body.value.error)) return undefined;
    const error = body.value.error;
    if (
      typeof error.type !== 'string' ||
      !error.type.endsWith('_error') ||
      !('doc_url' in error || 'request_log_url' in error || 'decline_code' in error)
    )
      return undefined;
    return { message: text(error.message), code: codeOf(error.code) ?? codeOf(error.type) };
  },
};

/** OpenAI: `{ "error": { "message", "type", "param", "code" } }`: code, else type. */
export const openai: Dialect = {
  name: 'openai',
  extract(body) {
    if (body.kind !== 'json' || !isObject(body.value) || !isObject(body.value.error)) return undefined;
    const error = body.value.error;
    if (!('param' in error) || typeof error.message !== 'string') return undefined;
    return { message: text(error.message), code: codeOf(error.code) ?? codeOf(error.type) };
  },
};

/** Google APIs: `{ "error": { "code": 404, "message", "status": "NOT_FOUND" } }`: the status names it. */
export const google: Dialect = {
  name: 'google',
  extract(body) {
    if (body.kind !== 'json' || !isObject(body.value) || !isObject(body.value.error)) return undefined;
    const error = body.value.error;
    if (typeof error.status !== 'string' || typeof error.code !== 'number') return undefined;
    return { message: text(error.message), code: error.status };
  },
};

/** GitHub: `{ "message", "documentation_url", "errors": [...] }`. */
export const github: Dialect = {
  name: 'github',
  extract(body) {
    if (body.kind !== 'json' || !isObject(body.value)) return undefined;
    const value = body.value;
    if (typeof value.message !== 'string' || !('documentation_url' in value)) return undefined;
    const first = Array.isArray(value.errors) && isObject(value.errors[0]) ? value.errors[0] : undefined;
    const detail = first
      ? (text(first.message) ??
        [first.resource, first.field, first.code].filter((part) => typeof part === 'string').join(' '))
      : undefined;
    return {
      message: detail ? `${value.message}: ${detail}` : text(value.message),
      code: first ? codeOf(first.code) : undefined,
    };
  },
};

/** Twilio: `{ "code": 20404, "message", "more_info", "status" }`: the code is a number. */
export const twilio: Dialect = {
  name: 'twilio',
  extract(body) {
    if (body.kind !== 'json' || !isObject(body.value)) return undefined;
    const value = body.value;
    if (typeof value.code !== 'number' || typeof value.message !== 'string' || !('more_info' in value))
      return undefined;
    return { message: text(value.message), code: codeOf(value.code) };
  },
};

/**
 * The usual shapes of everyone else: `{message, code}`, `{error: "text"}`, `{error: {message, code}}`, `{errors:
 * [{message}]}`.
 */
export const genericJson: Dialect = {
  name: 'json',
  extract(body) {
    if (body.kind !== 'json' || !isObject(body.value)) return undefined;
    const value = body.value;
    if (isObject(value.error))
      return { message: text(value.error.message), code: codeOf(value.error.code) ?? codeOf(value.error.type) };
    if (typeof value.error === 'string')
      return { message: text(value.error_description) ?? text(value.error), code: codeOf(value.error) };
    if (Array.isArray(value.errors) && isObject(value.errors[0]))
      return { message: text(value.errors[0].message), code: codeOf(value.errors[0].code) };
    return { message: text(value.message) ?? text(value.detail), code: codeOf(value.code) };
  },
};
