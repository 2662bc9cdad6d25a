/**
 * The ports' edges (SPEC §2, §19.1, §20): where they listen, who they
 * serve, and the bounds on what a client sends.
 */
import { Type } from '@sinclair/typebox';
import { Duration, Fmt, NAME_FORMAT, Obj, OneOf, Opt, OrNull, Port, Size } from './schema-parts.js';
import { POLICY_MODES } from './defaults.js';

export const Listen = Obj({
  host: Opt(
    Type.String({
      minLength: 1,
      default: '127.0.0.1',
      description: '0.0.0.0 to be reached from other hosts (SPEC §20.1)',
    }),
  ),
  port: Opt(Port('proxy port', 3128)),
  serverNames: Opt(
    Type.Array(Fmt('server-name', {}), {
      default: [],
      description:
        'Host names served besides localhost, IP literals, single-label names and routes\' match.host: exact, *.domain, or "*" (no check)',
    }),
  ),
  allowOrigins: Opt(
    Type.Array(Fmt('origin', {}), {
      default: [],
      description: 'browser origins served (scheme://host[:port]); "*": no browser check (SPEC §20.1)',
    }),
  ),
});

export const Limits = Obj({
  maxBodySize: Opt(Size('request body limit', '10MiB')),
  maxHeaderSize: Opt(Size('request header limit', '16KiB')),
  clientBodyTimeout: Opt(Duration('the longest a request body may be silent between two reads (SPEC §20.4)', '30s')),
});

export const Admin = Obj({
  host: Opt(
    Type.String({
      minLength: 1,
      default: '0.0.0.0',
      description:
        'Prometheus and the probes reach /metrics, /healthz, /readyz here; the rest answers loopback peers or the token (SPEC §19.1)',
    }),
  ),
  port: Opt(Port('admin port', 9901)),
  token: Opt(
    OrNull(
      Type.String({
        minLength: 16,
        description:
          'a bearer token that opens /config, /status, /stats, /errors and the dashboard to non-loopback peers; a literal or "${env:NAME}", at least 16 characters',
      }),
    ),
  ),
  tokenFile: Opt(
    OrNull(
      Type.String({
        minLength: 1,
        description:
          'a file holding the admin token (trailing whitespace dropped; read again on reload); not with token',
      }),
    ),
  ),
});

/** `forwardProxy.callers[]` (SPEC §19.3): who a caller is, and its own list. */
export const ForwardCaller = Obj(
  {
    name: Fmt(NAME_FORMAT, { description: "the access log's and metrics' caller" }),
    match: Obj(
      {
        header: Opt(
          Type.Record(Fmt('header-name', {}), Type.String(), { description: 'NAME: value, matched exactly' }),
        ),
        source: Opt(
          Type.Union([Fmt('cidr', {}), Type.Array(Fmt('cidr', {}), { minItems: 1 })], {
            description: 'the peer address in this CIDR (or one of these)',
          }),
        ),
        proxyUser: Opt(
          Type.String({
            minLength: 1,
            description: 'the user of Proxy-Authorization: Basic (the password is not checked)',
          }),
        ),
      },
      {
        description:
          'every key given must hold; a caller identifies, it does not authenticate (match on source where it is a boundary)',
      },
    ),
    allowHosts: Opt(Type.Array(Fmt('allow-host', {}), { default: [] })),
    allowPorts: Opt(
      Type.Array(Type.Integer({ minimum: 1, maximum: 65535 }), {
        uniqueItems: true,
        description: 'default: forwardProxy.allowPorts',
      }),
    ),
    mode: Opt(OneOf(POLICY_MODES, { description: 'default: forwardProxy.mode' })),
  },
  { required: ['name', 'match'] },
);
