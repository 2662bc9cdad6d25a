/**
 * The checks between keys that no schema can express: references between
 * keys, limits between merged values, files the config names. {@link
 * crossCheck} runs even when the schema found problems, so one run reports
 * everything it can; it is written defensively for that reason and skips
 * what it cannot read.
 */

import { readCa } from './ca-files.js';
import { checkAdminToken, checkCallers } from './edge-checks.js';
import { getIn, isObject, tryMs, trySize, type Json } from './json.js';
import { effectivePolicies, fill, type Layer } from './merge.js';
import { checkIntercept, checkRedis } from './service-checks.js';
import { DEFAULTS } from './defaults.js';
import { checkPacingDimensions } from './pacing-checks.js';
import { checkPriorities, checkRoutePriority } from './priority-checks.js';

import type { Issue, PathSegment } from './problems.js';
import { suggest } from './suggest.js';
import { formatDuration } from './units.js';

/** A map the file holds at `key`, or undefined (the schema reports anything else there). */
const mapAt = (parent: Json, key: string): Json | undefined => (isObject(parent[key]) ? parent[key] : undefined);

/** The path of the most specific layer that sets `keys`, for pointing at a merged value's origin. */
function originOf(layers: readonly Layer[], keys: readonly string[]): PathSegment[] | undefined {
  for (const layer of layers) {
    if (getIn(layer.value, keys) !== undefined) return [...layer.path, ...keys];
  }
  return undefined;
}

/** The timers cut to what is left of `total` (SPEC §3, §16), and why each must fit in it. */
const WITHIN_TOTAL = {
  perTry: 'an attempt cannot outlast the request',
  firstByte: "the first byte is awaited within the request's deadline",
} as const;

function checkPolicies(layers: readonly Layer[], hasRedis: boolean, issues: Issue[]): void {
  const policies = effectivePolicies(layers);

  const total = tryMs(getIn(policies, ['timeouts', 'total']));
  for (const [key, why] of Object.entries(WITHIN_TOTAL)) {
    const value = tryMs(getIn(policies, ['timeouts', key]));
    if (value === undefined || total === undefined || value <= total) continue;
    const at = originOf(layers, ['timeouts', key]) ?? originOf(layers, ['timeouts', 'total']);
    if (at)
      issues.push({
        path: at,
        message: `${key} (${formatDuration(value)}) must not be longer than total (${formatDuration(total)}): ${why}`,
      });
  }

  const base = tryMs(getIn(policies, ['retry', 'backoff', 'base']));
  const max = tryMs(getIn(policies, ['retry', 'backoff', 'max']));
  if (base !== undefined && max !== undefined && base > max) {
    const at = originOf(layers, ['retry', 'backoff', 'base']) ?? originOf(layers, ['retry', 'backoff', 'max']);
    if (at)
      issues.push({
        path: at,
        message: `backoff.base (${formatDuration(base)}) must not be above backoff.max (${formatDuration(max)})`,
      });
  }

  const rateLimit = policies.rateLimit;
  if (isObject(rateLimit)) {
    const at = originOf(layers, ['rateLimit']);
    if (
      at &&
      rateLimit.rate === undefined &&
      (rateLimit.maxConcurrent === undefined || rateLimit.maxConcurrent === null)
    ) {
      issues.push({ path: at, message: 'a rate limit needs rate (like 25/s), maxConcurrent, or both' });
    }
    if (rateLimit.rate === undefined && rateLimit.burst !== undefined) {
      const burstAt = originOf(layers, ['rateLimit', 'burst']);
      if (burstAt)
        issues.push({
          path: burstAt,
          message: 'burst needs a rate: it is the size of the token bucket that rate refills',
        });
    }
    if (rateLimit.cost !== undefined && rateLimit.cost !== null && rateLimit.rate === undefined) {
      const costAt = originOf(layers, ['rateLimit', 'cost']);
      if (costAt)
        issues.push({
          path: costAt,
          message: 'cost needs a rate: rate and burst then count in its unit (like 40000/min tokens)',
        });
    }
    if (rateLimit.settle === 'usage' && (rateLimit.cost === undefined || rateLimit.cost === null)) {
      const settleAt = originOf(layers, ['rateLimit', 'settle']);
      if (settleAt)
        issues.push({
          path: settleAt,
          message: 'settle: usage needs a cost: it replaces the estimate the cost charged with the usage answered',
        });
    }
    if (rateLimit.shared === true && !hasRedis) {
      const sharedAt = originOf(layers, ['rateLimit', 'shared']);
      if (sharedAt)
        issues.push({
          path: sharedAt,
          message: 'a shared rate limit is kept in Redis: add a redis section (redis: { url: redis://host:6379 })',
        });
    }
  }
}

/** Failover targets: names unique within the upstream (they label metrics), CA files readable. */
function checkFailover(upstream: string, failover: unknown, baseDir: string, issues: Issue[]): void {
  if (!Array.isArray(failover)) return;
  const seen = new Map<string, number>();
  failover.forEach((target: unknown, index) => {
    if (!isObject(target)) return;
    const name = typeof target.name === 'string' ? target.name : String(index + 1);
    const first = seen.get(name);
    if (first !== undefined)
      issues.push({
        path: ['upstreams', upstream, 'failover', index, 'name'],
        message: `duplicate target name "${upstream}/${name}" (also failover[${first}]): target names label metrics and logs`,
      });
    else seen.set(name, index);
    const ca = getIn(target, ['tls', 'ca']);
    if (typeof ca === 'string' && ca !== '') {
      const read = readCa(ca, baseDir);
      if (!read.ok)
        issues.push({ path: ['upstreams', upstream, 'failover', index, 'tls', 'ca'], message: read.message });
    }
  });
}

/** A route's store (stale answers, SPEC §8.2, or its cache, §17): one entry must fit in the whole. */
function checkStore(store: unknown, at: PathSegment[], issues: Issue[]): void {
  if (!isObject(store)) return;
  const filled = fill(DEFAULTS.stale, store);
  const entry = trySize(filled.maxEntryBytes);
  const all = trySize(filled.maxBytes);
  if (entry !== undefined && all !== undefined && entry > all) {
    issues.push({
      path: [...at, 'maxEntryBytes'],
      message: `maxEntryBytes (${entry} bytes) is larger than maxBytes (${all} bytes): no answer could ever be stored`,
    });
  }
}

/** Each route: a unique name, an upstream that exists (or a forward proxy), its stale store, class and policies. */
function checkRoutes(
  file: Json,
  routes: unknown[],
  upstreams: Json,
  classes: readonly string[],
  hasRedis: boolean,
  issues: Issue[],
): void {
  const forwardProxyEnabled = getIn(file, ['forwardProxy', 'enabled']) === true;
  const firstRouteByName = new Map<string, number>();
  routes.forEach((route: unknown, index) => {
    if (!isObject(route)) return;
    const name = route.name;
    if (typeof name === 'string') {
      const first = firstRouteByName.get(name);
      if (first !== undefined) {
        issues.push({
          path: ['routes', index, 'name'],
          message: `duplicate route name "${name}" (also routes[${first}]): names must be unique, they label metrics and logs`,
        });
      } else {
        firstRouteByName.set(name, index);
      }
    }
    if (typeof route.upstream === 'string' && !(route.upstream in upstreams)) {
      const close = suggest(route.upstream, Object.keys(upstreams));
      const known = Object.keys(upstreams);
      issues.push({
        path: ['routes', index, 'upstream'],
        message: `unknown upstream "${route.upstream}"${close ? `; did you mean "${close}"?` : known.length ? ` (defined: ${known.join(', ')})` : ' (no upstreams are defined)'}`,
      });
    }
    if (route.upstream === undefined && !forwardProxyEnabled) {
      issues.push({
        path: ['routes', index, 'upstream'],
        at: 'parent',
        message: 'is required: only forward-proxy routes (forwardProxy.enabled: true) may omit it',
      });
    }
    checkStore(getIn(route, ['fallback', 'stale']), ['routes', index, 'fallback', 'stale'], issues);
    checkStore(getIn(route, ['cache']), ['routes', index, 'cache'], issues);
    checkRoutePriority(route.priority, index, classes, issues);
    checkPolicies(
      [
        { path: ['routes', index], value: route },
        { path: ['defaults'], value: file.defaults },
      ],
      hasRedis,
      issues,
    );
  });
}

/**
 * Each upstream: a readable CA, a breaker whose longest opening is not its shortest, failover targets, Redis for
 * shared pacing.
 */
function checkUpstreams(upstreams: Json, hasRedis: boolean, baseDir: string, issues: Issue[]): void {
  for (const [name, upstream] of Object.entries(upstreams)) {
    if (!isObject(upstream)) continue;
    const ca = getIn(upstream, ['tls', 'ca']);
    if (typeof ca === 'string' && ca !== '') {
      const read = readCa(ca, baseDir);
      if (!read.ok) issues.push({ path: ['upstreams', name, 'tls', 'ca'], message: read.message });
    }
    const openFor = tryMs(fill(DEFAULTS.upstream.circuitBreaker, mapAt(upstream, 'circuitBreaker')).openFor);
    const maxOpenFor = tryMs(getIn(upstream, ['circuitBreaker', 'maxOpenFor']));
    if (openFor !== undefined && maxOpenFor !== undefined && maxOpenFor < openFor) {
      issues.push({
        path: ['upstreams', name, 'circuitBreaker', 'maxOpenFor'],
        message: `maxOpenFor (${formatDuration(maxOpenFor)}) must not be shorter than openFor (${formatDuration(openFor)})`,
      });
    }
    checkFailover(name, upstream.failover, baseDir, issues);
    if (isObject(upstream.pacing)) checkPacingDimensions(name, upstream.pacing, issues);
    if (getIn(upstream, ['pacing', 'shared']) === true && !hasRedis) {
      issues.push({
        path: ['upstreams', name, 'pacing', 'shared'],
        message: 'shared pacing keeps its state in Redis: add a redis section',
      });
    }
  }
}

/** Checks between keys that a schema cannot express. Defensive: `file` may have failed the schema. */
export function crossCheck(file: unknown, baseDir: string): Issue[] {
  const issues: Issue[] = [];
  if (!isObject(file)) return issues;
  const upstreams = isObject(file.upstreams) ? file.upstreams : {};
  const routes = Array.isArray(file.routes) ? file.routes : [];
  const hasRedis = isObject(file.redis);

  checkPolicies([{ path: ['defaults'], value: file.defaults }], hasRedis, issues);
  const classes = checkPriorities(file.priorities, issues);

  checkRoutes(file, routes, upstreams, classes, hasRedis, issues);
  checkUpstreams(upstreams, hasRedis, baseDir, issues);

  if (hasRedis) checkRedis(file.redis as Json, baseDir, issues);

  if (getIn(file, ['forwardProxy', 'connect', 'mode']) === 'intercept')
    checkIntercept(getIn(file, ['forwardProxy', 'intercept']), baseDir, issues);

  checkPorts(file, issues);
  if (isObject(file.admin)) issues.push(...checkAdminToken(file.admin, baseDir));
  issues.push(...checkCallers(getIn(file, ['forwardProxy', 'callers'])));
  return issues;
}

/** The admin port and the proxy port differ. */
function checkPorts(file: Json, issues: Issue[]): void {
  const listenPort = fill(DEFAULTS.listen, mapAt(file, 'listen')).port;
  const adminPort = fill(DEFAULTS.admin, mapAt(file, 'admin')).port;
  if (typeof listenPort === 'number' && listenPort !== 0 && listenPort === adminPort) {
    const at =
      originOf([{ path: [], value: file }], ['admin', 'port']) ??
      originOf([{ path: [], value: file }], ['listen', 'port']);
    if (at)
      issues.push({
        path: at,
        message: `the admin port and the proxy port are both ${listenPort}: give them different ports`,
      });
  }
}
