/**
 * The emulated workspace's identity and the ARM ids and envelopes of the resources below it.
 */
import { resourceNotFound, ArmError } from './arm-errors';

export const PROVIDER_NAMESPACE = 'Microsoft.MachineLearningServices';

/** The one workspace the emulator serves. */
export interface WorkspaceIdentity {
  subscriptionId: string;
  resourceGroup: string;
  workspaceName: string;
  location: string;
  /** The workspace's GUID (`properties.workspaceId`). */
  workspaceId: string;
}

/** `/subscriptions/<sub>/resourceGroups/<rg>/providers/Microsoft.MachineLearningServices/workspaces/<ws>`. */
export function workspaceArmId(workspace: WorkspaceIdentity): string {
  return (
    `/subscriptions/${workspace.subscriptionId}/resourceGroups/${workspace.resourceGroup}` +
    `/providers/${PROVIDER_NAMESPACE}/workspaces/${workspace.workspaceName}`
  );
}

/** ARM id of a resource below the workspace, e.g. `childArmId(ws, 'jobs', 'j1')`. */
export function childArmId(workspace: WorkspaceIdentity, ...segments: string[]): string {
  return `${workspaceArmId(workspace)}/${segments.join('/')}`;
}

/** Returns ARM's `ResourceNotFound` error for the resource below the workspace named by `segments`. */
export function notFoundError(workspace: WorkspaceIdentity, ...segments: string[]): ArmError {
  const resourcePath = `${PROVIDER_NAMESPACE}/workspaces/${workspace.workspaceName}/${segments.join('/')}`;
  return resourceNotFound(resourcePath, workspace.resourceGroup);
}

/**
 * Checks the subscription, resource group and workspace of a request path. ARM rejects an unknown subscription
 * with `SubscriptionNotFound`, an unknown resource group with `ResourceGroupNotFound`, and an unknown workspace with
 * `ResourceNotFound`. Subscription ids and resource group names are case-insensitive in ARM.
 */
export function requireWorkspace(workspace: WorkspaceIdentity, params: Record<string, string>): void {
  if (params.subscriptionId.toLowerCase() !== workspace.subscriptionId.toLowerCase()) {
    throw new ArmError(404, 'SubscriptionNotFound', `The subscription '${params.subscriptionId}' could not be found.`);
  }
  if (params.resourceGroupName.toLowerCase() !== workspace.resourceGroup.toLowerCase()) {
    throw new ArmError(404, 'ResourceGroupNotFound', `Resource group '${params.resourceGroupName}' could not be found.`);
  }
  if (params.workspaceName.toLowerCase() !== workspace.workspaceName.toLowerCase()) {
    throw resourceNotFound(`${PROVIDER_NAMESPACE}/workspaces/${params.workspaceName}`, params.resourceGroupName);
  }
}

/** Creation and modification times of a resource, as ISO 8601 strings. */
export interface ResourceTimes {
  createdAt: string;
  modifiedAt: string;
}

/** ARM `systemData`. The emulator does not know the caller's identity, so it reports a fixed application name. */
export function systemData(times: ResourceTimes): Record<string, string> {
  return {
    createdAt: times.createdAt,
    createdBy: 'amlbatch-test',
    createdByType: 'Application',
    lastModifiedAt: times.modifiedAt,
    lastModifiedBy: 'amlbatch-test',
    lastModifiedByType: 'Application',
  };
}

/** A reference to a versioned asset of this workspace, parsed from an ARM id. */
export interface AssetReference {
  /** Resource type segment: `codes`, `environments`, `components` or `data`. */
  kind: string;
  name: string;
  version: string;
}

/**
 * Parses an ARM id of a versioned asset in this workspace, with or without the `azureml:` prefix that component
 * specs use (`azureml:/subscriptions/.../codes/<name>/versions/<version>`), and the short form
 * `azureml:<name>:<version>` when `shortFormKind` is given. Returns undefined for anything else, including ids of
 * another workspace.
 */
export function parseAssetReference(
  workspace: WorkspaceIdentity,
  reference: string,
  shortFormKind?: string,
): AssetReference | undefined {
  const withoutPrefix = reference.startsWith('azureml:') ? reference.slice('azureml:'.length) : reference;
  if (!withoutPrefix.startsWith('/')) {
    const short = /^([^:/]+):([^:/]+)$/.exec(withoutPrefix);
    if (shortFormKind === undefined || short === null || !reference.startsWith('azureml:')) return undefined;
    return { kind: shortFormKind, name: short[1], version: short[2] };
  }
  const prefix = `${workspaceArmId(workspace)}/`.toLowerCase();
  if (!withoutPrefix.toLowerCase().startsWith(prefix)) return undefined;
  const rest = withoutPrefix.slice(prefix.length).split('/');
  if (rest.length !== 4 || rest[2].toLowerCase() !== 'versions') return undefined;
  return { kind: rest[0].toLowerCase(), name: rest[1], version: rest[3] };
}

/** Returns the compute name of a compute ARM id of this workspace, or undefined for anything else. */
export function parseComputeId(workspace: WorkspaceIdentity, computeId: string): string | undefined {
  const prefix = `${workspaceArmId(workspace)}/computes/`.toLowerCase();
  if (!computeId.toLowerCase().startsWith(prefix)) return undefined;
  const name = computeId.slice(prefix.length);
  return name === '' || name.includes('/') ? undefined : name;
}
