/**
 * Composition root: from a loaded config to running servers, reloads, and
 * the drain at shutdown. The metrics registry is the process's and
 * outlives any one config; a reload builds a new runtime, swaps it in for
 * new requests, and retires the old one once its requests are done.
 */
import { createHash } from 'node:crypto';
import { readFileSync, watch, type FSWatcher } from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { formatProblem, loadConfig, type ConfigProblem, type LoadedConfig } from './config/index.js';
import type { Logger } from './observe/logger.js';
import { processMetrics, type Metrics } from './observe/metrics.js';
import type { Lookup } from './router/target-check.js';
import { buildRuntime, type Runtime } from './runtime.js';
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
  /** Debounce of file-change reloads, ms. */
  readonly watchDebounceMs?: number;
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
  return JSON.stringify({ listen, admin, maxHeaderSize: limits.maxHeaderSize });
}

export async function startApp(initial: LoadedConfig, logger: Logger, options: AppOptions = {}): Promise<App> {
  const now = () => performance.now();
  const metrics = options.metrics ?? processMetrics();
  const forwarder = createForwarder();
  const deps = { forwarder, metrics, now, logger, lookup: options.lookup };
  let loaded = initial;
  let version = hashOf(initial.file) ?? 'inline';
  let last: ReloadResult | undefined;
  metrics.registerConfig(initial.config);
  let runtime: Runtime = buildRuntime(initial.config, deps);
  metrics.setQueueDepths(() => runtime.routes.filter((route) => route.rateLimit).map((route) => ({ route: route.name, depth: route.rateLimit!.queueDepth() })));
  metrics.setQuotas(() => [...runtime.upstreams.values()].flatMap((upstream) => upstream.pacing?.snapshot() ?? []));
  metrics.setCircuitStates(() => [...runtime.upstreams.values()].map((upstream) => ({ upstream: upstream.name, state: upstream.breaker.state() })));
  let ready = false;

  const proxy = createProxyServer({ runtime: () => runtime, forwarder, metrics, logger, now });
  let admin: AdminServer | undefined;
  let watcher: FSWatcher | undefined;
  let debounce: NodeJS.Timeout | undefined;
  let reloading: Promise<ReloadResult> | undefined;

  async function reloadOnce(reason: string): Promise<ReloadResult> {
    const at = new Date().toISOString();
    const result = await loadConfig(loaded.file);
    if (!result.ok) {
      const problems = result.problems.map((problem: ConfigProblem) => formatProblem(problem));
      logger.error({ reason, file: loaded.file, problems }, `config reload refused: ${problems.length} problem(s); the running config stays`);
      for (const line of problems) logger.error({ reason }, line);
      metrics.configReloads.inc({ result: 'failure' });
      last = { result: 'failure', at, problems };
      return last;
    }
    const next = result.loaded;
    if (fixedSettings(next) !== fixedSettings(loaded)) {
      logger.warn({ file: loaded.file }, 'listen, admin and limits.maxHeaderSize cannot change without a restart: the new values wait for the next start');
    }
    const previous = runtime;
    const replacement = buildRuntime(next.config, { ...deps, inherit: previous.handOver() });
    await replacement.warmUp();
    metrics.registerConfig(next.config);
    runtime = replacement;
    loaded = next;
    version = hashOf(next.file) ?? version;
    void previous.retire(replacement.inherited());
    metrics.configReloads.inc({ result: 'success' });
    logger.info({ reason, file: next.file, version, routes: next.config.routes.length, upstreams: Object.keys(next.config.upstreams).length }, 'config reloaded');
    last = { result: 'success', at, problems: [] };
    return last;
  }

  /** One reload at a time; a reload asked for during one runs after it. */
  function reload(reason: string): Promise<ReloadResult> {
    const run = (reloading ?? Promise.resolve()).then(() => reloadOnce(reason));
    reloading = run.finally(() => {
      if (reloading === run) reloading = undefined;
    }) as Promise<ReloadResult>;
    return run;
  }

  function startWatching(): void {
    // The folder, not the file: editors that save by rename and Kubernetes'
    // ConfigMap updates (an atomic swap of the `..data` symlink) replace the
    // file rather than write it. Content hashes filter out no-op events.
    const dir = path.dirname(path.resolve(loaded.file));
    try {
      watcher = watch(dir, { persistent: false }, () => {
        clearTimeout(debounce);
        debounce = setTimeout(() => {
          const current = hashOf(loaded.file);
          if (current !== undefined && current !== version) void reload('file changed');
        }, options.watchDebounceMs ?? 300);
      });
      watcher.on('error', (error) => logger.warn({ err: error.message, dir }, 'config watch stopped; SIGHUP still reloads'));
    } catch (error) {
      logger.warn({ err: (error as Error).message, dir }, 'cannot watch the config folder; SIGHUP still reloads');
    }
  }

  try {
    await runtime.warmUp();
    admin = await startAdminServer({
      host: initial.config.admin.host,
      port: initial.config.admin.port,
      metrics,
      ready: () => ready && !proxy.draining(),
      status: () => ({ runtime, loaded, version, lastReload: last }),
    });
    const port = await proxy.listen(initial.config.listen.host, initial.config.listen.port);
    ready = true;
    if (options.watch) startWatching();
    logger.info(
      {
        file: initial.file,
        version,
        listen: `${initial.config.listen.host}:${port}`,
        admin: `${initial.config.admin.host}:${admin.port}`,
        routes: initial.config.routes.length,
        upstreams: Object.keys(initial.config.upstreams).length,
      },
      'listening',
    );
    const adminServer = admin;
    return {
      admin: adminServer,
      proxy,
      port,
      metrics,
      runtime: () => runtime,
      loaded: () => loaded,
      version: () => version,
      lastReload: () => last,
      reload,
      async close(graceMs = loaded.config.shutdown.drainTimeout) {
        ready = false;
        watcher?.close();
        clearTimeout(debounce);
        await proxy.close(graceMs);
        await adminServer.close();
        await runtime.close();
        forwarder.close();
      },
    };
  } catch (error) {
    await admin?.close();
    await runtime.close();
    throw error;
  }
}
