/**
 * Loading a config file: read, parse YAML (keeping node positions), replace
 * `${env:NAME}` in parsed string values, check the schema and the cross-key
 * rules, and resolve into a frozen {@link Config}. Every problem of a file is
 * reported in one run, each with its line and column (SPEC §1).
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { LineCounter, parseDocument, YAMLError } from 'yaml';
import {
  fileProblem,
  formatPath,
  locateIssues,
  sortProblems,
  type ConfigProblem,
  type Issue,
  type PathSegment,
} from './problems.js';
import { crossCheck } from './cross-check.js';
import { checkCredentials, type SecretValues } from './credential-checks.js';
import { resolveConfig } from './resolve.js';
import type { ConfigFile } from './schema.js';
import { literalSecrets, REDACTED, scrubProblems, type SecretText } from './secrets.js';
import type { Config } from './types.js';
import { checkSchema } from './validate.js';
import { checkWireValues } from './wire-values.js';

export interface LoadedConfig {
  readonly config: Config;
  /** The file it came from, as given. */
  readonly file: string;
  /** Paths (as in messages) of the values that came from `${env:…}`: secrets for redaction. */
  readonly envPaths: ReadonlySet<string>;
  /** The credentials' secrets as read at load (SPEC §18), by reference: never part of the config. */
  readonly secrets: SecretValues;
}

export type LoadResult =
  | { readonly ok: true; readonly loaded: LoadedConfig }
  | { readonly ok: false; readonly problems: readonly ConfigProblem[] };

export interface LoadOptions {
  /** Environment for `${env:NAME}`; `process.env` by default. */
  readonly env?: NodeJS.ProcessEnv;
}

const ENV_REFERENCE = /\$\{env:([^}]*)\}/g;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** What substitution found: the paths of the values it replaced, and their secrets as a message may quote them. */
interface Substitution {
  readonly issues: Issue[];
  readonly envPaths: Set<string>;
  readonly secrets: SecretText[];
}

/** One string value: each reference replaced; the value and every variable's text become secrets quoted as written. */
function substituteString(value: string, env: NodeJS.ProcessEnv, at: PathSegment[], found: Substitution): string {
  found.envPaths.add(formatPath(at));
  const resolved = value.replace(ENV_REFERENCE, (reference, name: string) => {
    if (!ENV_NAME.test(name)) {
      found.issues.push({
        path: [...at],
        message: `${reference} is not a valid reference: write \${env:NAME} with a variable name`,
      });
      return reference;
    }
    const text = env[name];
    if (text === undefined) {
      found.issues.push({
        path: [...at],
        message: `environment variable ${name} is not set (referenced as ${reference})`,
      });
      return reference;
    }
    found.secrets.push({ value: text, shown: reference, path: null });
    return text;
  });
  if (resolved !== value) found.secrets.push({ value: resolved, shown: value, path: null });
  return resolved;
}

/**
 * Replaces `${env:NAME}` in every string value (keys are left alone), after
 * parsing: a variable's value is never read as YAML, and positions stay those
 * of the file.
 */
function substituteEnv(value: unknown, env: NodeJS.ProcessEnv, at: PathSegment[], found: Substitution): unknown {
  if (typeof value === 'string') return value.includes('${env:') ? substituteString(value, env, at, found) : value;
  if (Array.isArray(value)) return value.map((item, index) => substituteEnv(item, env, [...at, index], found));
  if (value && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [key, item] of Object.entries(value)) out[key] = substituteEnv(item, env, [...at, key], found);
    return out;
  }
  return value;
}

function describeTopLevel(value: unknown): string {
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'string') return `the string ${JSON.stringify(value.slice(0, 40))}`;
  return `the ${typeof value} ${String(value)}`;
}

/** Parses and checks config text. `file` names it in messages; relative paths inside resolve against `baseDir`. */
export function parseConfig(text: string, file: string, options: LoadOptions & { baseDir?: string } = {}): LoadResult {
  const env = options.env ?? process.env;
  const baseDir = options.baseDir ?? path.dirname(path.resolve(file));
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true, strict: true, version: '1.2' });

  if (doc.errors.length > 0) {
    const problems = doc.errors.map((error: YAMLError) => {
      const { line, col } = lineCounter.linePos(error.pos[0]);
      const message = error.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '');
      return fileProblem(file, '(yaml)', `invalid YAML: ${message}`, line, col);
    });
    return { ok: false, problems: sortProblems(problems) };
  }

  let data: unknown;
  try {
    data = doc.toJS({ maxAliasCount: 100 });
  } catch (error) {
    return { ok: false, problems: [fileProblem(file, '(yaml)', `invalid YAML: ${(error as Error).message}`)] };
  }
  if (data === null || data === undefined) {
    return {
      ok: false,
      problems: [fileProblem(file, '(root)', 'the file is empty: a config needs at least "version: 1" and one route')],
    };
  }
  if (typeof data !== 'object' || Array.isArray(data)) {
    const at = lineCounter.linePos(doc.contents?.range?.[0] ?? 0);
    return {
      ok: false,
      problems: [
        fileProblem(
          file,
          '(root)',
          `must be a map of keys (version, upstreams, routes, ...), got ${describeTopLevel(data)}`,
          at.line,
          at.col,
        ),
      ],
    };
  }

  const found: Substitution = { issues: [], envPaths: new Set(), secrets: [] };
  const substituted = substituteEnv(data, env, [], found);
  const credentials = checkCredentials(substituted, baseDir, env);
  const issues = [
    ...found.issues,
    ...checkSchema(substituted),
    ...crossCheck(substituted, baseDir),
    ...credentials.issues,
    ...checkWireValues(substituted),
  ];
  if (issues.length > 0) {
    // SPEC §7: a problem quotes a secret as written or as <redacted>, never the value.
    return {
      ok: false,
      problems: scrubProblems(locateIssues(issues, file, doc, lineCounter), [
        ...found.secrets,
        ...[...credentials.values.values()].map((value) => ({ value, shown: REDACTED, path: null })),
        ...literalSecrets(substituted),
      ]),
    };
  }

  const config = resolveConfig(substituted as ConfigFile, baseDir);
  return { ok: true, loaded: { config, file, envPaths: found.envPaths, secrets: credentials.values } };
}

/** Reads and checks a config file; unreadable files are problems too, never exceptions. */
export async function loadConfig(file: string, options: LoadOptions = {}): Promise<LoadResult> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const reason =
      code === 'ENOENT'
        ? 'no such file'
        : code === 'EISDIR'
          ? 'is a directory, not a config file'
          : code === 'EACCES'
            ? 'permission denied'
            : (error as Error).message;
    return { ok: false, problems: [fileProblem(file, '(file)', `cannot read the config: ${reason}`)] };
  }
  return parseConfig(text, file, options);
}
