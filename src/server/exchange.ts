/**
 * One exchange per inbound request, WebSocket upgrade, CONNECT or request
 * the HTTP parser refused: what arrived, what it matched, and the two
 * things every one of them ends with, each written once here:
 *
 * - `refuse(error)`: the access-log flag, `breakwater_errors_total`, the
 *   problem body (SPEC §5), written to the response or to the raw socket;
 * - `finish(status)`: `breakwater_requests_total`, the duration histogram
 *   and the access-log line (SPEC §7), once, when the exchange closes.
 *
 * The policy layers fill the same record (ExchangeRecord picks its shared
 * fields from RequestContext), so flags and attempts counted there are the
 * ones logged.
 */
import { STATUS_CODES, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { BreakwaterError } from '../errors/breakwater-error.js';
import { describeCode, problemBody, renderProblem, type RenderedProblem } from '../errors/problem.js';
import { flagForCode, logAccess, wantsAccessLog } from '../observe/access-log.js';
import type { ErrorJournal } from '../observe/error-journal.js';
import type { Logger } from '../observe/logger.js';
import { methodLabel, type Metrics } from '../observe/metrics.js';
import type { RequestContext } from '../policy/context.js';
import type { ExchangeRecord } from './exchange-record.js';
import type { Runtime } from '../runtime.js';
import type { Forwarder } from '../upstream/forward.js';
import { journalEntry, type AnswerNote } from './journal-entry.js';

/** What the proxy port's handlers need (requests, upgrades, CONNECT). */
export interface ServerDeps {
  /** The runtime new exchanges start on (swapped on reload). */
  readonly runtime: () => Runtime;
  readonly forwarder: Forwarder;
  readonly metrics: Metrics;
  readonly logger: Logger;
  /** The clock's readings (lib/clock.ts): monotonic ms for durations, epoch ms for the dates a response names. */
  readonly now: () => number;
  readonly wall: () => number;
  /** The last requests that ended in an error (SPEC §12). */
  readonly journal: ErrorJournal;
}

/** A request or upgrade as server/ handles it: the policies' context, and node's request, which only server/ reads. */
export interface ServerContext extends RequestContext, ExchangeRecord {
  readonly req: IncomingMessage;
}

/** A request with the response only server/ writes. */
export interface HttpContext extends ServerContext {
  readonly res: ServerResponse;
}

/** Status logged and counted for a request whose client left before any response (NGINX's convention). */
export const CLIENT_CLOSED_STATUS = 499;

/** What matched, as the problem body and the access log name it. */
export interface Matched {
  /** The route's name ('' when none matched). */
  readonly route: string;
  /** The upstream's name, or the forward target's `host:port` (null before one is known). */
  readonly upstream: string | null;
  /** `errors.normalize: off` on the route: problems as plain text. */
  readonly plainErrors: boolean;
}

const NOTHING_MATCHED: Matched = { route: '', upstream: null, plainErrors: false };

/** Writes a complete HTTP/1.1 response on a raw socket, then closes it. */
function writeRaw(socket: Duplex, rendered: RenderedProblem): void {
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  let head = `HTTP/1.1 ${rendered.status} ${STATUS_CODES[rendered.status] ?? ''}\r\n`;
  for (const [name, value] of Object.entries(rendered.headers)) head += `${name}: ${value}\r\n`;
  socket.end(`${head}connection: close\r\n\r\n${rendered.body}`);
}

export class Exchange {
  matched: Matched = NOTHING_MATCHED;
  private finished = false;
  /** The last error code answered or counted (the trace's breakwater.error.code). */
  private code: string | null = null;
  /** Breakwater's own problem, once one was answered. */
  private failure: BreakwaterError | undefined;
  /** The upstream's error answer (status >= 400) passed on, for the journal. */
  answer: AnswerNote | undefined;

  constructor(
    private readonly deps: Pick<ServerDeps, 'metrics' | 'logger' | 'now' | 'wall' | 'journal'>,
    /** The runtime it started on: its `logging.accessLog` decides the line. */
    private readonly runtime: Pick<Runtime, 'config' | 'leakGuard'>,
    readonly record: ExchangeRecord,
    /** The problem body's `instance` (the path, or the CONNECT authority). */
    private readonly instance?: string,
  ) {}

  /**
   * Answers `error` as one problem body (SPEC §5): flagged, counted, and
   * written to `out`, a response not yet started or a raw socket. Anything
   * but a BreakwaterError is an internal error, logged with its stack. A
   * response already under way can only be aborted. Returns the status.
   */
  refuse(error: unknown, out: ServerResponse | Duplex, options: { closeConnection?: boolean } = {}): number {
    const { metrics, logger } = this.deps;
    const { route, plainErrors } = this.matched;
    let failure: BreakwaterError;
    if (error instanceof BreakwaterError) {
      failure = error;
    } else {
      failure = new BreakwaterError('INTERNAL_ERROR', 'Breakwater failed while handling this request.', {
        cause: error,
      });
      logger.error({ err: error, requestId: this.record.requestId, route }, 'internal error');
    }
    // SPEC §18: a leak is worth a warning of its own (where, never what: the detail names the place).
    if (failure.code === 'CREDENTIAL_LEAK')
      logger.warn({ requestId: this.record.requestId, route, detail: failure.detail }, 'credential leak refused');
    const flag = flagForCode(failure.code);
    if (flag) this.record.flags.add(flag);
    this.code = failure.code;
    this.failure = failure;
    metrics.errors.inc({ route, code: failure.code });
    const response = 'writeHead' in out ? (out as ServerResponse) : undefined;
    if (response?.headersSent) {
      // Part of a response is out: the only honest signal left is an abort.
      response.destroy();
      return failure.status;
    }
    const rendered = renderProblem(failure, this.problemContext(), plainErrors);
    if (response) {
      if (options.closeConnection) rendered.headers.connection = 'close';
      response.writeHead(rendered.status, rendered.headers);
      response.end(rendered.body);
    } else {
      writeRaw(out as Duplex, rendered);
    }
    return failure.status;
  }

  /**
   * A response Breakwater cut after it began (SPEC §16, a stream gone silent): flagged, counted and journaled as
   * `error` with the status already sent. Returns the §5 problem as one line of JSON (an event stream's last
   * event), whatever `errors.normalize` says.
   */
  cutAnswer(error: BreakwaterError): string {
    this.countError(error.code, true);
    this.failure = error;
    return JSON.stringify(problemBody(error, this.problemContext()));
  }

  /** What a problem body of this exchange names (SPEC §5): where it went, how often, which request. */
  private problemContext() {
    const { route, upstream } = this.matched;
    return {
      instance: this.record.shownPath ?? this.instance ?? this.record.path,
      route: route || null,
      upstream,
      target: this.record.target,
      attempts: this.record.attempts,
      requestId: this.record.requestId,
    };
  }

  /**
   * Counts an error that is not answered by a problem body of ours (an
   * upstream that died mid-body, an upstream error passed on normalized),
   * with its flag when `flag` is set.
   */
  countError(code: string, flag = false): void {
    const asFlag = flag ? flagForCode(code) : undefined;
    if (asFlag) this.record.flags.add(asFlag);
    this.code = code;
    this.deps.metrics.errors.inc({ route: this.matched.route, code });
  }

  /**
   * A forward-proxy request's allow-list decision (SPEC §19.3), and the report of one that would have been
   * refused (§19.2).
   */
  private countEgress(decision: NonNullable<ExchangeRecord['egress']>, caller: string | null, route: string): void {
    this.deps.metrics.forwardRequests.inc({ caller: caller ?? '', decision });
    if (decision === 'would_deny') this.deps.metrics.policyReports.inc({ route, policy: 'allow_list' });
  }

  private journal(status: number, durationMs: number): void {
    if (!this.deps.journal.admit()) return;
    const { route, upstream } = this.matched;
    const entry = journalEntry({
      record: this.record,
      route,
      upstream,
      status,
      code: this.code,
      failure: this.failure,
      answer: this.answer,
      durationMs,
      wall: this.deps.wall(),
    });
    if (!entry) return;
    // SPEC §18: an upstream that echoes a managed key in its error body (`invalid key sk-…`) is journaled masked.
    const guard = this.runtime.leakGuard;
    this.deps.journal.record(guard ? guard.maskValue(entry) : entry);
  }

  /** Counts the exchange and writes its access-log line; once, whatever calls it again. */
  finish(status: number): void {
    if (this.finished) return;
    this.finished = true;
    const { metrics, logger, now } = this.deps;
    const { record } = this;
    const route = this.matched.route;
    const method = methodLabel(record.method);
    const durationMs = now() - record.startedAt;
    metrics.requestsTotal.inc({ route, method, code: String(status) });
    if (record.egress !== undefined) this.countEgress(record.egress, record.caller ?? null, route);
    if (record.cache !== undefined) metrics.cacheRequests.inc({ route, result: record.cache });
    metrics.requestDuration.observe({ route, method }, durationMs / 1000);
    // Only a request that failed builds an entry (SPEC §12): the success path pays one comparison.
    if (
      (status >= 400 || this.code !== null || record.staleFor !== undefined) &&
      status !== CLIENT_CLOSED_STATUS &&
      this.deps.journal.enabled
    )
      this.journal(status, durationMs);
    record.trace?.end({
      status,
      route: route || null,
      upstream: this.matched.upstream,
      target: record.target,
      attempts: record.attempts,
      code: this.code,
      responsibility: this.code === null ? null : describeCode(this.code, status).responsibility,
    });
    if (wantsAccessLog(logger, this.runtime.config.logging.accessLog)) {
      logAccess(logger, {
        requestId: record.requestId,
        method: record.method,
        host: record.shownHost ?? record.host,
        path: record.shownPath ?? record.path,
        route,
        upstream: this.matched.upstream ?? '',
        target: record.target ?? '',
        ...(record.rule !== undefined && { rule: record.rule }),
        ...(record.priority !== undefined && { priority: record.priority.name }),
        ...(record.caller !== undefined && { caller: record.caller }),
        ...(record.cache !== undefined && { cache: record.cache }),
        status,
        durationMs: Math.round(durationMs * 1000) / 1000,
        attempts: record.attempts,
        flags: [...record.flags],
      });
    }
  }
}
