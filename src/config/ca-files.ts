/**
 * CA bundles and the interception CA key named in the config: a file
 * (relative to the config file) or inline PEM, read and checked at load.
 */
import { createPrivateKey, type KeyObject } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import type { Parsed } from './units.js';

export function isPem(text: string): boolean {
  return text.includes('-----BEGIN ');
}

export function readCa(ca: string, baseDir: string): Parsed<string> {
  if (isPem(ca)) return { ok: true, value: ca };
  const file = path.resolve(baseDir, ca);
  try {
    const text = readFileSync(file, 'utf8');
    if (!isPem(text)) return { ok: false, message: `${file} holds no PEM certificate` };
    return { ok: true, value: text };
  } catch (error) {
    return {
      ok: false,
      message: `cannot read the CA file ${file}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`,
    };
  }
}

/** The CA key: a file (never inline), owner-only, a private key. */
export function readCaKey(keyFile: string, baseDir: string): Parsed<KeyObject> {
  if (isPem(keyFile))
    return {
      ok: false,
      message:
        'write the path of the key file, not the key: a key inline in the config would be shown and copied with it',
    };
  const file = path.resolve(baseDir, keyFile);
  try {
    const mode = statSync(file).mode & 0o777;
    if ((mode & 0o077) !== 0)
      return {
        ok: false,
        message: `${file} is readable by others (mode ${mode.toString(8).padStart(4, '0')}): run chmod 600 ${file}`,
      };
    return { ok: true, value: createPrivateKey(readFileSync(file)) };
  } catch (error) {
    const { code, syscall } = error as NodeJS.ErrnoException;
    return { ok: false, message: syscall ? `cannot read the CA key ${file}: ${code}` : `${file} holds no private key` };
  }
}
