import { execFile } from 'node:child_process';
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
export function runCli(args: readonly string[], options: { env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number } = {}): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [CLI, ...args],
      { cwd: options.cwd ?? ROOT, env: { PATH: process.env.PATH, ...options.env }, timeout: options.timeoutMs ?? 20_000 },
      (error, stdout, stderr) => {
        const code = error ? ((error as { code?: unknown }).code as number | null) : 0;
        resolve({ code: typeof code === 'number' ? code : null, signal: (error as { signal?: NodeJS.Signals } | null)?.signal ?? null, stdout, stderr });
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
export function parseProblemLines(stderr: string): { file: string; line: number; col: number; path: string; message: string }[] {
  return stderr
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((text) => {
      const match = /^(.*?):(\d+):(\d+): (\S+): (.*)$/.exec(text);
      if (!match) throw new Error(`not a problem line: ${text}`);
      return { file: match[1]!, line: Number(match[2]), col: Number(match[3]), path: match[4]!, message: match[5]! };
    });
}
