/**
 * Checks parsed YAML against the schema with ajv and turns ajv's errors into
 * {@link Issue}s a person can act on: the path of the key, a sentence that
 * names what was expected and what was found, and a did-you-mean for a
 * misspelled key or word.
 */
import { createRequire } from 'node:module';
import type { ErrorObject, ValidateFunction } from 'ajv';
import { ajvFormats, type AjvFormat } from './ajv-setup.js';
import { describeFormatError } from './formats.js';
import type { Issue, PathSegment } from './problems.js';
import { suggest } from './suggest.js';

let validateFile: ValidateFunction | undefined;
/** Makes the validator instead of the build's standalone code (see {@link useValidator}). */
let makeValidator: (() => ValidateFunction) | undefined;

/**
 * The validator: the build's standalone code (standalone.ts) next to this
 * module, or one compiled by {@link useValidator}'s caller when running
 * from the sources.
 */
function validator(): ValidateFunction {
  if (validateFile) return validateFile;
  if (makeValidator) return (validateFile = makeValidator());
  let create: (formats: Record<string, AjvFormat>) => ValidateFunction;
  try {
    create = createRequire(import.meta.url)('./validate-file.cjs') as typeof create;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'MODULE_NOT_FOUND') throw error;
    throw new Error(
      'dist/config/validate-file.cjs is missing: build with `npm run build` (tsc alone does not write it)',
    );
  }
  validateFile = create(ajvFormats());
  return validateFile;
}

/**
 * Makes the validator with `make` (on first use) instead of loading the build's standalone one:
 * validate-compile.ts, for the sources.
 */
export function useValidator(make: () => ValidateFunction): void {
  makeValidator = make;
  validateFile = undefined;
}

/** Every schema violation in `data`, in no particular order. */
export function checkSchema(data: unknown): Issue[] {
  const validate = validator();
  if (validate(data)) return [];
  return translate(validate.errors ?? [], data);
}

function decodePointer(pointer: string, root: unknown): PathSegment[] {
  if (pointer === '') return [];
  const path: PathSegment[] = [];
  let node: unknown = root;
  for (const raw of pointer.slice(1).split('/')) {
    const segment = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    if (Array.isArray(node)) {
      path.push(Number(segment));
      node = node[Number(segment)];
    } else {
      path.push(segment);
      node = node && typeof node === 'object' ? (node as Record<string, unknown>)[segment] : undefined;
    }
  }
  return path;
}

function jsonType(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  if (typeof value === 'number') return Number.isInteger(value) ? 'integer' : 'number';
  return typeof value;
}

const TYPE_WORDS: Record<string, string> = {
  integer: 'a whole number',
  number: 'a number',
  string: 'a string',
  boolean: 'true or false',
  object: 'a map of keys',
  array: 'a list',
  null: 'null',
};

/** How a found value reads in a message: `the string "3"`, `a list`, `nothing (an empty value)`. */
export function describeValue(value: unknown): string {
  if (value === null || value === undefined) return 'nothing (an empty value)';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a map of keys';
  if (typeof value === 'string')
    return `the string ${JSON.stringify(value.length > 60 ? `${value.slice(0, 57)}...` : value)}`;
  if (typeof value === 'boolean') return `the boolean ${value}`;
  return `the number ${String(value)}`;
}

const UNIT_FORMATS = new Set(['duration', 'duration-or-zero', 'size', 'size-or-zero', 'rate', 'share']);
const YAML_11_BOOLEANS = new Set([
  'yes',
  'no',
  'on',
  'off',
  'y',
  'n',
  'true',
  'false',
  'True',
  'False',
  'TRUE',
  'FALSE',
  'Yes',
  'No',
]);

function typeMessage(error: ErrorObject): string {
  const expected = ([] as string[]).concat(error.schema as string | string[]);
  const words = expected.map((type) => TYPE_WORDS[type] ?? type);
  const value: unknown = error.data;
  let message = `must be ${words.join(' or ')}, got ${describeValue(value)}`;
  const parent = error.parentSchema as { format?: string } | undefined;
  if (typeof value === 'string' && expected.includes('boolean') && YAML_11_BOOLEANS.has(value)) {
    message += ' (write true or false; YAML 1.2 reads yes/no/on/off as strings)';
  } else if (
    typeof value === 'string' &&
    (expected.includes('integer') || expected.includes('number')) &&
    value.trim() !== '' &&
    !Number.isNaN(Number(value))
  ) {
    message += ' (remove the quotes: a number is not a string)';
  } else if (typeof value === 'number' && parent?.format === 'condition') {
    message += ` (status codes are written as strings: "${value}")`;
  } else if (typeof value === 'number' && parent?.format && UNIT_FORMATS.has(parent.format)) {
    message += ` (give a unit, like ${parent.format.startsWith('duration') ? '2s' : parent.format.startsWith('size') ? '1MiB' : parent.format === 'rate' ? '25/s' : '50%'})`;
  } else if (typeof value === 'number' && expected.includes('integer') && !Number.isInteger(value)) {
    message = `must be a whole number, got ${value}`;
  }
  return message;
}

function knownKeys(schema: unknown): string[] {
  const properties = (schema as { properties?: Record<string, unknown> } | undefined)?.properties;
  return properties ? Object.keys(properties) : [];
}

function messageFor(error: ErrorObject): Issue['message'] {
  const params = error.params as Record<string, unknown>;
  switch (error.keyword) {
    case 'type':
      return typeMessage(error);
    case 'const':
      if (error.instancePath === '/version') {
        return `unsupported config version ${JSON.stringify(error.data)}: this Breakwater reads version 1`;
      }
      return `must be ${JSON.stringify(params.allowedValue)}, got ${describeValue(error.data)}`;
    case 'enum': {
      const allowed = (params.allowedValues as unknown[]).map(String);
      const close = typeof error.data === 'string' ? suggest(error.data, allowed) : undefined;
      return `must be one of ${allowed.join(', ')}; got ${describeValue(error.data)}${close ? `; did you mean "${close}"?` : ''}`;
    }
    case 'format':
      return describeFormatError(String(params.format), error.data);
    case 'minimum':
    case 'maximum':
    case 'exclusiveMinimum':
    case 'exclusiveMaximum': {
      const words: Record<string, string> = {
        minimum: 'at least',
        maximum: 'at most',
        exclusiveMinimum: 'more than',
        exclusiveMaximum: 'less than',
      };
      return `must be ${words[error.keyword]} ${String(params.limit)}, got ${String(error.data)}`;
    }
    case 'minItems':
      return `must have at least ${String(params.limit)} ${params.limit === 1 ? 'entry' : 'entries'}`;
    case 'uniqueItems':
      return `lists ${JSON.stringify((error.data as unknown[])[params.j as number])} twice`;
    case 'minLength':
      // Never the value: a short admin token is still a secret.
      return Number(params.limit) > 1
        ? `must be at least ${String(params.limit)} characters long`
        : 'must not be empty';
    default:
      return error.message ?? `fails the ${error.keyword} check`;
  }
}

function translate(errors: readonly ErrorObject[], root: unknown): Issue[] {
  const dropped = new Set<ErrorObject>();
  const extra: Issue[] = [];

  // An anyOf (only `retry.methods` has one) reports every branch's errors.
  // Keep the branch whose type matches the value; if none does, say what
  // was expected in one sentence.
  for (const anyOf of errors.filter((error) => error.keyword === 'anyOf')) {
    dropped.add(anyOf);
    const branches = anyOf.schema as { type?: string }[];
    const inside = errors.filter((error) => error.schemaPath.startsWith(`${anyOf.schemaPath}/`));
    const kind = jsonType(anyOf.data);
    const matching = branches.findIndex(
      (branch) => branch.type === kind || (branch.type === 'number' && kind === 'integer'),
    );
    for (const error of inside) {
      const branch = Number(error.schemaPath.slice(anyOf.schemaPath.length + 1).split('/')[0]);
      if (matching === -1 || branch !== matching) dropped.add(error);
    }
    if (matching === -1) {
      const words = branches.map((branch) =>
        (branch as { enum?: string[] }).enum
          ? (branch as { enum: string[] }).enum.map((v) => JSON.stringify(v)).join(' or ')
          : (TYPE_WORDS[branch.type ?? ''] ?? 'a value'),
      );
      extra.push({
        path: decodePointer(anyOf.instancePath, root),
        message: `must be ${words.join(' or ')}, got ${describeValue(anyOf.data)}`,
      });
    }
  }

  const issues: Issue[] = [...extra];
  for (const error of errors) {
    if (dropped.has(error)) continue;
    const path = decodePointer(error.instancePath, root);
    const params = error.params as Record<string, unknown>;
    if (error.keyword === 'additionalProperties') {
      const key = String(params.additionalProperty);
      const known = knownKeys(error.parentSchema);
      const close = suggest(key, known);
      const hint = close ? `; did you mean "${close}"?` : known.length ? ` (known keys: ${known.join(', ')})` : '';
      issues.push({ path: [...path, key], at: 'key', message: `unknown key "${key}"${hint}` });
    } else if (error.keyword === 'required') {
      issues.push({
        path: [...path, String(params.missingProperty)],
        at: 'parent',
        message: 'is required but missing',
      });
    } else if (error.keyword === 'propertyNames') {
      continue; // the nested `format` error on the same key carries the message
    } else if (error.propertyName !== undefined) {
      issues.push({ path: [...path, error.propertyName], at: 'key', message: messageFor(error) });
    } else {
      issues.push({ path, message: messageFor(error) });
    }
  }
  return issues;
}
