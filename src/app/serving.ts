/**
 * What serves now (app.ts): the runtime new requests start on, its config
 * and version, the last reload; a reload builds a new runtime, swaps it in
 * for new requests and retires the old one once its requests are done; and
 * the watch that reloads when the config file changes.
 */
import { createHash } from 'node:crypto';
import { readFileSync, watch, type FSWatcher } from 'node:fs';
import path from 'node:path';
import { formatProblem, loadConfig, type ConfigProblem, type LoadedConfig } from '../config/index.js';
import type { ErrorJournal } from '../observe/error-journal.js';
import type { Logger } from '../observe/logger.js';
import type { Metrics } from '../observe/metrics.js';
import { buildRuntime, type Runtime, type RuntimeDeps } from '../runtime.js';

export interface ReloadResult {
  readonly result: 'success' | 'failure' | 'unchanged';
  readonly at: string;
  readonly problems: readonly string[];
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
export class Serving {
  runtime: Runtime;
  loaded: LoadedConfig;
  version: string;
  last: ReloadResult | undefined;
  private reloading: Promise<ReloadResult> | undefined;

  constructor(
    initial: LoadedConfig,
    private readonly deps: RuntimeDeps & {
      readonly metrics: Metrics;
      readonly logger: Logger;
      readonly journal: ErrorJournal;
    },
  ) {
    this.loaded = initial;
    this.version = hashOf(initial.file) ?? 'inline';
    deps.metrics.registerConfig(initial.config);
    this.runtime = buildRuntime(initial.config, { ...deps, secrets: initial.secrets });
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
      logger.error(
        { reason, file, problems },
        `config reload refused: ${problems.length} problem(s); the running config stays`,
      );
      for (const line of problems) logger.error({ reason }, line);
      metrics.configReloads.inc({ result: 'failure' });
      this.last = { result: 'failure', at, problems };
      return this.last;
    }
    const next = result.loaded;
    if (fixedSettings(next) !== fixedSettings(this.loaded)) {
      logger.warn(
        { file },
        'listen, admin and limits.maxHeaderSize cannot change without a restart: the new values wait for the next start',
      );
    }
    const previous = this.runtime;
    const replacement = buildRuntime(next.config, {
      ...this.deps,
      secrets: next.secrets,
      inherit: previous.handOver(),
    });
    await replacement.warmUp();
    metrics.registerConfig(next.config);
    this.runtime = replacement;
    this.loaded = next;
    this.deps.journal.resize(next.config.observability.errorJournal.size);
    this.version = hashOf(next.file) ?? this.version;
    void previous.retire(replacement.inherited());
    metrics.configReloads.inc({ result: 'success' });
    logger.info(
      {
        reason,
        file: next.file,
        version: this.version,
        routes: next.config.routes.length,
        upstreams: Object.keys(next.config.upstreams).length,
      },
      'config reloaded',
    );
    this.last = { result: 'success', at, problems: [] };
    return this.last;
  }
}

/**
 * Reloads when the config file's content changes; returns a stop function.
 * The folder is watched, not the file: editors that save by rename and
 * Kubernetes' ConfigMap updates (an atomic swap of the `..data` symlink)
 * replace the file rather than write it. Content hashes filter out no-op events.
 */
export function watchConfig(serving: Serving, debounceMs: number, logger: Logger): () => void {
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
    watcher.on('error', (error) =>
      logger.warn({ err: error.message, dir }, 'config watch stopped; SIGHUP still reloads'),
    );
  } catch (error) {
    logger.warn({ err: (error as Error).message, dir }, 'cannot watch the config folder; SIGHUP still reloads');
  }
  return () => {
    watcher?.close();
    clearTimeout(debounce);
  };
}
