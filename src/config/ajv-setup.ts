/**
 * How the config schema is compiled: ajv's options and the formats, shared
 * by the build-time standalone validator (standalone.ts) and the
 * compile-at-load fallback (validate-compile.ts), so both check the same.
 */
import type { Options } from 'ajv';
import { FORMATS } from './formats.js';

export const AJV_OPTIONS: Options = {
  allErrors: true,
  strict: true,
  allowUnionTypes: true,
  verbose: true,
  coerceTypes: false,
  useDefaults: false,
};

export interface AjvFormat {
  readonly type: 'string';
  readonly validate: (value: string) => boolean;
}

/** Every format of the config file as ajv takes it: yes/no from the same check that words the message. */
export function ajvFormats(): Record<string, AjvFormat> {
  const formats: Record<string, AjvFormat> = {};
  for (const [name, check] of Object.entries(FORMATS))
    formats[name] = { type: 'string', validate: (value: string) => check(value) === null };
  return formats;
}
