/**
 * Composition root: from a loaded config to running servers, reloads, and
 * the drain at shutdown. The metrics registry is the process's and
 * outlives any one config; a reload builds a new runtime, swaps it in for
 * new requests, and retires the old one once its requests are done.
 */

import { systemClock, type Clock } from './lib/clock.js';
import type { LoadedConfig } from './config/index.js';
import { ErrorJournal } from './observe/error-journal.js';
import type { Logger } from './observe/logger.js';
import { processMetrics, type Metrics, type QueueDepth } from './observe/metrics.js';
import { TrafficStats, type TrafficOptions } from './observe/traffic.js';
import type { Lookup } from './router/target-check.js';
import { countsByClass } from './policy/priorities.js';
import { type Runtime } from './runtime.js';
import { startAdminServer, type AdminServer } from './server/admin-server.js';
import { createProxyServer, type ProxyServer } from './server/proxy-server.js';
import { createForwarder } from './upstream/forward.js';
import { Serving, watchConfig, type ReloadResult } from './app/serving.js';

export type { ReloadResult };

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
  /**
   * Drains and stops: /readyz 503, no new connections, in-flight requests get `graceMs` (default:
   * shutdown.drainTimeout).
   */
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

/** Every rate-limit queue's depth; with priority classes (SPEC §13), one series per class, every class listed. */
function* queueDepths(runtime: Runtime): Iterable<QueueDepth> {
  const classes = runtime.config.priorities?.classes;
  for (const route of runtime.routes) {
    if (!route.rateLimit) continue;
    if (!classes) {
      yield { route: route.name, depth: route.rateLimit.queueDepth() };
      continue;
    }
    for (const [priority, depth] of Object.entries(countsByClass(classes, route.rateLimit.queueDepthByRank())))
      yield { route: route.name, priority, depth };
  }
}

/** The gauges read from whatever runtime serves when scraped. */
function registerGauges(metrics: Metrics, serving: Serving): void {
  metrics.setQueueDepths(() => queueDepths(serving.runtime));
  // Breakers per target (SPEC §8.1): the primary is named like its upstream.
  const targets = () => [...serving.runtime.upstreams.values()].flatMap((upstream) => upstream.targets);
  metrics.setCircuitStates(() => targets().map((target) => ({ upstream: target.name, state: target.breaker.state() })));
  metrics.setQuotas(() => targets().flatMap((target) => target.pacing?.snapshot() ?? []));
  metrics.setStaleStores(() =>
    serving.runtime.routes.flatMap(({ name, store, stale, cache }) =>
      store
        ? [{ route: name, entries: store.size(), bytes: store.bytes(), stale: stale !== null, cache: cache !== null }]
        : [],
    ),
  );
}

/** The admin port (SPEC §2, §19.1): probes, metrics and the views of whatever runtime serves. */
function startAdmin(
  initial: LoadedConfig,
  serving: Serving,
  deps: { metrics: Metrics; journal: ErrorJournal; traffic: TrafficStats; logger: Logger; now: () => number },
  ready: () => boolean,
): Promise<AdminServer> {
  const { metrics, journal, traffic, logger, now } = deps;
  return startAdminServer({
    host: initial.config.admin.host,
    port: initial.config.admin.port,
    metrics,
    ready,
    status: () => ({
      runtime: serving.runtime,
      loaded: serving.loaded,
      version: serving.version,
      lastReload: serving.last,
      now,
    }),
    journal,
    traffic: () =>
      traffic.report(
        serving.runtime.routes.map((route) => ({ name: route.name, upstream: route.upstream?.name ?? null })),
      ),
    // Read from the serving config: a reload rotates it (SPEC §19.1).
    token: () => serving.loaded.config.admin.token,
    logger,
  });
}

export async function startApp(initial: LoadedConfig, logger: Logger, options: AppOptions = {}): Promise<App> {
  const { now, wall, sleep } = options.clock ?? systemClock;
  const metrics = options.metrics ?? processMetrics();
  const forwarder = createForwarder();
  const journal = new ErrorJournal(initial.config.observability.errorJournal.size, now);
  const serving = new Serving(initial, {
    forwarder,
    metrics,
    now,
    wall,
    sleep,
    logger,
    lookup: options.lookup,
    journal,
  });
  registerGauges(metrics, serving);
  const traffic = new TrafficStats(metrics, now, options.traffic);
  let ready = false;

  const proxy = createProxyServer({ runtime: () => serving.runtime, forwarder, metrics, logger, now, wall, journal });
  let admin: AdminServer | undefined;
  try {
    await serving.runtime.warmUp();
    admin = await startAdmin(
      initial,
      serving,
      { metrics, journal, traffic, logger, now },
      () => ready && !proxy.draining(),
    );
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
