/**
 * Composition root: from a loaded config to running servers, and back down.
 * The metrics registry is the process's and outlives any one config.
 */
import { performance } from 'node:perf_hooks';
import type { LoadedConfig } from './config/index.js';
import type { Logger } from './observe/logger.js';
import { processMetrics, type Metrics } from './observe/metrics.js';
import { buildRuntime, type Runtime } from './runtime.js';
import { startAdminServer, type AdminServer } from './server/admin-server.js';
import { createProxyServer, type ProxyServer } from './server/proxy-server.js';
import { createForwarder } from './upstream/forward.js';
import type { Lookup } from './router/target-check.js';

export interface App {
  readonly admin: AdminServer;
  readonly proxy: ProxyServer;
  /** The bound proxy port. */
  readonly port: number;
  readonly metrics: Metrics;
  /** The runtime new requests start on. */
  runtime(): Runtime;
  /** Stops both servers; requests in flight get `graceMs` (default: shutdown.drainTimeout). */
  close(graceMs?: number): Promise<void>;
}

export interface AppOptions {
  /** A private registry (tests); the process's by default. */
  readonly metrics?: Metrics;
  /** DNS for forward-proxy target checks (tests); the system resolver by default. */
  readonly lookup?: Lookup;
}

export async function startApp(loaded: LoadedConfig, logger: Logger, options: AppOptions = {}): Promise<App> {
  const { config } = loaded;
  const now = () => performance.now();
  const metrics = options.metrics ?? processMetrics();
  metrics.registerConfig(config);
  const forwarder = createForwarder();
  const runtime: Runtime = buildRuntime(config, { forwarder, metrics, now, logger, lookup: options.lookup });
  metrics.setQueueDepths(() => runtime.routes.filter((route) => route.rateLimit).map((route) => ({ route: route.name, depth: route.rateLimit!.queueDepth() })));
  metrics.setCircuitStates(() => [...runtime.upstreams.values()].map((upstream) => ({ upstream: upstream.name, state: upstream.breaker.state() })));
  let ready = false;

  const proxy = createProxyServer({ runtime: () => runtime, forwarder, metrics, logger, now });
  let admin: AdminServer | undefined;
  try {
    await runtime.warmUp();
    admin = await startAdminServer({ host: config.admin.host, port: config.admin.port, metrics, ready: () => ready });
    const port = await proxy.listen(config.listen.host, config.listen.port);
    ready = true;
    logger.info(
      {
        file: loaded.file,
        listen: `${config.listen.host}:${port}`,
        admin: `${config.admin.host}:${admin.port}`,
        routes: config.routes.length,
        upstreams: Object.keys(config.upstreams).length,
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
      async close(graceMs = config.shutdown.drainTimeout) {
        ready = false;
        await Promise.all([proxy.close(graceMs), adminServer.close()]);
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
