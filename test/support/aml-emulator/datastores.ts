/**
 * Datastores of the emulated workspace. Secrets sent in a PUT are kept apart from the stored definition, so that
 * GET, PUT and list responses never contain them. Only `listSecrets` returns them.
 */
import { ArmError, userError } from './arm-errors';
import type { BlobStorage } from './blob-storage';
import { childArmId, notFoundError, systemData, type ResourceTimes, type WorkspaceIdentity } from './workspace';

/** Name of the default datastore that Azure ML creates in every workspace. */
export const DEFAULT_DATASTORE_NAME = 'workspaceblobstore';
/** Name of the datastore of the run-artifact container, where job logs go. */
export const ARTIFACT_DATASTORE_NAME = 'workspaceartifactstore';

export interface DatastoreRecord extends ResourceTimes {
  name: string;
  /** The datastore's properties as sent, without `credentials.secrets` and without read-only fields. */
  properties: Record<string, unknown>;
  /** `credentials.secrets` as sent, or undefined for credentials without secrets. */
  secrets: Record<string, unknown> | undefined;
  isDefault: boolean;
}

export interface DatastoreListFilter {
  isDefault?: boolean;
  names?: string[];
  searchText?: string;
  orderBy?: string;
  orderByAsc: boolean;
}

export class DatastoreStore {
  private readonly records = new Map<string, DatastoreRecord>();

  constructor(
    private readonly workspace: WorkspaceIdentity,
    private readonly storage: BlobStorage,
  ) {}

  /** Registers an AzureBlob datastore on the emulator's storage account with its account key, as the service does. */
  registerBlobDatastore(name: string, containerName: string, isDefault: boolean): DatastoreRecord {
    const now = new Date().toISOString();
    const record: DatastoreRecord = {
      name,
      properties: {
        datastoreType: 'AzureBlob',
        accountName: this.storage.account.accountName,
        containerName,
        endpoint: 'core.windows.net',
        protocol: 'https',
        serviceDataAccessAuthIdentity: 'None',
        credentials: { credentialsType: 'AccountKey' },
        description: '',
        tags: {},
        properties: {},
      },
      secrets: { secretsType: 'AccountKey', key: this.storage.account.accountKey },
      isDefault,
      createdAt: now,
      modifiedAt: now,
    };
    this.records.set(name, record);
    return record;
  }

  get(name: string): DatastoreRecord | undefined {
    return this.records.get(name);
  }

  require(name: string): DatastoreRecord {
    const record = this.records.get(name);
    if (record === undefined) throw notFoundError(this.workspace, 'datastores', name);
    return record;
  }

  /**
   * Creates or replaces a datastore from a PUT body that passed spec validation. Unless `skipValidation`, checks
   * that the container can be reached with the given credentials, as the service does.
   */
  async put(name: string, body: { properties: Record<string, unknown> }, skipValidation: boolean): Promise<{ created: boolean; record: DatastoreRecord }> {
    const properties = structuredClone(body.properties);
    const credentials = properties.credentials as Record<string, unknown>;
    const secrets = credentials.secrets as Record<string, unknown> | undefined;
    delete credentials.secrets;
    if (!skipValidation) await this.checkAccess(name, properties, secrets);

    const existing = this.records.get(name);
    const now = new Date().toISOString();
    const record: DatastoreRecord = {
      name,
      properties,
      secrets,
      isDefault: existing?.isDefault ?? false,
      createdAt: existing?.createdAt ?? now,
      modifiedAt: now,
    };
    this.records.set(name, record);
    return { created: existing === undefined, record };
  }

  delete(name: string): boolean {
    const record = this.records.get(name);
    if (record === undefined) return false;
    if (record.isDefault) {
      // NOTE: the service's wording for deleting the default datastore is unconfirmed.
      throw userError(`Datastore ${name} is the workspace default datastore and cannot be deleted.`);
    }
    this.records.delete(name);
    return true;
  }

  list(filter: DatastoreListFilter): DatastoreRecord[] {
    let records = [...this.records.values()];
    if (filter.isDefault !== undefined) records = records.filter((record) => record.isDefault === filter.isDefault);
    if (filter.names !== undefined && filter.names.length > 0) records = records.filter((record) => filter.names?.includes(record.name));
    if (filter.searchText !== undefined && filter.searchText !== '') {
      const text = filter.searchText.toLowerCase();
      records = records.filter((record) => record.name.toLowerCase().includes(text));
    }
    const key = (filter.orderBy ?? 'createdtime').toLowerCase();
    const compare = (a: DatastoreRecord, b: DatastoreRecord): number => {
      if (key === 'name') return a.name.localeCompare(b.name);
      if (key === 'modifiedtime') return a.modifiedAt.localeCompare(b.modifiedAt);
      return a.createdAt.localeCompare(b.createdAt);
    };
    records.sort((a, b) => (filter.orderByAsc ? compare(a, b) : compare(b, a)));
    return records;
  }

  /** Returns the body of `listSecrets`. Credentials without secrets (`None`) have nothing to list. */
  listSecrets(name: string): Record<string, unknown> {
    const record = this.require(name);
    if (record.secrets === undefined) {
      const credentialsType = (record.properties.credentials as { credentialsType: string }).credentialsType;
      // NOTE: the service's response for identity-based (credentialsType None) datastores is unconfirmed.
      throw userError(
        `Datastore ${name} uses credentials of type ${credentialsType}, which have no secrets to list; ` +
          'access its storage with your own Azure AD identity instead.',
        { target: name },
      );
    }
    return structuredClone(record.secrets);
  }

  toResource(record: DatastoreRecord): Record<string, unknown> {
    return {
      id: childArmId(this.workspace, 'datastores', record.name),
      name: record.name,
      type: 'Microsoft.MachineLearningServices/workspaces/datastores',
      systemData: systemData(record),
      properties: { ...structuredClone(record.properties), isDefault: record.isDefault },
    };
  }

  private async checkAccess(name: string, properties: Record<string, unknown>, secrets: Record<string, unknown> | undefined): Promise<void> {
    const account = this.storage.account.accountName;
    const fix = 'check the account, container and credentials, or pass skipValidation=true';
    if (properties.datastoreType !== 'AzureBlob' || properties.accountName !== account) {
      // NOTE: the service's wording for a failed datastore validation is unconfirmed.
      throw userError(
        `Datastore ${name} could not be validated: the emulator reaches only AzureBlob datastores on storage account ` +
          `${account}, not ${String(properties.datastoreType)} on ${String(properties.accountName)}; ${fix}.`,
      );
    }
    const container = String(properties.containerName);
    try {
      await this.storage.checkContainerAccess(container, {
        accountKey: typeof secrets?.key === 'string' ? secrets.key : undefined,
        sasToken: typeof secrets?.sasToken === 'string' ? secrets.sasToken : undefined,
      });
    } catch (error) {
      throw new ArmError(400, 'UserError', `Datastore ${name} could not be validated: container ${container} of storage account ${account} is not accessible (${(error as Error).message}); ${fix}.`);
    }
  }
}
