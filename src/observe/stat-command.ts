/**
 * `breakwater stat [--admin URL] [--watch]` (SPEC §12): the dashboard's
 * per-route table in the terminal, read from a running Breakwater's
 * `GET /stats`, in the manner of `linkerd viz stat`. `--watch` redraws it
 * every two seconds until interrupted.
 */
import { readFileSync } from 'node:fs';
import { systemClock } from '../lib/clock.js';
import type { TrafficReport } from './traffic.js';

/** SPEC §2's admin port on this machine. */
export const DEFAULT_ADMIN = 'http://127.0.0.1:9901';
const WATCH_MS = 2000;

/** `URL`, `host:port` or a bare port, as the admin's base URL. */
export function adminBase(flag: string | undefined): string {
  const value = (flag ?? process.env.BREAKWATER_ADMIN ?? DEFAULT_ADMIN).trim();
  if (/^\d+$/.test(value)) return `http://127.0.0.1:${value}`;
  return (/^https?:\/\//i.test(value) ? value : `http://${value}`).replace(/\/+$/, '');
}

const dash = '-';
const rps = (value: number) => `${value >= 100 ? value.toFixed(0) : value.toFixed(2)}rps`;
const ms = (value: number | null) =>
  value === null ? dash : value >= 10 ? `${value.toFixed(0)}ms` : `${value.toFixed(1)}ms`;

/** A paced target's quota in one dimension, as `/stats` lists it (SPEC §15). */
export interface QuotaLine {
  readonly target: string;
  readonly dimension: string;
  readonly remaining: number;
  readonly limit: number | null;
  readonly resetSeconds: number | null;
}

/** Rows padded to their widest cell, the first `names` columns left-aligned, numbers right-aligned. */
function table(rows: readonly (readonly string[])[], names: number): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((cell, i) => (i < names ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!)))
      .join('   ')
      .trimEnd();
  return rows.map(line).join('\n');
}

/** The quota each paced target announced, per dimension: what the pacers see now. */
function formatQuotas(quotas: readonly QuotaLine[]): string {
  if (quotas.length === 0) return '';
  const rows = quotas.map((quota) => [
    quota.target,
    quota.dimension,
    String(quota.remaining),
    quota.limit === null ? dash : String(quota.limit),
    quota.resetSeconds === null ? dash : `${Math.ceil(quota.resetSeconds)}s`,
  ]);
  return `\n${table([['TARGET', 'DIMENSION', 'REMAINING', 'LIMIT', 'RESETS_IN'], ...rows], 2)}\n`;
}

/** The table: one row per route, columns padded to their widest cell; then each paced target's quota. */
export function formatStats(report: TrafficReport & { readonly quotas?: readonly QuotaLine[] }): string {
  const header = [
    'ROUTE',
    'UPSTREAM',
    'SUCCESS',
    'RPS',
    'LATENCY_P50',
    'LATENCY_P99',
    'RETRIES',
    'LIMITED',
    'REPORTED',
    'CACHED',
    'SAVED',
  ];
  const rows = report.routes.map((route) => [
    route.route || '(no route)',
    route.upstream ?? '(request target)',
    route.successRate === null ? dash : `${route.successRate.toFixed(2)}%`,
    rps(route.requestsPerSecond),
    ms(route.p50Ms),
    ms(route.p99Ms),
    rps(route.retriesPerSecond),
    rps(route.rateLimitedPerSecond),
    rps(route.reportedPerSecond ?? 0),
    route.cacheHitRate === null || route.cacheHitRate === undefined ? dash : `${route.cacheHitRate.toFixed(2)}%`,
    rps(route.savedPerSecond ?? 0),
  ]);
  const window = `over the last ${report.windowSeconds.toFixed(0)} s`;
  return `${table([header, ...rows], 2)}\n${rows.length === 0 ? 'no routes\n' : ''}(${window})\n${formatQuotas(report.quotas ?? [])}`;
}

/** An admin refusal (SPEC §19.1): its title and hint are what the user needs to read. */
class Refused extends Error {}

async function fetchStats(base: string, token: string | undefined): Promise<TrafficReport & { quotas?: QuotaLine[] }> {
  const res = await fetch(`${base}/stats`, {
    signal: AbortSignal.timeout(5000),
    headers: token ? { authorization: `Bearer ${token}` } : {},
  });
  if (res.status === 401 || res.status === 403) {
    const problem = (await res.json().catch(() => ({}))) as { title?: string; hint?: string };
    throw new Refused(`${base}/stats refused: ${problem.title ?? res.status}. ${problem.hint ?? ''}`.trim());
  }
  if (!res.ok) throw new Error(`${base}/stats answered ${res.status}`);
  return (await res.json()) as TrafficReport & { quotas?: QuotaLine[] };
}

/**
 * The admin token (SPEC §19.1): `$BREAKWATER_ADMIN_TOKEN`, or the content of
 * `--token-file` (never an argument: `ps` shows arguments).
 */
export function statToken(tokenFile: string | undefined): string | undefined {
  if (tokenFile !== undefined) return readFileSync(tokenFile, 'utf8').trimEnd();
  const fromEnv = process.env.BREAKWATER_ADMIN_TOKEN?.trim();
  return fromEnv ? fromEnv : undefined;
}

function reason(error: unknown): string {
  const cause = (error as { cause?: { code?: string; message?: string } }).cause;
  return cause?.code ?? cause?.message ?? (error as Error).message;
}

/**
 * Prints the table once (exit 0, or 1 when the admin cannot be read), or redraws it until SIGINT/SIGTERM with
 * `watch`.
 */
export async function statCommand(
  flag: string | undefined,
  watch: boolean,
  out: NodeJS.WriteStream = process.stdout,
  wall: () => number = systemClock.wall,
  token: string | undefined = undefined,
): Promise<number> {
  const base = adminBase(flag);
  const unreachable = (error: unknown) =>
    error instanceof Refused
      ? `breakwater: ${error.message}\n`
      : `breakwater: cannot read ${base}/stats (${reason(error)}); is Breakwater running, and is --admin its admin address?\n`;
  if (!watch) {
    try {
      out.write(formatStats(await fetchStats(base, token)));
      return 0;
    } catch (error) {
      process.stderr.write(unreachable(error));
      return 1;
    }
  }
  let stopped = false;
  let wake = () => {};
  const stop = () => {
    stopped = true;
    wake();
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  while (!stopped) {
    let frame: string;
    try {
      frame = formatStats(await fetchStats(base, token));
    } catch (error) {
      frame = unreachable(error);
    }
    // A terminal is redrawn in place; a pipe gets one frame after another.
    out.write(out.isTTY ? `\x1b[H\x1b[2J${frame}` : `${new Date(wall()).toISOString()}\n${frame}\n`);
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, WATCH_MS);
      wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }
  return 0;
}
