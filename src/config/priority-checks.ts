/**
 * Priority classes in the config (SPEC §13): unique class names, a default
 * and each route's `priority` naming one of them.
 */
import { isObject } from './json.js';
import type { Issue } from './problems.js';
import { suggest } from './suggest.js';

/** A route's `priority` names a class of `priorities`. */
export function checkRoutePriority(
  priority: unknown,
  index: number,
  classes: readonly string[],
  issues: Issue[],
): void {
  if (typeof priority !== 'string' || classes.includes(priority)) return;
  const close = suggest(priority, classes);
  issues.push({
    path: ['routes', index, 'priority'],
    message:
      classes.length === 0
        ? 'names a priority class, but there is no priorities section'
        : `unknown priority class "${priority}"${close ? `; did you mean "${close}"?` : ` (classes: ${classes.join(', ')})`}`,
  });
}

/** `priorities` (SPEC §13): unique class names, a default that names one. Returns the class names. */
export function checkPriorities(priorities: unknown, issues: Issue[]): string[] {
  if (!isObject(priorities) || !Array.isArray(priorities.classes)) return [];
  const names: string[] = [];
  priorities.classes.forEach((entry: unknown, index) => {
    const name = isObject(entry) ? entry.name : undefined;
    if (typeof name !== 'string') return;
    if (names.includes(name))
      issues.push({
        path: ['priorities', 'classes', index, 'name'],
        message: `duplicate class "${name}": class names must be unique`,
      });
    names.push(name);
  });
  const fallback = priorities.default;
  if (typeof fallback === 'string' && !names.includes(fallback)) {
    const close = suggest(fallback, names);
    issues.push({
      path: ['priorities', 'default'],
      message: `unknown priority class "${fallback}"${close ? `; did you mean "${close}"?` : ` (classes: ${names.join(', ')})`}`,
    });
  }
  return names;
}
