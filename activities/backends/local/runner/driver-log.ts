import { closeSync, openSync, writeSync } from 'node:fs';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

/** Fields of one log line; values must be JSON-serializable. */
export type LogFields = Record<string, unknown>;

/**
 * Structured log of the job driver: one JSON object per line with `time`, `level`, a constant `message` and the
 * event's fields. Lines are written synchronously, so the log is complete up to the moment a driver is killed.
 */
export class DriverLog {
  private readonly fd: number;

  constructor(file: string) {
    this.fd = openSync(file, 'a');
  }

  debug(message: string, fields: LogFields = {}): void {
    this.write('debug', message, fields);
  }

  info(message: string, fields: LogFields = {}): void {
    this.write('info', message, fields);
  }

  warn(message: string, fields: LogFields = {}): void {
    this.write('warn', message, fields);
  }

  error(message: string, fields: LogFields = {}): void {
    this.write('error', message, fields);
  }

  close(): void {
    closeSync(this.fd);
  }

  private write(level: LogLevel, message: string, fields: LogFields): void {
    const line = JSON.stringify({ time: new Date().toISOString(), level, message, pid: process.pid, ...fields });
    writeSync(this.fd, `${line}\n`);
  }
}

/** Turns a caught value into log fields: the error's name, message and stack. */
export function errorFields(error: unknown): LogFields {
  if (error instanceof Error) return { error: { name: error.name, message: error.message, stack: error.stack } };
  return { error: String(error) };
}
