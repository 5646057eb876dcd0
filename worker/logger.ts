import { DefaultLogger, type LogEntry } from '@temporalio/worker';
import type { LogLevel } from '../common/config';

/**
 * A logger that writes one JSON object per line to stderr: time, level, the constant message and its fields, so
 * log collectors can filter by field. Errors in the fields are flattened to their name, message and stack.
 */
export function createJsonLogger(level: LogLevel): DefaultLogger {
  return new DefaultLogger(level, (entry: LogEntry) => {
    const time = new Date(Number(entry.timestampNanos / 1_000_000n)).toISOString();
    const fields = entry.meta ? serializeFields(entry.meta) : {};
    process.stderr.write(`${JSON.stringify({ time, level: entry.level, message: entry.message, ...fields })}\n`);
  });
}

function serializeFields(meta: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(meta)) {
    out[key] = value instanceof Error ? { name: value.name, message: value.message, stack: value.stack } : value;
  }
  return out;
}
