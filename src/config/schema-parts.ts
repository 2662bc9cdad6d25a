/**
 * The building blocks of the config schema (schema.ts): TypeBox helpers that
 * emit the JSON Schema shapes ajv reports clearly (closed objects, one
 * `type` array for nullables, one `enum` for word lists), and the string
 * forms with a grammar, checked by the ajv formats of formats.ts.
 */
import { Type, type Static, type TSchema } from '@sinclair/typebox';

/** An object that rejects unknown keys; every property optional unless wrapped in Required. */
export function Obj<T extends Record<string, TSchema>>(properties: T, options: Record<string, unknown> = {}) {
  return Type.Object(properties, { additionalProperties: false, ...options });
}
export const Opt = Type.Optional;

/** `T | null`, as one JSON Schema `type` array so that ajv reports one clear error, not an anyOf. */
export function OrNull<T extends TSchema>(schema: T) {
  const type = (schema as { type?: string }).type;
  if (!type) throw new Error('OrNull needs a schema with a single type');
  return Type.Unsafe<Static<T> | null>({ ...schema, type: [type, 'null'] });
}

/** A string enum as one `enum` keyword (TypeBox's union of literals would be an anyOf). */
export function OneOf<const T extends readonly string[]>(values: T, options: Record<string, unknown> = {}) {
  return Type.Unsafe<T[number]>({ type: 'string', enum: [...values], ...options });
}

export function Fmt(format: string, options: Record<string, unknown> = {}) {
  return Type.String({ format, ...withoutUndefined(options) });
}

export function withoutUndefined(options: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(options).filter(([, value]) => value !== undefined));
}

export const Duration = (description: string, def?: string) => Fmt('duration', { description, default: def });
export const DurationOrZero = (description: string, def?: string) =>
  Fmt('duration-or-zero', { description, default: def });
export const Size = (description: string, def?: string) => Fmt('size', { description, default: def });
export const SizeOrZero = (description: string, def?: string) => Fmt('size-or-zero', { description, default: def });
export const Rate = (description: string, def?: string) => Fmt('rate', { description, default: def });
export const Share = (description: string, def?: string) => Fmt('share', { description, default: def });
export const Bool = (description: string, def?: boolean) =>
  Type.Boolean(withoutUndefined({ description, default: def }));
export const Port = (description: string, def?: number) =>
  Type.Integer(withoutUndefined({ minimum: 0, maximum: 65535, description, default: def }));
export const Conditions = (description: string, def: readonly string[]) =>
  Type.Array(Fmt('condition'), { description, default: [...def], uniqueItems: true });
export const HeaderNames = (description: string) => Type.Array(Fmt('header-name'), { description, default: [] });
export const HeaderValues = (description: string) =>
  Type.Record(Type.String(), Type.String(), {
    description,
    default: {},
    propertyNames: { format: 'header-name' },
  });

export const NAME_FORMAT = 'name';
