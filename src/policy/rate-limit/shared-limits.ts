/**
 * The Redis connection behind shared rate limits and shared pacing (SPEC §3
 * `redis`, §9): one ioredis client per runtime (a server, a Sentinel group's
 * master or a Cluster), shared by every shared limiter and pacer. Commands fail fast while Redis
 * is unreachable (no offline queue) and after `redis.timeout` when it is
 * hung or slow (ioredis `commandTimeout`), so no request waits longer for
 * Redis: the caller then decides per `redis.onError`. After a failure,
 * `healthy()` is false and requests are decided without asking Redis until
 * a background PING (one a second) answers; ioredis reconnects by itself.
 */
import { createRequire } from 'node:module';
import type { Cluster, Redis, RedisOptions } from 'ioredis';
import type { RedisConfig } from '../../config/types.js';
import type { Logger } from '../../observe/logger.js';
import { redactUrl } from '../../observe/redact.js';
import { createSharedBuckets, type SharedBuckets } from './shared-buckets.js';
import { systemClock } from '../../lib/clock.js';

export interface SharedLimits {
  /** Shared rate limits' scripts and leases on this connection. */
  readonly buckets: SharedBuckets;
  /** The ioredis client itself (shared pacing state). */
  readonly client: Redis | Cluster;
  readonly onError: RedisConfig['onError'];
  /** `redis.timeout` (ms): the longest a request waits for Redis; slower is a Redis failure (SPEC §9). */
  readonly timeout: number;
  /** True while the client is connected and ready and no failure is pending a successful probe. */
  healthy(): boolean;
  /** A command failed or timed out: decide without Redis until the background probe answers. */
  reportFailure(error: unknown): void;
  /**
   * Calls `listener` when Redis starts failing (requests still waiting on it give up); returns an unsubscribe
   * function.
   */
  onFailure(listener: () => void): () => void;
  /**
   * For `/status` (SPEC §9): `connecting` until the first connection attempt ends, then `ready` or `degraded`,
   * and since when (RFC 3339).
   */
  status(): { readonly state: 'connecting' | 'ready' | 'degraded'; readonly since: string };
  /** Resolves true once ready, or false after `ms` (startup does not wait longer for Redis). */
  waitReady(ms: number): Promise<boolean>;
  close(): Promise<void>;
}

/** The ioredis client for the configured form (url, Sentinel or Cluster), and where it connects, for logs. */
function createClient(config: RedisConfig): { client: Redis | Cluster; where: string } {
  // ioredis (~20 MiB) loads only for a config that shares limits; synchronously, as the runtime is built.
  const { Cluster, Redis } = createRequire(import.meta.url)('ioredis') as typeof import('ioredis');
  const options: RedisOptions = {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    connectTimeout: 2000,
    commandTimeout: config.timeout,
    retryStrategy: (times: number) => Math.min(100 * times, 2000),
    lazyConnect: false,
    ...(config.username !== null && { username: config.username }),
    ...(config.password !== null && { password: config.password }),
    ...(config.db !== null && { db: config.db }),
    ...(config.tls !== null && {
      tls: { ...(config.tls.ca !== null && { ca: config.tls.ca }), rejectUnauthorized: !config.tls.insecureSkipVerify },
    }),
  };
  const { sentinel, cluster } = config;
  let client: Redis | Cluster;
  let where: string;
  if (cluster) {
    // A Cluster: ioredis learns the slots from the seed nodes and follows MOVED/ASK and failovers.
    const { retryStrategy, enableOfflineQueue, ...redisOptions } = options;
    client = new Cluster(
      cluster.nodes.map((node) => ({ host: node.host, port: node.port })),
      {
        redisOptions,
        enableOfflineQueue,
        clusterRetryStrategy: retryStrategy,
        slotsRefreshTimeout: Math.max(1000, config.timeout),
      },
    );
    where = `cluster (${cluster.nodes.map((node) => `${node.host}:${node.port}`).join(', ')})`;
  } else if (sentinel) {
    // A Sentinel group: ioredis asks the sentinels for the master and follows it across failovers.
    client = new Redis({
      ...options,
      sentinels: sentinel.sentinels.map((entry) => ({ host: entry.host, port: entry.port })),
      name: sentinel.name,
      ...((sentinel.password ?? config.password) !== null && { password: (sentinel.password ?? config.password)! }),
      sentinelPassword: sentinel.sentinelPassword ?? undefined,
      sentinelRetryStrategy: (times: number) => Math.min(100 * times, 2000),
    });
    where = `sentinel ${sentinel.name} (${sentinel.sentinels.map((entry) => `${entry.host}:${entry.port}`).join(', ')})`;
  } else {
    client = new Redis(config.url, options);
    where = String(redactUrl(config.url));
  }
  return { client, where };
}

/** Resolves true once the client is ready, or false after `ms`. */
function waitReady(client: Redis | Cluster, ms: number): Promise<boolean> {
  if (client.status === 'ready') return Promise.resolve(true);
  return new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => {
      client.off('ready', onReady);
      resolve(false);
    }, ms);
    const onReady = () => {
      clearTimeout(timer);
      resolve(true);
    };
    client.once('ready', onReady);
  });
}

/** `wall`: epoch ms, for the status's `since` stamps. */
export function connectSharedLimits(
  config: RedisConfig,
  logger: Logger | undefined,
  wall: () => number = systemClock.wall,
): SharedLimits {
  const { client, where } = createClient(config);
  let lastState = '';
  let status: { state: 'connecting' | 'ready' | 'degraded'; since: string } = {
    state: 'connecting',
    since: new Date(wall()).toISOString(),
  };
  const report = (state: string, error?: Error) => {
    const next = state === 'ready' ? 'ready' : 'degraded';
    if (status.state !== next) status = { state: next, since: new Date(wall()).toISOString() };
    if (state === lastState) return;
    lastState = state;
    if (state === 'ready') logger?.info({ redis: where }, 'redis ready: rate limits and pacing are shared');
    else
      logger?.warn(
        { redis: where, err: error?.message },
        `redis ${state}: shared rate limits and pacing fall back to redis.onError=${config.onError}`,
      );
  };
  // Failing until a probe answers: a hung Redis keeps its TCP connection
  // 'ready', so the client's status alone would send every request to wait.
  let failing = false;
  let probe: NodeJS.Timeout | undefined;
  const failureListeners = new Set<() => void>();
  const recover = () => {
    failing = false;
    if (probe) clearInterval(probe);
    probe = undefined;
    if (client.status === 'ready') report('ready');
  };
  const reportFailure = (error: unknown) => {
    if (failing) return;
    failing = true;
    report('failing', error as Error);
    for (const listener of [...failureListeners]) listener();
    probe = setInterval(() => {
      if (client.status !== 'ready') return;
      client.ping().then(recover, () => {});
    }, 1000);
    probe.unref();
  };
  client.on('ready', () => (failing ? undefined : report('ready')));
  // An error while the client stays ready (a Cluster's failed slot refresh) is no outage: logged, not reported.
  client.on('error', (error: Error) => {
    if (client.status === 'ready' && !failing)
      logger?.warn({ redis: where, err: error.message }, 'redis error; the connection stays ready');
    else report('unavailable', error);
  });
  client.on('close', () => report('unavailable'));
  client.on('end', () => report('closed'));
  const buckets = createSharedBuckets(client);
  return {
    buckets,
    client,
    ...{ onError: config.onError, timeout: config.timeout },
    healthy: () => client.status === 'ready' && !failing,
    reportFailure,
    onFailure(listener) {
      failureListeners.add(listener);
      return () => failureListeners.delete(listener);
    },
    status: () => {
      // Self-correcting: a client that is ready and not failing is shown ready, whatever event was missed.
      if (status.state !== 'ready' && client.status === 'ready' && !failing) report('ready');
      return status;
    },
    waitReady: (ms) => waitReady(client, ms),
    async close() {
      if (probe) clearInterval(probe);
      buckets.close();
      // QUIT lets the last slot releases reach Redis; one that does not answer is cut off.
      if (client.status === 'ready' && !failing) await client.quit().catch(() => {});
      client.disconnect();
    },
  };
}
