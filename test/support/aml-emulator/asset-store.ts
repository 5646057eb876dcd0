/**
 * Versioned assets of the emulated workspace: data, code, environments and components, each a container
 * (`/data/{name}`) with immutable versions (`/data/{name}/versions/{version}`).
 *
 * Mutability follows the spec's `x-ms-mutability`: a version's `description`, `tags`, `properties` and
 * `isArchived` can be updated by a later PUT. Every other field is fixed at creation, so a PUT that changes one is
 * rejected with the service's error for that asset type. A PUT that repeats the stored version is a safe retry.
 */
import { isDeepStrictEqual } from 'node:util';
import { userError, type ArmError } from './arm-errors';
import { childArmId, notFoundError, systemData, type ResourceTimes, type WorkspaceIdentity } from './workspace';

export type AssetKind = 'data' | 'codes' | 'environments' | 'components';
export const ASSET_KINDS: readonly AssetKind[] = ['data', 'codes', 'environments', 'components'];

/** Fields of a version or container that a later PUT may change. */
const MUTABLE_FIELDS = ['description', 'tags', 'properties', 'isArchived'] as const;

export type ListViewType = 'ActiveOnly' | 'ArchivedOnly' | 'All';

export interface AssetVersionRecord extends ResourceTimes {
  name: string;
  version: string;
  /** Properties as stored: the PUT body's properties with the spec's defaults filled in. */
  properties: Record<string, unknown>;
}

export interface AssetContainerRecord extends ResourceTimes {
  name: string;
  properties: Record<string, unknown>;
  versions: Map<string, AssetVersionRecord>;
}

/** Per-kind rules: how to fill defaults, what the service adds to responses and how it words a rejected change. */
interface AssetKindRules {
  /** Singular noun of the service's messages, e.g. "Environment". */
  noun: string;
  versionDefaults: Record<string, unknown>;
  /** Read-only fields the service adds to a version in responses. */
  versionReadOnly: Record<string, unknown>;
  /** The error for a PUT that changes a create-only field of an existing version. */
  changedVersionError(name: string, version: string, changedFields: string[]): ArmError;
}

function alreadyRegistered(noun: string, name: string, version: string): ArmError {
  return userError(`${noun} ${name} with version ${version} is already registered and cannot be changed.`);
}

const ASSET_PATHS_ERROR = 'Asset paths cannot be updated.';

const KIND_RULES: Record<AssetKind, AssetKindRules> = {
  codes: {
    noun: 'Code',
    versionDefaults: { isAnonymous: false, isArchived: false },
    versionReadOnly: {},
    // The service's wording when codeUri changes; it is the only create-only field of a code version besides isAnonymous.
    changedVersionError: () => userError(ASSET_PATHS_ERROR),
  },
  data: {
    noun: 'Data',
    versionDefaults: { isAnonymous: false, isArchived: false },
    versionReadOnly: {},
    changedVersionError: (name, version, changedFields) =>
      // NOTE: unconfirmed for data assets: "Asset paths cannot be updated." is the code asset's wording for a
      // changed path, and the "already registered" form is the environment's wording applied to data.
      changedFields.includes('dataUri') ? userError(ASSET_PATHS_ERROR) : alreadyRegistered('Data', name, version),
  },
  environments: {
    noun: 'Environment',
    versionDefaults: { isAnonymous: false, isArchived: false, autoRebuild: 'Disabled', osType: 'Linux' },
    versionReadOnly: { environmentType: 'UserCreated' },
    changedVersionError: (name, version) => alreadyRegistered('Environment', name, version),
  },
  components: {
    noun: 'Component',
    versionDefaults: { isAnonymous: false, isArchived: false },
    versionReadOnly: {},
    // NOTE: unconfirmed for components: the environment's "already registered" wording applied to components.
    changedVersionError: (name, version) => alreadyRegistered('Component', name, version),
  },
};

export class AssetStore {
  private readonly containers = new Map<AssetKind, Map<string, AssetContainerRecord>>(
    ASSET_KINDS.map((kind) => [kind, new Map<string, AssetContainerRecord>()]),
  );

  constructor(private readonly workspace: WorkspaceIdentity) {}

  getContainer(kind: AssetKind, name: string): AssetContainerRecord | undefined {
    return this.containers.get(kind)?.get(name);
  }

  requireContainer(kind: AssetKind, name: string): AssetContainerRecord {
    const container = this.getContainer(kind, name);
    if (container === undefined) throw notFoundError(this.workspace, kind, name);
    return container;
  }

  getVersion(kind: AssetKind, name: string, version: string): AssetVersionRecord | undefined {
    return this.getContainer(kind, name)?.versions.get(version);
  }

  requireVersion(kind: AssetKind, name: string, version: string): AssetVersionRecord {
    const record = this.getVersion(kind, name, version);
    if (record === undefined) throw notFoundError(this.workspace, kind, name, 'versions', version);
    return record;
  }

  /** Creates or updates a container from a PUT body; a data container's `dataType` cannot change. */
  putContainer(kind: AssetKind, name: string, properties: Record<string, unknown>): { created: boolean; record: AssetContainerRecord } {
    const now = new Date().toISOString();
    const normalized: Record<string, unknown> = { isArchived: false, ...structuredClone(properties) };
    delete normalized.latestVersion;
    delete normalized.nextVersion;
    const existing = this.getContainer(kind, name);
    if (existing === undefined) {
      const record: AssetContainerRecord = { name, properties: normalized, versions: new Map(), createdAt: now, modifiedAt: now };
      this.containersOf(kind).set(name, record);
      return { created: true, record };
    }
    const changed = changedCreateOnlyFields(existing.properties, normalized);
    if (changed.length > 0) {
      // NOTE: the service's wording for a changed create-only container field (a data container's dataType) is unconfirmed.
      throw userError(`${KIND_RULES[kind].noun} container ${name} already exists; its ${changed.join(', ')} cannot be changed.`);
    }
    existing.properties = normalized;
    existing.modifiedAt = now;
    return { created: false, record: existing };
  }

  /**
   * Creates a version, or applies a repeated PUT to an existing one. The container is created with the first
   * version, as the service does when a client registers a version without creating its container.
   */
  putVersion(kind: AssetKind, name: string, version: string, properties: Record<string, unknown>): { created: boolean; record: AssetVersionRecord } {
    const rules = KIND_RULES[kind];
    const now = new Date().toISOString();
    const normalized: Record<string, unknown> = { ...rules.versionDefaults, ...structuredClone(properties) };
    for (const field of Object.keys(rules.versionReadOnly)) delete normalized[field];

    let container = this.getContainer(kind, name);
    if (container === undefined) {
      const containerProperties: Record<string, unknown> = { isArchived: false };
      if (kind === 'data') containerProperties.dataType = normalized.dataType;
      container = { name, properties: containerProperties, versions: new Map(), createdAt: now, modifiedAt: now };
      this.containersOf(kind).set(name, container);
    }

    const existing = container.versions.get(version);
    if (existing === undefined) {
      const record: AssetVersionRecord = { name, version, properties: normalized, createdAt: now, modifiedAt: now };
      container.versions.set(version, record);
      container.modifiedAt = now;
      return { created: true, record };
    }
    const changed = changedCreateOnlyFields(existing.properties, normalized);
    if (changed.length > 0) throw rules.changedVersionError(name, version, changed);
    existing.properties = normalized;
    existing.modifiedAt = now;
    return { created: false, record: existing };
  }

  deleteContainer(kind: AssetKind, name: string): boolean {
    return this.containersOf(kind).delete(name);
  }

  deleteVersion(kind: AssetKind, name: string, version: string): boolean {
    return this.getContainer(kind, name)?.versions.delete(version) ?? false;
  }

  listContainers(kind: AssetKind, view: ListViewType): AssetContainerRecord[] {
    return [...this.containersOf(kind).values()].filter((record) => inView(record.properties, view)).sort(byNewest);
  }

  /**
   * Lists versions, newest first unless `orderBy` sets another order (`createdtime asc|desc`, `version asc|desc`),
   * keeping those whose tags match every `key` or `key=value` of the comma-separated `tags`, at most `top`.
   */
  listVersions(
    kind: AssetKind,
    name: string,
    options: { view: ListViewType; orderBy?: string; top?: number; tags?: string },
  ): AssetVersionRecord[] {
    const container = this.getContainer(kind, name);
    if (container === undefined) return [];
    let records = [...container.versions.values()].filter((record) => inView(record.properties, options.view));
    if (options.tags !== undefined && options.tags !== '') records = records.filter((record) => hasTags(record.properties, options.tags ?? ''));

    const [field, direction] = (options.orderBy ?? 'createdtime desc').toLowerCase().split(/\s+/);
    const ascending = direction === 'asc';
    records.sort((a, b) => {
      const order = field === 'version' ? a.version.localeCompare(b.version, 'en', { numeric: true }) : a.createdAt.localeCompare(b.createdAt);
      return ascending ? order : -order;
    });
    return options.top === undefined ? records : records.slice(0, options.top);
  }

  versionResource(kind: AssetKind, record: AssetVersionRecord): Record<string, unknown> {
    return {
      id: childArmId(this.workspace, kind, record.name, 'versions', record.version),
      name: record.version,
      type: `Microsoft.MachineLearningServices/workspaces/${kind}/versions`,
      systemData: systemData(record),
      properties: { ...structuredClone(record.properties), ...KIND_RULES[kind].versionReadOnly },
    };
  }

  /** Returns the container's ARM envelope, with read-only `latestVersion` and `nextVersion` computed from its versions. */
  containerResource(kind: AssetKind, record: AssetContainerRecord): Record<string, unknown> {
    const versions = [...record.versions.values()].sort((a, b) => a.createdAt.localeCompare(b.createdAt));
    const latest = versions.at(-1)?.version;
    const numeric = versions.map((entry) => Number(entry.version)).filter((value) => Number.isInteger(value) && value >= 0);
    // NOTE: how the service computes nextVersion for non-numeric version names is unconfirmed; this takes the
    // highest integer version plus one.
    const nextVersion = String(numeric.length === 0 ? 1 : Math.max(...numeric) + 1);
    return {
      id: childArmId(this.workspace, kind, record.name),
      name: record.name,
      type: `Microsoft.MachineLearningServices/workspaces/${kind}`,
      systemData: systemData(record),
      properties: {
        ...structuredClone(record.properties),
        ...(latest !== undefined ? { latestVersion: latest } : {}),
        nextVersion,
      },
    };
  }

  private containersOf(kind: AssetKind): Map<string, AssetContainerRecord> {
    const map = this.containers.get(kind);
    if (map === undefined) throw new Error(`unknown asset kind ${kind}; expected one of ${ASSET_KINDS.join(', ')}`);
    return map;
  }
}

/** Names of the fields outside MUTABLE_FIELDS whose values differ between two stored property sets. */
function changedCreateOnlyFields(stored: Record<string, unknown>, incoming: Record<string, unknown>): string[] {
  const mutable = new Set<string>(MUTABLE_FIELDS);
  const fields = new Set([...Object.keys(stored), ...Object.keys(incoming)]);
  return [...fields].filter((field) => !mutable.has(field) && !isDeepStrictEqual(stored[field], incoming[field])).sort();
}

function inView(properties: Record<string, unknown>, view: ListViewType): boolean {
  const archived = properties.isArchived === true;
  if (view === 'All') return true;
  return view === 'ArchivedOnly' ? archived : !archived;
}

function hasTags(properties: Record<string, unknown>, filter: string): boolean {
  const tags = (properties.tags ?? {}) as Record<string, unknown>;
  return filter.split(',').every((entry) => {
    const [key, value] = entry.split('=');
    if (!(key.trim() in tags)) return false;
    return value === undefined || tags[key.trim()] === value.trim();
  });
}

function byNewest(a: ResourceTimes, b: ResourceTimes): number {
  return b.createdAt.localeCompare(a.createdAt);
}
