/**
 * Config problems and where they are: each check reports an {@link Issue}
 * (a path into the data and a message); {@link locateIssues} turns issues
 * into {@link ConfigProblem}s with the file's 1-based line and column, read
 * from the `yaml` parser's node ranges, and sorts them by position.
 */
import { isMap, isPair, isScalar, isSeq, type Document, type LineCounter, type Node } from 'yaml';

export type PathSegment = string | number;

/**
 * One thing wrong with a config. `at` says which part of the YAML to point
 * at: the key itself (an unknown key), its value (a bad value, the default),
 * or the map that should hold it (a missing key).
 */
export interface Issue {
  readonly path: readonly PathSegment[];
  readonly message: string;
  readonly at?: 'key' | 'value' | 'parent';
}

/** A located problem, printed as `FILE:LINE:COL: path.to.key: message` (SPEC §1). */
export interface ConfigProblem {
  readonly file: string;
  readonly line: number;
  readonly col: number;
  readonly path: string;
  readonly message: string;
}

const PLAIN_KEY = /^[A-Za-z_$][A-Za-z0-9_$-]*$/;

/** `['routes', 0, 'retry', 'maxRetries']` → `routes[0].retry.maxRetries`; the empty path is `(root)`. */
export function formatPath(path: readonly PathSegment[]): string {
  if (path.length === 0) return '(root)';
  let out = '';
  for (const segment of path) {
    if (typeof segment === 'number') out += `[${segment}]`;
    else if (PLAIN_KEY.test(segment)) out += out === '' ? segment : `.${segment}`;
    else out += `[${JSON.stringify(segment)}]`;
  }
  return out;
}

export function formatProblem(problem: ConfigProblem): string {
  return `${problem.file}:${problem.line}:${problem.col}: ${problem.path}: ${problem.message}`;
}

/** A problem with the file as a whole (unreadable, not YAML), placed at 1:1 unless a position is known. */
export function fileProblem(file: string, path: string, message: string, line = 1, col = 1): ConfigProblem {
  return { file, line, col, path, message };
}

function keyOf(pair: unknown): unknown {
  if (!isPair(pair)) return undefined;
  return isScalar(pair.key) ? pair.key.value : pair.key;
}

/** The offset in the source of the node a path names, per `at`; falls back to the deepest node found. */
function offsetOf(doc: Document, path: readonly PathSegment[], at: 'key' | 'value'): number {
  let node: unknown = doc.contents;
  let keyNode: Node | null = null;
  let lastFound = (doc.contents as Node | null)?.range?.[0] ?? 0;
  for (const segment of path) {
    if (isMap(node)) {
      const pair = node.items.find((item) => String(keyOf(item)) === String(segment));
      if (!pair) return lastFound;
      keyNode = (pair.key as Node | null) ?? null;
      node = pair.value;
      lastFound = keyNode?.range?.[0] ?? lastFound;
      const valueStart = (pair.value as Node | null)?.range?.[0];
      if (valueStart !== undefined && at === 'value') lastFound = valueStart;
    } else if (isSeq(node) && typeof segment === 'number') {
      const item = node.items[segment] as Node | undefined;
      if (!item) return lastFound;
      keyNode = null;
      node = item;
      lastFound = item.range?.[0] ?? lastFound;
    } else {
      return lastFound;
    }
  }
  if (at === 'key' && keyNode?.range) return keyNode.range[0];
  return lastFound;
}

export function locateIssues(
  issues: readonly Issue[],
  file: string,
  doc: Document,
  lineCounter: LineCounter,
): ConfigProblem[] {
  const seen = new Set<string>();
  const problems: ConfigProblem[] = [];
  for (const issue of issues) {
    const at = issue.at ?? 'value';
    const offset = at === 'parent' ? offsetOf(doc, issue.path.slice(0, -1), 'value') : offsetOf(doc, issue.path, at);
    const { line, col } = lineCounter.linePos(offset);
    const problem = { file, line, col, path: formatPath(issue.path), message: issue.message };
    const id = formatProblem(problem);
    if (seen.has(id)) continue;
    seen.add(id);
    problems.push(problem);
  }
  return sortProblems(problems);
}

export function sortProblems(problems: ConfigProblem[]): ConfigProblem[] {
  return problems.sort((a, b) => a.line - b.line || a.col - b.col || a.path.localeCompare(b.path));
}
