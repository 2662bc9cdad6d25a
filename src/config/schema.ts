/**
 * The config file's schema (SPEC §3), as data: a JSON Schema built with
 * TypeBox and checked by ajv. It describes the file as the user writes it
 * (durations as `"2s"`, sizes as `"1MiB"`); `resolve.ts` turns a file that
 * passed it into the typed, unit-converted {@link Config}.
 *
 * Rules kept everywhere: every object rejects unknown keys, nothing is
 * coerced (`"3"` is not `3`, `yes` is not `true`), and string forms with a
 * grammar (units, retry conditions, URLs, limiter keys) are ajv `format`s
 * backed by the same parsers the resolver uses, so the check and the
 * conversion cannot disagree.
 *
 * Its parts: schema-policies.ts (policies and routes), schema-upstream.ts,
 * schema-edge.ts (the ports), schema-services.ts (tracing, Redis, the
 * forward proxy), built from schema-parts.ts.
 *
 * Defaults live in defaults.ts ({@link DEFAULTS}) and are attached to the schema as
 * `default` annotations for editors and `breakwater schema`; they are merged
 * by the resolver, not by ajv, because a route's policy is merged over the
 * file's `defaults`, which is merged over these.
 */
import { Type, type Static } from '@sinclair/typebox';
import { Bool, DurationOrZero, NAME_FORMAT, Obj, OneOf, Opt } from './schema-parts.js';
import { Admin, Limits, Listen } from './schema-edge.js';
import { Upstream } from './schema-upstream.js';
import { policyKeys, Route } from './schema-policies.js';
import { ForwardProxy, Observability, Priorities, Redis, Tracing } from './schema-services.js';
import { LOG_LEVELS } from './defaults.js';

// ---------------------------------------------------------------------------
// The file

export const ConfigFileSchema = Obj(
  {
    version: Type.Unsafe<1>({
      type: 'integer',
      const: 1,
      description: 'config format version; this Breakwater reads 1',
    }),
    listen: Opt(Listen),
    admin: Opt(Admin),
    logging: Opt(
      Obj({
        level: Opt(OneOf(LOG_LEVELS, { default: 'info' })),
        accessLog: Opt(Bool('one JSON line per request', true)),
      }),
    ),
    tracing: Opt(Tracing),
    observability: Opt(Observability),
    priorities: Opt(Priorities),
    limits: Opt(Limits),
    shutdown: Opt(Obj({ drainTimeout: Opt(DurationOrZero('in-flight requests may finish for this long', '20s')) })),
    defaults: Opt(Obj(policyKeys, { description: 'merged into every route; a route overrides key by key' })),
    upstreams: Opt(Type.Record(Type.String(), Upstream, { propertyNames: { format: NAME_FORMAT }, default: {} })),
    routes: Type.Array(Route, { minItems: 1, description: 'tried in order; the first match wins' }),
    redis: Opt(Redis),
    forwardProxy: Opt(ForwardProxy),
  },
  {
    required: ['version', 'routes'],
    $id: 'https://breakwater.dev/schema/config-v1.json',
    title: 'Breakwater config',
  },
);

/** The file as written, after the schema accepted it. */
export type ConfigFile = Static<typeof ConfigFileSchema>;
export type RawRoute = ConfigFile['routes'][number];
export type RawUpstream = NonNullable<ConfigFile['upstreams']>[string];
export type RawPolicies = NonNullable<ConfigFile['defaults']>;
