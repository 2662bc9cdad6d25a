import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const CLI = path.join(ROOT, 'dist/cli.js');

export interface CliResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs the built `breakwater` binary to completion (bounded by a generous timeout). */
export function runCli(
  args: readonly string[],
  options: { env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number } = {},
): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [CLI, ...args],
      {
        cwd: options.cwd ?? ROOT,
        env: { PATH: process.env.PATH, ...options.env },
        timeout: options.timeoutMs ?? 20_000,
      },
      (error, stdout, stderr) => {
        const code = error ? ((error as { code?: unknown }).code as number | null) : 0;
        resolve({
          code: typeof code === 'number' ? code : null,
          signal: (error as { signal?: NodeJS.Signals } | null)?.signal ?? null,
          stdout,
          stderr,
        });
      },
    );
  });
}

/** Writes `text` to a fresh temporary directory and returns the file's path. */
export function writeTemp(name: string, text: string): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'breakwater-test-'));
  const file = path.join(dir, name);
  writeFileSync(file, text);
  return file;
}

/** Parses `FILE:LINE:COL: path: message` lines. */
export function parseProblemLines(
  stderr: string,
): { file: string; line: number; col: number; path: string; message: string }[] {
  return stderr
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((text) => {
      const match = /^(.*?):(\d+):(\d+): (\S+): (.*)$/.exec(text);
      if (!match) throw new Error(`not a problem line: ${text}`);
      return { file: match[1]!, line: Number(match[2]), col: Number(match[3]), path: match[4]!, message: match[5]! };
    });
}

export interface Replica {
  readonly child: ChildProcess;
  /** The proxy's base URL. */
  readonly url: string;
  /** The admin port's base URL. */
  readonly adminUrl: string;
  /** Everything it wrote to stdout so far (JSON log lines). */
  output(): string;
  /** SIGTERM, then waits for it to exit. */
  stop(): Promise<void>;
}

/** Starts `breakwater run --config file` as its own process (a replica) and waits until it listens; `nodeArgs` go to node first. */
export async function startReplica(
  file: string,
  options: { nodeArgs?: readonly string[]; env?: NodeJS.ProcessEnv } = {},
): Promise<Replica> {
  const child = spawn(process.execPath, [...(options.nodeArgs ?? []), CLI, 'run', '--config', file], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: options.env ?? process.env,
  });
  let out = '';
  child.stdout!.on('data', (chunk: Buffer) => (out += chunk.toString()));
  const deadline = Date.now() + 15_000;
  while (!out.includes('"msg":"listening"')) {
    if (Date.now() > deadline || child.exitCode !== null) {
      // Never leave it running behind a failed test.
      if (child.exitCode === null) child.kill('SIGKILL');
      throw new Error(`a replica did not listen: ${out}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  const line = JSON.parse(out.split('\n').find((l) => l.includes('"msg":"listening"'))!) as {
    listen: string;
    admin: string;
  };
  const exited = new Promise((resolve) => child.once('exit', resolve));
  return {
    child,
    url: `http://${line.listen}`,
    adminUrl: `http://${line.admin}`,
    output: () => out,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}
