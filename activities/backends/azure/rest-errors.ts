import { RestError } from '@azure/core-rest-pipeline';
import { StageError } from '../../errors';

/** Description of an Azure call for error messages, e.g. action `read workspace ws1`, and the role it needs. */
export interface AzureOperation {
  action: string;
  /** The Azure role that grants this action, named in 401/403 messages. */
  role: string;
}

/**
 * Maps an error from an Azure SDK call to a `StageError`: 401/403 are non-retryable and name the role that is
 * missing, 404 is `NotFound`, 409 `Conflict`, other 4xx `InvalidInput`, and 429, 5xx, timeouts and network errors
 * are `Transient` (429 and 503 carry the service's `Retry-After`). Messages never include request bodies, so a
 * secret sent in one cannot leak.
 */
export function classifyAzureError(error: unknown, operation: AzureOperation): StageError {
  if (error instanceof StageError) return error;
  if (!(error instanceof RestError)) {
    const message = error instanceof Error ? error.message : String(error);
    return new StageError('Transient', `${operation.action} failed: ${message}`, undefined, { cause: error });
  }

  const status = error.statusCode;
  const reason = `${error.code ?? 'error'}: ${firstLine(error.message)}`;
  const details = { status, code: error.code };
  if (status === undefined) {
    // No response at all: DNS, refused connection, TLS or timeout. The next attempt may reach the service.
    return new StageError('Transient', `${operation.action} failed without a response (${reason})`, details, { cause: error });
  }
  if (status === 401) {
    return new StageError(
      'PermissionDenied',
      `${operation.action} was rejected as unauthenticated (401, ${reason}); check the credential's tenant and that its token is for this cloud`,
      details,
    );
  }
  if (status === 403) {
    return new StageError(
      'PermissionDenied',
      `${operation.action} was denied (403, ${reason}); grant the worker's identity the ${operation.role} role`,
      { ...details, role: operation.role },
    );
  }
  if (status === 404) return new StageError('NotFound', `${operation.action} failed: not found (${reason})`, details);
  if (status === 409) return new StageError('Conflict', `${operation.action} failed: conflict (${reason})`, details);
  if (status === 429 || status >= 500) {
    const retryAfterMs = retryAfterFrom(error);
    return new StageError(
      'Transient',
      `${operation.action} failed with ${status} (${reason}); it will be retried`,
      details,
      { cause: error, ...(retryAfterMs !== undefined ? { retryAfterMs } : {}) },
    );
  }
  return new StageError('InvalidInput', `${operation.action} was rejected (${status}, ${reason})`, details);
}

/** Runs one Azure call and classifies what it throws. */
export async function callAzure<T>(operation: AzureOperation, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (error) {
    throw classifyAzureError(error, operation);
  }
}

function retryAfterFrom(error: RestError): number | undefined {
  const headers = error.response?.headers;
  const milliseconds = headers?.get('retry-after-ms') ?? headers?.get('x-ms-retry-after-ms');
  if (milliseconds && /^\d+$/.test(milliseconds)) return Number(milliseconds);
  const retryAfter = headers?.get('retry-after');
  if (!retryAfter) return undefined;
  if (/^\d+$/.test(retryAfter)) return Number(retryAfter) * 1000;
  const date = Date.parse(retryAfter);
  return Number.isNaN(date) ? undefined : Math.max(0, date - Date.now());
}

function firstLine(text: string): string {
  const line = text.split('\n')[0] ?? '';
  return line.length > 300 ? `${line.slice(0, 300)}…` : line;
}
