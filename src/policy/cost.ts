/**
 * What a request costs in a quota's unit (SPEC §15): tokens estimated from
 * the body as the provider counts it at admission, a number the app sends
 * in a header, or a number in the JSON body. Read only on routes that ask,
 * from what the server already holds: a body is buffered for a cost only
 * within `retry.bufferLimit` (routes.ts), and a larger or streamed one is
 * never read (its Content-Length estimates it).
 */
import type { RequestContext } from './context.js';
import { firstHeader } from '../lib/headers.js';

/** One source: `openai` | `anthropic` (estimates) | `header:<name>` | `json:<dotted.path>`. */
export type CostSource = string;

/** What a request costs in one unit; at least 1 when its source yields nothing. */
export type CostReader = (ctx: CostInput) => number;

/** What a cost is read from: the client's headers and the body the attempts send. */
export type CostInput = Pick<RequestContext, 'clientHeaders' | 'body'>;

/** The body as far as a cost may read it: its bytes when held in memory, else its announced length. */
interface BodyView {
  readonly bytes: number;
  /** The parsed JSON body, when held and JSON (undefined otherwise). */
  readonly json: unknown;
}

/** Parsed once per body, however many sources and attempts read it. */
const views = new WeakMap<object, BodyView>();

const NO_BODY: BodyView = { bytes: 0, json: undefined };

function viewOf(input: CostInput): BodyView {
  const body = input.body;
  if (!body.replayable) {
    // Streamed through (beyond bufferLimit, or of unknown length): never read for a cost.
    const length = Number(firstHeader(input.clientHeaders, 'content-length'));
    return { bytes: Number.isFinite(length) && length > 0 ? length : 0, json: undefined };
  }
  const held = body.open();
  if (held === undefined || !Buffer.isBuffer(held)) return NO_BODY;
  let view = views.get(held);
  if (!view) {
    let json: unknown;
    try {
      json = JSON.parse(held.toString('utf8'));
    } catch {
      json = undefined;
    }
    view = { bytes: held.length, json };
    views.set(held, view);
  }
  return view;
}

/** The largest cost a source yields: beyond it a pacer's or a bucket's arithmetic would lose its precision. */
export const MAX_COST = 2 ** 31;

/** A count: a finite number >= 0, rounded up (at most MAX_COST); undefined for anything else. */
function countOf(value: unknown): number | undefined {
  const n = typeof value === 'string' && /^\s*\d+(\.\d+)?\s*$/.test(value) ? Number(value) : value;
  return typeof n === 'number' && Number.isFinite(n) && n >= 0 ? Math.min(MAX_COST, Math.ceil(n)) : undefined;
}

/** The own field at `path` of a JSON value (an object's inherited members are never read). */
function fieldAt(json: unknown, path: readonly string[]): unknown {
  let at = json;
  for (const key of path) {
    if (at === null || typeof at !== 'object' || Array.isArray(at) || !Object.hasOwn(at, key)) return undefined;
    at = (at as Record<string, unknown>)[key];
  }
  return at;
}

/** The completion tokens a body asks for at most: OpenAI's three spellings, in order. */
function maxOutput(json: unknown, fields: readonly string[]): number {
  for (const field of fields) {
    const value = countOf(fieldAt(json, [field]));
    if (value !== undefined) return value;
  }
  return 0;
}

const OPENAI_MAX = ['max_completion_tokens', 'max_tokens', 'max_output_tokens'];
const ANTHROPIC_MAX = ['max_tokens'];

/** The provider's admission estimate: the prompt as UTF-8 bytes / 4, plus the most it may answer. */
export function estimateTokens(input: CostInput, preset: 'openai' | 'anthropic'): number {
  const view = viewOf(input);
  const tokens = Math.ceil(view.bytes / 4) + maxOutput(view.json, preset === 'openai' ? OPENAI_MAX : ANTHROPIC_MAX);
  return Math.min(MAX_COST, tokens);
}

/** Anthropic's input-tokens estimate: the body's bytes / 4. */
const inputTokens: CostReader = (input) => Math.max(1, Math.ceil(viewOf(input).bytes / 4));
/** Anthropic's output-tokens estimate: max_tokens. */
const outputTokens: CostReader = (input) => Math.max(1, maxOutput(viewOf(input).json, ANTHROPIC_MAX));

/** A reader for one source (the schema checked its form). */
export function costReader(source: CostSource): CostReader {
  if (source === 'openai' || source === 'anthropic') return (input) => Math.max(1, estimateTokens(input, source));
  if (source.startsWith('header:')) {
    const name = source.slice('header:'.length).toLowerCase();
    return (input) => countOf(firstHeader(input.clientHeaders, name)) ?? 1;
  }
  const path = source.slice('json:'.length).split('.');
  return (input) => countOf(fieldAt(viewOf(input).json, path)) ?? 1;
}

/** `pacing.cost` (SPEC §15): none, a preset, or a source per dimension. */
export type PacingCost = 'none' | 'openai' | 'anthropic' | Readonly<Record<string, CostSource>>;

/** Costs per dimension besides requests; a dimension missing costs 1. */
export type Costs = Readonly<Record<string, number>>;

/** 1 per attempt in every dimension. */
export const NO_COSTS: Costs = Object.freeze({});

/** The readers of `pacing.cost` per dimension, or null for `none` (every dimension 1 per attempt). */
export function pacingCostReaders(cost: PacingCost): ((input: CostInput) => Costs) | null {
  if (cost === 'none') return null;
  const readers: [string, CostReader][] =
    cost === 'openai'
      ? [['tokens', costReader('openai')]]
      : cost === 'anthropic'
        ? [
            ['tokens', costReader('anthropic')],
            ['input-tokens', inputTokens],
            ['output-tokens', outputTokens],
          ]
        : Object.entries(cost).map(([dimension, source]) => [dimension, costReader(source)]);
  return (input) => {
    const costs: Record<string, number> = {};
    for (const [dimension, read] of readers) costs[dimension] = read(input);
    return costs;
  };
}

/** Whether a cost source reads the body (the route then buffers it within bufferLimit). */
export function readsBody(cost: PacingCost | CostSource | null): boolean {
  if (cost === null || cost === 'none') return false;
  if (typeof cost === 'string') return !cost.startsWith('header:');
  return Object.values(cost).some(readsBody);
}
