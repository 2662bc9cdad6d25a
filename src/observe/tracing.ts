/**
 * OpenTelemetry traces (SPEC §11) with the OpenTelemetry JS SDK: one SERVER
 * span per request, one CLIENT span per attempt, W3C propagation, OTLP/HTTP
 * export (protobuf or JSON) in batches from a bounded queue.
 *
 * The SDK is loaded only when a config turns tracing on (about 17 MiB of
 * RSS), and nothing else in Breakwater sees its types: the request path
 * holds a {@link RequestTrace} or null. Contexts are passed by hand (no
 * async-hooks context manager): the SERVER span is the parent of every
 * attempt's span, and each attempt's span is the upstream's parent.
 *
 * Export never slows or fails a request: spans wait in the batch queue
 * (2,048 at most); a span the queue has no room for, or whose export fails
 * or times out (10 s), is counted in breakwater_trace_spans_dropped_total.
 */
import { createRequire } from 'node:module';
import type { IncomingHttpHeaders } from 'node:http';
import type * as Api from '@opentelemetry/api';
import type * as Core from '@opentelemetry/core';
import type * as Base from '@opentelemetry/sdk-trace-base';
import type * as Resources from '@opentelemetry/resources';
import type { TracingConfig } from '../config/types.js';

export type WaitKind = 'backoff' | 'retry_after' | 'queue' | 'pacing';

/** What the server span says when it ends. */
export interface RequestOutcome {
  readonly status: number;
  readonly route: string | null;
  readonly upstream: string | null;
  readonly target: string | null;
  readonly attempts: number;
  /** The error code, for an answer Breakwater made or a failure. */
  readonly code: string | null;
  readonly responsibility: string | null;
}

export interface AttemptTrace {
  /** Headers for the upstream request: this attempt's span as the parent. */
  readonly headers: Readonly<Record<string, string>>;
  /**
   * The attempt ended: with the upstream's status, or the error it failed with; `firstByteMs`, from the request
   * sent to its body's first byte (an event stream: its first event line), when one came (SPEC §16).
   */
  end(status: number | undefined, errorType: string | undefined, firstByteMs?: number): void;
}

export interface RequestTrace {
  /** A CLIENT span for one attempt; `resendCount` 0 for the first. */
  attempt(method: string, url: URL, target: string, resendCount: number): AttemptTrace;
  /** A wait (backoff, Retry-After, queue, pacing), as an event. */
  wait(kind: WaitKind, ms: number): void;
  /** Names the span once the route is known. */
  route(method: string, route: string): void;
  /** The request carried a secret (SPEC §18): its path and host as they may be shown. */
  redact(path: string, host: string): void;
  end(outcome: RequestOutcome): void;
}

export interface Tracing {
  /** A SERVER span for a request whose headers may carry a parent. */
  request(method: string, path: string, headers: IncomingHttpHeaders, host: string): RequestTrace;
  /** Exports what is queued, then stops. */
  close(): Promise<void>;
}

export interface TracingDeps {
  /** Counts spans that could not be exported (breakwater_trace_spans_dropped_total). */
  readonly dropped: (count: number) => void;
  readonly env?: NodeJS.ProcessEnv;
}

const MAX_QUEUE = 2048;
const EXPORT_TIMEOUT_MS = 10_000;

/** Whether the config and the environment turn tracing on. */
export function tracingEnabled(config: TracingConfig, env: NodeJS.ProcessEnv = process.env): boolean {
  return config.enabled && (env.OTEL_SDK_DISABLED ?? '').trim().toLowerCase() !== 'true';
}

/** The settings once the OTEL_* variables and the defaults filled what the file left out (SPEC §11). */
export function exportSettings(config: TracingConfig, env: NodeJS.ProcessEnv = process.env) {
  const base = env.OTEL_EXPORTER_OTLP_ENDPOINT?.trim();
  const endpoint =
    config.endpoint ??
    (env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT?.trim() ||
      (base ? `${base.replace(/\/+$/, '')}/v1/traces` : 'http://127.0.0.1:4318/v1/traces'));
  const envProtocol = env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL?.trim() ?? env.OTEL_EXPORTER_OTLP_PROTOCOL?.trim();
  const protocol = config.protocol ?? (envProtocol === 'http/json' ? 'http/json' : 'http/protobuf');
  const serviceName = config.serviceName ?? (env.OTEL_SERVICE_NAME?.trim() || 'breakwater');
  return { endpoint, protocol, serviceName, sampleRatio: config.sampleRatio };
}

type Sdk = { api: typeof Api; core: typeof Core; base: typeof Base; resources: typeof Resources };

function loadSdk(): Sdk {
  const require = createRequire(import.meta.url);
  return {
    api: require('@opentelemetry/api') as typeof Api,
    core: require('@opentelemetry/core') as typeof Core,
    base: require('@opentelemetry/sdk-trace-base') as typeof Base,
    resources: require('@opentelemetry/resources') as typeof Resources,
  };
}

/** The OTLP exporter for the protocol, counting the spans of a failed export as dropped. */
function createExporter(
  sdk: Sdk,
  settings: ReturnType<typeof exportSettings>,
  deps: TracingDeps,
  inFlight: { count: number },
): Base.SpanExporter {
  const require = createRequire(import.meta.url);
  const module =
    settings.protocol === 'http/json'
      ? '@opentelemetry/exporter-trace-otlp-http'
      : '@opentelemetry/exporter-trace-otlp-proto';
  const { OTLPTraceExporter } = require(module) as {
    OTLPTraceExporter: new (options: { url: string; timeoutMillis: number }) => Base.SpanExporter;
  };
  const exporter = new OTLPTraceExporter({ url: settings.endpoint, timeoutMillis: EXPORT_TIMEOUT_MS });
  return {
    export(spans, done) {
      inFlight.count = Math.max(0, inFlight.count - spans.length);
      exporter.export(spans, (result) => {
        if (result.code !== sdk.core.ExportResultCode.SUCCESS) deps.dropped(spans.length);
        done(result);
      });
    },
    shutdown: () => exporter.shutdown(),
    forceFlush: () => exporter.forceFlush?.() ?? Promise.resolve(),
  };
}

export function createTracing(config: TracingConfig, deps: TracingDeps): Tracing {
  const sdk = loadSdk();
  const { api, core, base, resources } = sdk;
  const settings = exportSettings(config, deps.env);
  // Spans handed to the batch processor and not yet to the exporter: the processor drops what its queue has no
  // room for.
  const queued = { count: 0 };
  const batch = new base.BatchSpanProcessor(createExporter(sdk, settings, deps, queued), {
    maxQueueSize: MAX_QUEUE,
    exportTimeoutMillis: EXPORT_TIMEOUT_MS,
  });
  const processor: Base.SpanProcessor = {
    onStart: (span, context) => batch.onStart(span, context),
    onEnd(span) {
      if ((span.spanContext().traceFlags & api.TraceFlags.SAMPLED) !== 0) {
        if (queued.count >= MAX_QUEUE) deps.dropped(1);
        else queued.count += 1;
      }
      batch.onEnd(span);
    },
    forceFlush: () => batch.forceFlush(),
    shutdown: () => batch.shutdown(),
  };
  const provider = new base.BasicTracerProvider({
    resource: resources.resourceFromAttributes({ 'service.name': settings.serviceName }),
    sampler: new base.ParentBasedSampler({ root: new base.TraceIdRatioBasedSampler(settings.sampleRatio) }),
    spanProcessors: [processor],
  });
  const tracer = provider.getTracer('breakwater');
  const propagator = new core.W3CTraceContextPropagator();
  const getter: Api.TextMapGetter<IncomingHttpHeaders> = {
    keys: (carrier) => Object.keys(carrier),
    get: (carrier, key) => carrier[key],
  };
  const setter: Api.TextMapSetter<Record<string, string>> = {
    set: (carrier, key, value) => {
      carrier[key] = value;
    },
  };

  return {
    request(method, path, headers, host) {
      const parent = propagator.extract(api.ROOT_CONTEXT, headers, getter);
      const [address, port] = splitHost(host);
      const span = tracer.startSpan(
        method,
        {
          kind: api.SpanKind.SERVER,
          attributes: {
            'http.request.method': method,
            'url.path': path,
            ...(address ? { 'server.address': address } : {}),
            ...(port ? { 'server.port': port } : {}),
          },
        },
        parent,
      );
      const context = api.trace.setSpan(parent, span);
      return new SpanRequestTrace(sdk, tracer, span, context, propagator, setter);
    },
    async close() {
      await provider.shutdown().catch(() => {});
    },
  };
}

function splitHost(host: string): [string | undefined, number | undefined] {
  if (!host) return [undefined, undefined];
  const match = /^(\[[^\]]+\]|[^:]+)(?::(\d+))?$/.exec(host);
  if (!match) return [host, undefined];
  return [match[1]!.replace(/^\[|\]$/g, ''), match[2] ? Number(match[2]) : undefined];
}

class SpanRequestTrace implements RequestTrace {
  constructor(
    private readonly sdk: Sdk,
    private readonly tracer: Api.Tracer,
    private readonly span: Api.Span,
    private readonly context: Api.Context,
    private readonly propagator: Core.W3CTraceContextPropagator,
    private readonly setter: Api.TextMapSetter<Record<string, string>>,
  ) {}

  attempt(method: string, url: URL, target: string, resendCount: number): AttemptTrace {
    const { api } = this.sdk;
    const attributes: Api.Attributes = {
      'http.request.method': method,
      'server.address': url.hostname.replace(/^\[|\]$/g, ''),
      'server.port': Number(url.port || (url.protocol === 'https:' ? 443 : 80)),
      'breakwater.target': target,
    };
    if (resendCount > 0) attributes['http.request.resend_count'] = resendCount;
    const span = this.tracer.startSpan(method, { kind: api.SpanKind.CLIENT, attributes }, this.context);
    const headers: Record<string, string> = {};
    this.propagator.inject(api.trace.setSpan(this.context, span), headers, this.setter);
    let ended = false;
    return {
      headers,
      end(status, errorType, firstByteMs) {
        // Once: an answer's span may be ended by its first byte after the attempt failed for the client.
        if (ended) return;
        ended = true;
        if (status !== undefined) span.setAttribute('http.response.status_code', status);
        if (firstByteMs !== undefined)
          span.setAttribute('breakwater.first_byte_ms', Math.round(firstByteMs * 1000) / 1000);
        if (errorType !== undefined || (status !== undefined && status >= 500)) {
          span.setAttribute('error.type', errorType ?? String(status));
          span.setStatus({ code: api.SpanStatusCode.ERROR });
        }
        span.end();
      },
    };
  }

  wait(kind: WaitKind, ms: number): void {
    this.span.addEvent('breakwater.wait', { 'breakwater.wait.kind': kind, 'breakwater.wait.ms': ms });
  }

  route(method: string, route: string): void {
    this.span.updateName(`${method} ${route}`);
  }

  redact(path: string, host: string): void {
    this.span.setAttribute('url.path', path);
    const [address] = splitHost(host);
    if (address) this.span.setAttribute('server.address', address);
  }

  end(outcome: RequestOutcome): void {
    const { api } = this.sdk;
    const span = this.span;
    span.setAttribute('http.response.status_code', outcome.status);
    span.setAttribute('breakwater.attempts', outcome.attempts);
    if (outcome.route !== null) span.setAttribute('breakwater.route', outcome.route);
    if (outcome.upstream !== null) span.setAttribute('breakwater.upstream', outcome.upstream);
    if (outcome.target !== null) span.setAttribute('breakwater.target', outcome.target);
    if (outcome.code !== null) {
      span.setAttribute('breakwater.error.code', outcome.code);
      span.setAttribute('error.type', outcome.code);
    }
    if (outcome.responsibility !== null) span.setAttribute('breakwater.responsibility', outcome.responsibility);
    if (outcome.status >= 500 || outcome.code !== null) span.setStatus({ code: api.SpanStatusCode.ERROR });
    span.end();
  }
}
