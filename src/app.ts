/**
 * Composition root: from a loaded config to running servers, reloads, and
 * the drain at shutdown. The metrics registry is the process's and
 * outlives any one config; a reload builds a new runtime, swaps it in for
 * new requests, and retires the old one once its requests are done.
 */
import { createHash } from 'node:crypto';
import { readFileSync, watch, type FSWatcher } from 'node:fs';
import path from 'node:path';
import { systemClock, type Clock } from './lib/clock.js';
import { formatProblem, loadConfig, type ConfigProblem, type LoadedConfig } from './config/index.js';
import { ErrorJournal } from './observe/error-journal.js';
import type { Logger } from './observe/logger.js';
import { processMetrics, type Metrics, type QueueDepth } from './observe/metrics.js';
import { TrafficStats, type TrafficOptions } from './observe/traffic.js';
import type { Lookup } from './router/target-check.js';
import { countsByClass } from './policy/priorities.js';
import { buildRuntime, type Runtime, type RuntimeDeps } from './runtime.js';
import { startAdminServer, type AdminServer } from './server/admin-server.js';
import { createProxyServer, type ProxyServer } from './server/proxy-server.js';
import { createForwarder } from './upstream/forward.js';

export interface ReloadResult {
  readonly result: 'success' | 'failure' | 'unchanged';
  readonly at: string;
  readonly problems: readonly string[];
}

export interface App {
  readonly admin: AdminServer;
  readonly proxy: ProxyServer;
  /** The bound proxy port. */
  readonly port: number;
  readonly metrics: Metrics;
  /** The runtime new requests start on. */
  runtime(): Runtime;
  /** The config now serving, with where it came from. */
  loaded(): LoadedConfig;
  /** Short hash of the serving config file's content. */
  version(): string;
  lastReload(): ReloadResult | undefined;
  /** Loads the config file again; an invalid one is refused and the running config stays. */
  reload(reason: string): Promise<ReloadResult>;
  /** Drains and stops: /readyz 503, no new connections, in-flight requests get `graceMs` (default: shutdown.drainTimeout). */
  close(graceMs?: number): Promise<void>;
}

export interface AppOptions {
  /** A private registry (tests); the process's by default. */
  readonly metrics?: Metrics;
  /** DNS for forward-proxy target checks (tests); the system resolver by default. */
  readonly lookup?: Lookup;
  /** Watch the config file (and its folder, for ConfigMap symlink swaps) and reload on change. */
  readonly watch?: boolean;
  /** The clock (tests: one whose sleeps pass at once); the system's by default. */
  readonly clock?: Clock;
  /** Debounce of file-change reloads, ms. */
  readonly watchDebounceMs?: number;
  /** The dashboard's sampling (default: 10 s buckets over 15 minutes; tests shorten them to see sparklines). */
  readonly traffic?: TrafficOptions;
}

function hashOf(file: string): string | undefined {
  try {
    return createHash('sha256').update(readFileSync(file)).digest('hex').slice(0, 12);
  } catch {
    return undefined;
  }
}

/** Settings bound at start that a reload cannot change. */
function fixedSettings(loaded: LoadedConfig): string {
  const { listen, admin, limits } = loaded.config;
  // The admin token is read again on reload (SPEC §19.1): only where the ports listen is fixed.
  return JSON.stringify({ listen, admin: { host: admin.host, port: admin.port }, maxHeaderSize: limits.maxHeaderSize });
}

/** What serves now: the runtime new requests start on, its config and version, and the last reload. */
class Serving {
  runtime: Runtime;
  loaded: LoadedConfig;
  version: string;
  last: ReloadResult | undefined;
  private reloading: Promise<ReloadResult> | undefined;

  constructor(
    initial: LoadedConfig,
    private readonly deps: RuntimeDeps & { readonly metrics: Metrics; readonly logger: Logger; readonly journal: ErrorJournal },
  ) {
    this.loaded = initial;
    this.version = hashOf(initial.file) ?? 'inline';
    deps.metrics.registerConfig(initial.config);
    this.runtime = buildRuntime(initial.config, deps);
  }

  /** One reload at a time; a reload asked for during one runs after it. */
  reload(reason: string): Promise<ReloadResult> {
    const run = (this.reloading ?? Promise.resolve()).then(() => this.reloadOnce(reason));
    this.reloading = run.finally(() => {
      if (this.reloading === run) this.reloading = undefined;
    }) as Promise<ReloadResult>;
    return run;
  }

  private async reloadOnce(reason: string): Promise<ReloadResult> {
    const { metrics, logger } = this.deps;
    const at = new Date(this.deps.wall()).toISOString();
    const file = this.loaded.file;
    const result = await loadConfig(file);
    if (!result.ok) {
      const problems = result.problems.map((problem: ConfigProblem) => formatProblem(problem));
      logger.error({ reason, file, problems }, `config reload refused: ${problems.length} problem(s); the running config stays`);
      for (const line of problems) logger.error({ reason }, line);
      metrics.configReloads.inc({ result: 'failure' });
      this.last = { result: 'failure', at, problems };
      return this.last;
    }
    const next = result.loaded;
    if (fixedSettings(next) !== fixedSettings(this.loaded)) {
      logger.warn({ file }, 'listen, admin and limits.maxHeaderSize cannot change without a restart: the new values wait for the next start');
    }
    const previous = this.runtime;
    const replacement = buildRuntime(next.config, { ...this.deps, inherit: previous.handOver() });
    await replacement.warmUp();
    metrics.registerConfig(next.config);
    this.runtime = replacement;
    this.loaded = next;
    this.deps.journal.resize(next.config.observability.errorJournal.size);
    this.version = hashOf(next.file) ?? this.version;
    void previous.retire(replacement.inherited());
    metrics.configReloads.inc({ result: 'success' });
    logger.info({ reason, file: next.file, version: this.version, routes: next.config.routes.length, upstreams: Object.keys(next.config.upstreams).length }, 'config reloaded');
    this.last = { result: 'success', at, problems: [] };
    return this.last;
  }
}

/** Every rate-limit queue's depth; with priority classes (SPEC §13), one series per class, every class listed. */
function* queueDepths(runtime: Runtime): Iterable<QueueDepth> {
  const classes = runtime.config.priorities?.classes;
  for (const route of runtime.routes) {
    if (!route.rateLimit) continue;
    if (!classes) {
      yield { route: route.name, depth: route.rateLimit.queueDepth() };
      continue;
    }
    for (const [priority, depth] of Object.entries(countsByClass(classes, route.rateLimit.queueDepthByRank()))) yield { route: route.name, priority, depth };
  }
}

/** The gauges read from whatever runtime serves when scraped. */
function registerGauges(metrics: Metrics, serving: Serving): void {
  metrics.setQueueDepths(() => queueDepths(serving.runtime));
  // Breakers per target (SPEC §8.1): the primary is named like its upstream.
  const targets = () => [...serving.runtime.upstreams.values()].flatMap((upstream) => upstream.targets);
  metrics.setCircuitStates(() => targets().map((target) => ({ upstream: target.name, state: target.breaker.state() })));
  metrics.setQuotas(() => targets().flatMap((target) => target.pacing?.snapshot() ?? []));
  metrics.setStaleStores(() => serving.runtime.routes.flatMap((route) => (route.stale ? [{ route: route.name, entries: route.stale.size(), bytes: route.stale.bytes() }] : [])));
}

/**
 * Reloads when the config file's content changes; returns a stop function.
 * The folder is watched, not the file: editors that save by rename and
 * Kubernetes' ConfigMap updates (an atomic swap of the `..data` symlink)
 * replace the file rather than write it. Content hashes filter out no-op events.
 */
function watchConfig(serving: Serving, debounceMs: number, logger: Logger): () => void {
  const dir = path.dirname(path.resolve(serving.loaded.file));
  let debounce: NodeJS.Timeout | undefined;
  let watcher: FSWatcher | undefined;
  try {
    watcher = watch(dir, { persistent: false }, () => {
      clearTimeout(debounce);
      debounce = setTimeout(() => {
        const current = hashOf(serving.loaded.file);
        // A file put back as it was after a refused edit hashes like the running config, yet
        // it is loaded again: that load clears lastReload's failure (issue 32).
        const refused = serving.last?.result === 'failure';
        if (current !== undefined && (current !== serving.version || refused)) void serving.reload('file changed');
      }, debounceMs);
    });
    watcher.on('error', (error) => logger.warn({ err: error.message, dir }, 'config watch stopped; SIGHUP still reloads'));
  } catch (error) {
    logger.warn({ err: (error as Error).message, dir }, 'cannot watch the config folder; SIGHUP still reloads');
  }
  return () => {
    watcher?.close();
    clearTimeout(debounce);
  };
}

export async function startApp(initial: LoadedConfig, logger: Logger, options: AppOptions = {}): Promise<App> {
  const { now, wall, sleep } = options.clock ?? systemClock;
  const metrics = options.metrics ?? processMetrics();
  const forwarder = createForwarder();
  const journal = new ErrorJournal(initial.config.observability.errorJournal.size, now);
  const serving = new Serving(initial, { forwarder, metrics, now, wall, sleep, logger, lookup: options.lookup, journal });
  registerGauges(metrics, serving);
  const traffic = new TrafficStats(metrics, now, options.traffic);
  let ready = false;

  const proxy = createProxyServer({ runtime: () => serving.runtime, forwarder, metrics, logger, now, wall, journal });
  let admin: AdminServer | undefined;
  try {
    await serving.runtime.warmUp();
    admin = await startAdminServer({
      host: initial.config.admin.host,
      port: initial.config.admin.port,
      metrics,
      ready: () => ready && !proxy.draining(),
      status: () => ({ runtime: serving.runtime, loaded: serving.loaded, version: serving.version, lastReload: serving.last, now }),
      journal,
      traffic: () => traffic.report(serving.runtime.routes.map((route) => ({ name: route.name, upstream: route.upstream?.name ?? null }))),
      // Read from the serving config: a reload rotates it (SPEC §19.1).
      token: () => serving.loaded.config.admin.token,
      logger,
    });
    traffic.start();
    const port = await proxy.listen(initial.config.listen.host, initial.config.listen.port);
    ready = true;
    const stopWatching = options.watch ? watchConfig(serving, options.watchDebounceMs ?? 300, logger) : () => {};
    const { listen, routes, upstreams } = initial.config;
    logger.info(
      {
        file: initial.file,
        version: serving.version,
        listen: `${listen.host}:${port}`,
        admin: `${initial.config.admin.host}:${admin.port}`,
        routes: routes.length,
        upstreams: Object.keys(upstreams).length,
      },
      'listening',
    );
    const adminServer = admin;
    return {
      admin: adminServer,
      proxy,
      port,
      metrics,
      runtime: () => serving.runtime,
      loaded: () => serving.loaded,
      version: () => serving.version,
      lastReload: () => serving.last,
      reload: (reason) => serving.reload(reason),
      async close(graceMs = serving.loaded.config.shutdown.drainTimeout) {
        ready = false;
        stopWatching();
        await proxy.close(graceMs);
        await adminServer.close();
        traffic.stop();
        await serving.runtime.close();
      },
    };
  } catch (error) {
    traffic.stop();
    await admin?.close();
    await serving.runtime.close();
    throw error;
  }
}
