/**
 * An open-loop client, as the resilience benchmark's: request i is sent at
 * i / rate whatever happened before (a closed loop would slow down with the
 * upstream and hide the failures), with `X-Request-Id: <tag>:<i>` so the
 * flaky upstream draws the same fates for every target, a share of POSTs
 * carrying an `Idempotency-Key`, and a client timeout.
 */
import http from 'node:http';

export interface LoadOptions {
  readonly url: string;
  readonly tag: string;
  readonly rate: number;
  readonly durationMs: number;
  readonly timeoutMs: number;
  /** Every n-th request is a POST with an Idempotency-Key (0: none). */
  readonly postEvery?: number;
}

export interface Outcome {
  readonly index: number;
  /** ms after the first send. */
  readonly sentAt: number;
  readonly doneAt: number;
  readonly ms: number;
  /** 0 when no HTTP answer came (reset, refused, client timeout). */
  readonly status: number;
  readonly ok: boolean;
  /** `X-Breakwater-Error`, or the status, or what went wrong without an answer. */
  readonly label: string;
  /** `X-Breakwater-Target` of the answer, when there was one. */
  readonly target?: string;
  /** Answered from a stored answer (`X-Breakwater-Fallback: stale`). */
  readonly stale?: boolean;
  /** `X-Breakwater-Attempts`, when Breakwater answered. */
  readonly attempts?: number;
  /** The `code` and `hint` of a problem+json body, when the answer was one. */
  readonly problem?: { readonly code: string; readonly hint: string };
}

function problemOf(headers: http.IncomingHttpHeaders | undefined, body: string): Outcome['problem'] {
  if (!headers || !String(headers['content-type'] ?? '').includes('problem+json')) return undefined;
  try {
    const parsed = JSON.parse(body) as { code?: unknown; hint?: unknown };
    return typeof parsed.code === 'string' && typeof parsed.hint === 'string'
      ? { code: parsed.code, hint: parsed.hint }
      : undefined;
  } catch {
    return undefined;
  }
}

export async function runOpenLoop(options: LoadOptions): Promise<Outcome[]> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity });
  const total = Math.round((options.rate * options.durationMs) / 1000);
  const started = performance.now();
  const one = (index: number): Promise<Outcome> =>
    new Promise((resolve) => {
      const sentAt = performance.now() - started;
      const post =
        options.postEvery !== undefined && options.postEvery > 0 && index % options.postEvery === options.postEvery - 1;
      const headers: http.OutgoingHttpHeaders = { 'x-request-id': `${options.tag}:${index}` };
      if (post) {
        headers['idempotency-key'] = `${options.tag}-${index}`;
        headers['content-type'] = 'application/json';
        headers['content-length'] = '2';
      }
      let settled = false;
      let body = '';
      const done = (status: number, label: string, answer?: http.IncomingHttpHeaders) => {
        if (settled) return;
        settled = true;
        const doneAt = performance.now() - started;
        const target = answer?.['x-breakwater-target'];
        const stale = answer?.['x-breakwater-fallback'] === 'stale';
        const attempts = answer?.['x-breakwater-attempts'];
        resolve({
          index,
          sentAt,
          doneAt,
          ms: doneAt - sentAt,
          status,
          ok: status >= 200 && status < 300,
          label,
          target: typeof target === 'string' ? target : undefined,
          stale,
          attempts: attempts ? Number(attempts) : undefined,
          problem: problemOf(answer, body),
        });
      };
      // Reads come back to the same 40 items, as an app's do.
      const req = http.request(
        `${options.url}/items/${index % 40}`,
        { method: post ? 'POST' : 'GET', agent, headers, timeout: options.timeoutMs },
        (res) => {
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => {
            if (body.length < 4096) body += chunk;
          });
          res.on('end', () => {
            const status = res.statusCode ?? 0;
            const code = res.headers['x-breakwater-error'];
            done(status, typeof code === 'string' ? `${status} ${code}` : String(status), res.headers);
          });
          res.on('error', () => done(0, 'reset'));
        },
      );
      req.on('timeout', () => req.destroy(new Error('client timeout')));
      req.on('error', (error: NodeJS.ErrnoException) =>
        done(
          0,
          error.message === 'client timeout' ? 'client timeout' : error.code === 'ECONNREFUSED' ? 'refused' : 'reset',
        ),
      );
      req.end(post ? '{}' : undefined);
    });
  const pending: Promise<Outcome>[] = [];
  for (let index = 0; index < total; index++) {
    const wait = started + (index * 1000) / options.rate - performance.now();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    pending.push(one(index));
  }
  const outcomes = await Promise.all(pending);
  agent.destroy();
  return outcomes;
}

/** Share of outcomes that succeeded, 0..1. */
export function successRate(outcomes: readonly Outcome[]): number {
  return outcomes.length === 0 ? 0 : outcomes.filter((outcome) => outcome.ok).length / outcomes.length;
}

export function percentile(values: readonly number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0;
}
