#!/usr/bin/env node
/**
 * `breakwater`: argv → run | validate | schema | demo | stat | ca (SPEC §1, §12).
 * The only module that writes to stderr for the user and exits the process.
 *
 * Exit codes: 0 success; 1 invalid config or a failed start; 2 usage errors
 * and commands this version does not have yet.
 */
import { createRequire } from 'node:module';
import { parseArgs } from 'node:util';
import { startApp } from './app.js';
import { installRejectionNet } from './observe/last-net.js';
import { formatProblem, loadConfig, type LoadedConfig } from './config/index.js';
import { suggest } from './config/suggest.js';
import { createLogger } from './observe/logger.js';

const DEFAULT_CONFIG = 'config/breakwater.yaml';

const USAGE = `Usage: breakwater [command] [options]

Commands:
  run                  start the sidecar (the default)
  validate             check a config file and print every problem in it
  schema               print the config file's JSON Schema
  demo                 the sidecar in front of a flaky upstream, with a client
  stat                 per-route success rate, requests/s and latency of a running Breakwater
  ca create            make a name-constrained CA for TLS interception

Options:
  -c, --config FILE    config file (default: $BREAKWATER_CONFIG, then ${DEFAULT_CONFIG})
      --hosts H1,H2    (ca create) host names the CA may sign for
      --out DIR        (ca create) where to write the CA
      --admin URL      (stat) its admin address (default: $BREAKWATER_ADMIN, then http://127.0.0.1:9901)
      --watch          (stat) redraw every 2 s until interrupted
      --token-file F   (stat) the admin token, from a file (else $BREAKWATER_ADMIN_TOKEN)
  -h, --help           show this help
  -v, --version        print the version
`;

function version(): string {
  const pkg = createRequire(import.meta.url)('../package.json') as { version: string };
  return pkg.version;
}

function configPath(flag: string | undefined): string {
  return flag ?? (process.env.BREAKWATER_CONFIG || DEFAULT_CONFIG);
}

function plural(count: number, word: string): string {
  return `${count} ${word}${count === 1 ? '' : 's'}`;
}

async function loadOrReport(file: string): Promise<LoadedConfig | undefined> {
  const result = await loadConfig(file);
  if (result.ok) return result.loaded;
  process.stderr.write(result.problems.map((problem) => `${formatProblem(problem)}\n`).join(''));
  return undefined;
}

async function validate(file: string): Promise<number> {
  const loaded = await loadOrReport(file);
  if (!loaded) return 1;
  const { config } = loaded;
  process.stdout.write(
    `ok: ${plural(config.routes.length, 'route')}, ${plural(Object.keys(config.upstreams).length, 'upstream')} (${file})\n`,
  );
  return 0;
}

async function run(file: string): Promise<number | 'running'> {
  const loaded = await loadOrReport(file);
  if (!loaded) return 1;
  const logger = createLogger({ level: loaded.config.logging.level });
  let app;
  try {
    app = await startApp(loaded, logger, { watch: true });
  } catch (error) {
    const err = error as NodeJS.ErrnoException;
    process.stderr.write(
      `breakwater: cannot start: ${err.code === 'EADDRINUSE' ? `address in use (${err.message})` : err.message}\n`,
    );
    logger.flush();
    return 1;
  }
  const stop = (signal: NodeJS.Signals) => {
    logger.info({ signal }, 'shutting down');
    // In-flight requests may finish, but not for longer than drainTimeout.
    setTimeout(() => {
      logger.warn({ drainTimeoutMs: app.loaded().config.shutdown.drainTimeout }, 'drain took too long; exiting');
      logger.flush();
      process.exit(0);
    }, app.loaded().config.shutdown.drainTimeout + 2000).unref();
    void app.close().then(
      () => {
        logger.flush();
        process.exitCode = 0;
        process.exit();
      },
      (error: unknown) => {
        logger.error({ err: error }, 'shutdown failed');
        logger.flush();
        process.exit(1);
      },
    );
  };
  installRejectionNet(process, logger, app.metrics);
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  process.on('SIGHUP', () => {
    void app.reload('SIGHUP');
  });
  return 'running';
}

/** `breakwater stat`: the admin port's numbers, with the token from --token-file when the admin port asks for one. */
async function stat(admin: string | undefined, tokenFile: string | undefined, watch: boolean): Promise<number> {
  const { statCommand, statToken } = await import('./observe/stat-command.js');
  let token: string | undefined;
  try {
    token = statToken(tokenFile);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'unreadable';
    process.stderr.write(`breakwater: cannot read --token-file ${tokenFile}: ${code}\n`);
    return 1;
  }
  return statCommand(admin, watch, process.stdout, undefined, token);
}

export async function main(argv: readonly string[]): Promise<number | 'running'> {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...argv],
      allowPositionals: true,
      strict: true,
      options: {
        config: { type: 'string', short: 'c' },
        hosts: { type: 'string' },
        out: { type: 'string' },
        admin: { type: 'string' },
        'token-file': { type: 'string' },
        watch: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
        version: { type: 'boolean', short: 'v' },
      },
    });
  } catch (error) {
    process.stderr.write(`breakwater: ${(error as Error).message}\n\n${USAGE}`);
    return 2;
  }
  const { values, positionals } = parsed;
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  if (values.version) {
    process.stdout.write(`breakwater ${version()}\n`);
    return 0;
  }
  const [command = 'run', ...rest] = positionals;
  const file = configPath(values.config);
  const extra = command === 'ca' ? rest.slice(1) : rest;
  if (extra.length > 0) {
    process.stderr.write(`breakwater: unexpected argument "${extra[0]}"\n\n${USAGE}`);
    return 2;
  }
  switch (command) {
    case 'run':
      return run(file);
    case 'validate':
      return validate(file);
    case 'schema': {
      // Loaded here only: the schema's TypeBox form is not on the run path.
      const { configJsonSchema } = await import('./config/json-schema.js');
      process.stdout.write(`${JSON.stringify(configJsonSchema(), null, 2)}\n`);
      return 0;
    }
    case 'demo': {
      const { runDemo } = await import('./demo/run-demo.js');
      return runDemo();
    }
    case 'stat':
      return stat(values.admin, values['token-file'], values.watch ?? false);
    case 'ca':
      if (rest[0] !== 'create') {
        process.stderr.write(`breakwater: unknown ca command "${rest[0] ?? ''}"; did you mean "ca create"?\n`);
        return 2;
      }
      return (await import('./tls/ca-command.js')).caCreate(values.hosts, values.out);
    default: {
      const close = suggest(command, ['run', 'validate', 'schema', 'demo', 'stat', 'ca']);
      process.stderr.write(
        `breakwater: unknown command "${command}"${close ? `; did you mean "${close}"?` : ''}\n\n${USAGE}`,
      );
      return 2;
    }
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code !== 'running') process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(`breakwater: internal error: ${(error as Error).stack ?? String(error)}\n`);
    process.exitCode = 1;
  },
);
