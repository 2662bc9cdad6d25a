/**
 * The config validator compiled at load time with ajv, from the TypeBox
 * schema: what runs from the sources (tests), where the build's
 * standalone validator (standalone.ts) does not exist. It loads ajv's
 * compiler and TypeBox, which a built process never does.
 */
import { Ajv, type ValidateFunction } from 'ajv';
import { AJV_OPTIONS, ajvFormats } from './ajv-setup.js';
import { ConfigFileSchema } from './schema.js';

export function compileValidator(): ValidateFunction {
  const ajv = new Ajv(AJV_OPTIONS);
  for (const [name, format] of Object.entries(ajvFormats())) ajv.addFormat(name, format);
  return ajv.compile(ConfigFileSchema);
}
