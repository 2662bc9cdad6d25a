/**
 * The file's sections for the services around the proxy (schema.ts):
 * tracing, the error journal, priority classes, Redis, the forward proxy.
 */
import { Type } from '@sinclair/typebox';
import { Bool, Duration, Fmt, Obj, OneOf, Opt, OrNull, Share } from './schema-parts.js';
import { ForwardCaller } from './schema-edge.js';
import { POLICY_MODES, CONNECT_MODES, DEFAULTS, REDIS_ON_ERROR, TRACE_PROTOCOLS } from './defaults.js';

export const Tracing = Obj(
  {
    enabled: Opt(Bool('OpenTelemetry traces (SPEC §11); OTEL_SDK_DISABLED=true also turns them off', false)),
    endpoint: Opt(
      OrNull(
        Fmt('otlp-url', {
          description:
            'OTLP/HTTP traces URL (a query is kept, and secret); default OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, else OTEL_EXPORTER_OTLP_ENDPOINT + /v1/traces, else http://127.0.0.1:4318/v1/traces',
        }),
      ),
    ),
    protocol: Opt(
      OneOf(TRACE_PROTOCOLS, {
        default: 'http/protobuf',
        description: 'default OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, else http/protobuf',
      }),
    ),
    serviceName: Opt(
      Type.String({
        minLength: 1,
        default: 'breakwater',
        description: 'default OTEL_SERVICE_NAME, else breakwater',
      }),
    ),
    sampleRatio: Opt(
      Type.Number({
        minimum: 0,
        maximum: 1,
        default: 1,
        description: 'share of requests without a sampled parent that are traced',
      }),
    ),
  },
  { description: 'OpenTelemetry traces (SPEC §11)' },
);

export const Observability = Obj({
  errorJournal: Opt(
    Obj(
      {
        size: Opt(
          Type.Integer({
            minimum: 0,
            maximum: 10000,
            default: DEFAULTS.observability.errorJournal.size,
            description: 'requests kept; 0 keeps none',
          }),
        ),
      },
      { description: 'the last requests that ended in an error, at GET /errors on the admin port (SPEC §12)' },
    ),
  ),
});

export const Priorities = OrNull(
  Obj(
    {
      header: Opt(
        Fmt('header-name', {
          default: DEFAULTS.priorities.header,
          description: 'request header that names a class; never forwarded',
        }),
      ),
      default: Type.String({ minLength: 1, description: 'the class of a request that names none' }),
      classes: Type.Array(
        Obj(
          {
            name: Type.String({
              minLength: 1,
              pattern: '^[A-Za-z0-9_.-]+$',
              description: 'case-sensitive; letters, digits, _ . -',
            }),
            quotaFloor: Opt(
              Share(
                "a pacer does not release this class while less than this share of the upstream's announced quota is left",
              ),
            ),
          },
          { required: ['name'] },
        ),
        { minItems: 1, description: 'highest first' },
      ),
      promoteAfter: Opt(
        Duration(
          'starvation guard: a request of a lower class that has waited this long in a queue or for a pacer is released as one of the highest class (first come first served among them); unset: off',
        ),
      ),
    },
    {
      required: ['default', 'classes'],
      description: 'priority classes (SPEC §13): where requests wait, a higher class goes first',
    },
  ),
);

export const Redis = OrNull(
  Obj({
    url: Opt(Fmt('redis-url', { default: DEFAULTS.redis.url })),
    onError: Opt(OneOf(REDIS_ON_ERROR, { default: 'local' })),
    timeout: Opt(
      Duration('the longest a request waits for Redis; slower is a Redis failure (SPEC §9)', DEFAULTS.redis.timeout),
    ),
    sentinel: Opt(
      OrNull(
        Obj(
          {
            name: Type.String({ minLength: 1, description: 'the master group name the sentinels monitor' }),
            sentinels: Type.Array(Fmt('host-port'), { minItems: 1, description: 'host:port of each sentinel' }),
            password: Opt(
              Type.String({
                minLength: 1,
                description: 'the password of the Redis servers (the master and its replicas)',
              }),
            ),
            sentinelPassword: Opt(
              Type.String({ minLength: 1, description: 'the password of the sentinels themselves' }),
            ),
          },
          { required: ['name', 'sentinels'] },
        ),
      ),
    ),
    cluster: Opt(
      OrNull(
        Obj(
          {
            nodes: Type.Array(Fmt('host-port'), {
              minItems: 1,
              description: 'host:port of some cluster nodes; the rest are discovered',
            }),
          },
          { required: ['nodes'] },
        ),
      ),
    ),
    username: Opt(
      OrNull(Type.String({ minLength: 1, description: 'ACL user of every form (url, sentinel, cluster)' })),
    ),
    password: Opt(OrNull(Type.String({ minLength: 1, description: 'password of the Redis servers, every form' }))),
    db: Opt(Type.Integer({ minimum: 0, maximum: 15, description: 'database number (not with cluster)' })),
    tls: Opt(
      OrNull(
        Obj({
          ca: Opt(OrNull(Type.String({ minLength: 1, description: 'a CA bundle: a file path or PEM text' }))),
          insecureSkipVerify: Opt(Bool('skip certificate verification (testing only)', false)),
        }),
      ),
    ),
  }),
);

export const ForwardProxy = Obj({
  enabled: Opt(Bool('accept absolute-form and CONNECT requests', false)),
  allowHosts: Opt(
    Type.Array(Fmt('allow-host'), {
      default: [],
      description:
        'hosts the forward proxy may reach: exact, *.domain, an IP, or "*" (every host; private addresses only by an exact entry)',
    }),
  ),
  allowPorts: Opt(Type.Array(Type.Integer({ minimum: 1, maximum: 65535 }), { uniqueItems: true, default: [80, 443] })),
  denyPrivateNetworks: Opt(Bool('refuse targets that resolve to private networks', true)),
  mode: Opt(
    OneOf(POLICY_MODES, {
      default: 'enforce',
      description:
        'report: a target the allow-lists refuse is forwarded, flagged WOULD_DENY; private addresses stay refused (SPEC §19.2)',
    }),
  ),
  callers: Opt(
    Type.Array(ForwardCaller, {
      default: [],
      description: 'per-caller allow-lists, in order; the first match replaces the global one (SPEC §19.3)',
    }),
  ),
  connect: Opt(Obj({ mode: Opt(OneOf(CONNECT_MODES, { default: 'tunnel' })) })),
  intercept: Opt(
    OrNull(
      Obj({
        caCert: Opt(
          Type.String({
            minLength: 1,
            description: 'the CA certificate apps trust: a file (relative to this file) or inline PEM',
          }),
        ),
        caKey: Opt(Type.String({ minLength: 1, description: 'the CA private key: a file readable by its owner only' })),
        hosts: Opt(
          Type.Array(Fmt('host-pattern'), {
            description: 'CONNECT targets to intercept: names, *.domain wildcards, IP addresses',
          }),
        ),
        upstreamCa: Opt(
          Type.String({
            minLength: 1,
            description:
              'extra CA certificates (file or PEM) trusted for the re-originated TLS, besides the system roots',
          }),
        ),
      }),
    ),
  ),
});
