import { ApplicationFailure, CancelledFailure } from '@temporalio/common';

/**
 * Failure kinds a stage can report. All but `Transient` are non-retryable: retrying cannot fix them, a person must
 * (a missing folder, a missing secret, a conflicting datastore, a job that failed its error threshold).
 */
export type StageFailureKind =
  | 'InvalidInput'
  | 'NotFound'
  | 'PermissionDenied'
  | 'Conflict'
  | 'JobFailed'
  | 'JobCanceled'
  | 'NotAvailable'
  | 'Transient';

/** Thrown by a backend when a stage fails for a known reason; `kind` decides whether Temporal retries it. */
export class StageError extends Error {
  /** For `Transient` failures: how long the service asked to wait (a `Retry-After` header), in milliseconds. */
  readonly retryAfterMs: number | undefined;

  constructor(
    readonly kind: StageFailureKind,
    message: string,
    /** JSON-serializable context shown in the failure's details; never secret values. */
    readonly details?: Record<string, unknown>,
    options?: { cause?: unknown; retryAfterMs?: number },
  ) {
    super(message, options);
    this.retryAfterMs = options?.retryAfterMs;
    this.name = 'StageError';
  }
}

/** Node error codes of file-system calls that retrying cannot fix. */
const NON_RETRYABLE_FS_CODES: Record<string, StageFailureKind> = {
  EACCES: 'PermissionDenied',
  EPERM: 'PermissionDenied',
  EROFS: 'PermissionDenied',
  ENOTDIR: 'InvalidInput',
  EISDIR: 'InvalidInput',
  ENAMETOOLONG: 'InvalidInput',
};

/**
 * Converts any error thrown inside a stage into the `ApplicationFailure` Temporal sees. This is the one place that
 * decides what is retried: a `StageError` by its kind, file-system permission and path errors never, anything else
 * (I/O hiccups, crashed child processes, network errors) always, under the stage's retry policy.
 */
export function toActivityFailure(error: unknown): ApplicationFailure {
  if (error instanceof ApplicationFailure) return error;
  if (error instanceof StageError) {
    return ApplicationFailure.create({
      message: error.message,
      type: error.kind,
      nonRetryable: error.kind !== 'Transient',
      details: error.details ? [error.details] : [],
      ...(error.retryAfterMs !== undefined ? { nextRetryDelay: error.retryAfterMs } : {}),
      cause: error.cause instanceof Error ? error.cause : undefined,
    });
  }
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  const message = error instanceof Error ? error.message : String(error);
  if (code && NON_RETRYABLE_FS_CODES[code]) {
    return ApplicationFailure.create({ message, type: NON_RETRYABLE_FS_CODES[code], nonRetryable: true });
  }
  return ApplicationFailure.create({
    message,
    type: 'Transient',
    nonRetryable: false,
    cause: error instanceof Error ? error : undefined,
  });
}

/** Runs a stage body and converts whatever it throws with `toActivityFailure`. */
export async function classifyFailures<T>(body: () => Promise<T>): Promise<T> {
  try {
    return await body();
  } catch (error) {
    // Cancellation must reach Temporal unchanged so the activity is reported as cancelled, not failed.
    if (error instanceof CancelledFailure) throw error;
    throw toActivityFailure(error);
  }
}
