/**
 * The cross-checks (cross-check.ts) of an upstream's pacing dimensions
 * (SPEC §15): what `pacing.cost` charges must be a dimension the chosen
 * headers announce or `quotaHeaders` maps.
 */
import { DEFAULTS, DIALECT_DIMENSIONS } from './defaults.js';
import { isObject, type Json } from './json.js';
import type { Issue, PathSegment } from './problems.js';

/** The dimensions the `anthropic` preset charges. */
const ANTHROPIC_DIMENSIONS = ['tokens', 'input-tokens', 'output-tokens'];

/**
 * `pacing.cost` and `quotaHeaders` (SPEC §15): no cost for requests (1 per attempt), no dimension the headers
 * never announce, one mapping per dimension, and `custom` reads only mapped headers.
 */
export function checkPacingDimensions(upstream: string, pacing: Json, issues: Issue[]): void {
  const at = (...keys: PathSegment[]): PathSegment[] => ['upstreams', upstream, 'pacing', ...keys];
  const dialect = typeof pacing.headers === 'string' ? pacing.headers : DEFAULTS.upstream.pacing.headers;
  const mapped = Array.isArray(pacing.quotaHeaders) ? pacing.quotaHeaders.filter(isObject) : [];
  const mappedNames = mapped.map((entry) => entry.dimension).filter((name) => typeof name === 'string');
  mappedNames.forEach((name, index) => {
    if (mappedNames.indexOf(name) !== index)
      issues.push({ path: at('quotaHeaders', index, 'dimension'), message: `dimension "${name}" is mapped twice` });
  });
  if (dialect === 'custom' && mapped.length === 0)
    issues.push({
      path: at('headers'),
      message: 'headers: custom reads only pacing.quotaHeaders: map at least one dimension there',
    });
  const cost = pacing.cost;
  const costNames =
    cost === 'openai'
      ? ['tokens']
      : cost === 'anthropic'
        ? [...ANTHROPIC_DIMENSIONS]
        : isObject(cost)
          ? Object.keys(cost)
          : [];
  const known = DIALECT_DIMENSIONS[dialect as keyof typeof DIALECT_DIMENSIONS];
  for (const name of costNames) {
    const where = isObject(cost) ? at('cost', name) : at('cost');
    if (name === 'requests') {
      issues.push({ path: where, message: 'requests always cost 1 per attempt: remove it from cost' });
      continue;
    }
    if (known && !known.includes(name) && !mappedNames.includes(name))
      issues.push({
        path: where,
        message: `headers: ${dialect} never announces a "${name}" dimension (it announces ${known.join(', ') || 'none'}): map it in quotaHeaders or choose other headers`,
      });
  }
}
