/** A provider's error body, parsed once, as the dialects read it. */
export type ParsedBody =
  | { readonly kind: 'json'; readonly value: unknown; readonly text: string }
  | { readonly kind: 'xml' | 'html' | 'text'; readonly text: string };

/** What a dialect pulls out of a body: the provider's own message and code. */
export interface ProviderError {
  readonly message?: string;
  readonly code?: string;
}

export interface Dialect {
  readonly name: string;
  /** The provider's message and code, or undefined when the body is not in this dialect. */
  extract(body: ParsedBody, contentType: string): ProviderError | undefined;
}

export type Json = Record<string, unknown>;

export function isObject(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** A code as a string, whatever type the provider used. */
export function codeOf(value: unknown): string | undefined {
  if (typeof value === 'string' && value !== '') return value;
  if (typeof value === 'number' && Number.isFinite(value)) return String(value);
  return undefined;
}

export function text(value: unknown): string | undefined {
  return typeof value === 'string' && value.trim() !== '' ? value.trim() : undefined;
}
