/**
 * Reading an error answer before deciding on it (SPEC §14): up to a cap of
 * its body as received (still encoded), so the same bytes can go to the
 * client unchanged, and the rest left in the response for whoever sends it
 * on. Only for statuses a rule could match, so a 2xx never pays; a body the
 * rules do not need is not read at all.
 */
import { readErrorText } from '../errors/dialects/index.js';
import type { ProviderRules } from '../errors/provider-rules.js';
import type { RuleDecision } from '../errors/provider-table.js';
import { decodeBody } from '../errors/normalize.js';
import type { Signal } from '../lib/signal.js';
import type { UpstreamResponse } from './response.js';

/** The start of a body, as received; `complete` when it is the whole body. */
export interface BufferedAnswer {
  readonly raw: Buffer;
  readonly complete: boolean;
}

/**
 * Reads at most `cap` bytes of the body as received, then pauses the
 * response (the rest stays in it). When `signal` aborts first (the per-try
 * deadline, the client leaving), the response is destroyed and what
 * arrived is returned.
 */
export function readAnswer(response: UpstreamResponse, cap: number, signal: Signal): Promise<BufferedAnswer> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const stop = signal.onAbort(() => {
      response.destroy();
      done(false);
    });
    const done = (complete: boolean) => {
      stop();
      response.off('data', onData);
      response.off('end', onEnd);
      response.off('close', onClose);
      if (!complete) response.pause();
      resolve({ raw: Buffer.concat(chunks, size), complete });
    };
    const onData = (chunk: Buffer) => {
      chunks.push(chunk);
      size += chunk.length;
      if (size >= cap) done(false);
    };
    const onEnd = () => done(true);
    // Broken off before its end: what arrived is what there is.
    const onClose = () => done(response.complete);
    response.on('data', onData);
    response.once('end', onEnd);
    response.once('close', onClose);
  });
}

/** What the rules decide about an answer whose status they may match; its body read first when they need it. */
export async function decideAnswer(
  response: UpstreamResponse,
  rules: ProviderRules,
  cap: number,
  wall: number,
  signal: Signal,
): Promise<{ decision: RuleDecision | undefined; buffered: BufferedAnswer | undefined }> {
  const status = response.statusCode ?? 0;
  const buffered = rules.readsBody(status) ? await readAnswer(response, cap, signal) : undefined;
  const contentType = String(response.headers['content-type'] ?? '').toLowerCase();
  const text = buffered ? decodeBody(buffered.raw, response.headers['content-encoding'] as string | undefined) : '';
  const { parsed: body, said: provider } = readErrorText(text, contentType);
  return { decision: rules.decide({ status, headers: response.headers, body, provider, wall }), buffered };
}
