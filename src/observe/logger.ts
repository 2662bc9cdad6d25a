/**
 * The process logger: JSON lines on stdout (SPEC §1), through pino, which
 * does redaction and fast serialisation so that we don't hand-roll either.
 */
import { pino, type Logger } from 'pino';
import type { LogLevel } from '../config/types.js';

export type { Logger };

export interface LoggerOptions {
  readonly level: LogLevel;
  /** Where lines go; stdout by default. Tests pass a stream to read them back. */
  readonly destination?: NodeJS.WritableStream;
}

export function createLogger(options: LoggerOptions): Logger {
  return pino(
    {
      level: options.level,
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      messageKey: 'msg',
    },
    options.destination ?? pino.destination({ dest: 1, sync: false }),
  );
}
