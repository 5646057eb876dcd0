import { StageError } from '../errors';
import type { Backend } from '../../workflows/input';
import type { ScoringBackend } from './backend';

/** The backends a worker offers, by name. A worker started without Azure settings offers only `local`. */
export type BackendRegistry = Partial<Record<Backend, ScoringBackend>>;

/** Returns the backend a stage asked for, or a non-retryable error that says which backends this worker has. */
export function selectBackend(registry: BackendRegistry, name: Backend): ScoringBackend {
  const backend = registry[name];
  if (backend) return backend;
  const available = Object.keys(registry).join(', ') || 'none';
  throw new StageError(
    'NotAvailable',
    `backend "${name}" is not available on this worker (available: ${available}); set "backend" to one of those`,
    { backend: name, available },
  );
}
