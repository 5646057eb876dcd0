/**
 * Resolution of the storage URIs that jobs and assets use to blob locations in the emulator's storage account.
 */
import type { AssetStore } from './asset-store';
import type { BlobLocation, BlobStorage } from './blob-storage';
import type { DatastoreStore } from './datastores';
import { parseAssetReference, type WorkspaceIdentity } from './workspace';

export interface UriResolver {
  workspace: WorkspaceIdentity;
  storage: BlobStorage;
  datastores: DatastoreStore;
  assets: AssetStore;
}

const SHORT_DATASTORE_URI = /^azureml:\/\/datastores\/([^/]+)\/paths\/(.*)$/;
const LONG_DATASTORE_URI = /^azureml:\/\/subscriptions\/([^/]+)\/resourcegroups\/([^/]+)\/workspaces\/([^/]+)\/datastores\/([^/]+)\/paths\/(.*)$/i;

/**
 * Resolves a URI to a blob location. Accepted forms: `azureml://datastores/<ds>/paths/<path>`, the long form
 * `azureml://subscriptions/<sub>/resourcegroups/<rg>/workspaces/<ws>/datastores/<ds>/paths/<path>`, a blob URL of
 * the emulator's storage account, and a data asset reference (its ARM id, with or without `azureml:`, or
 * `azureml:<name>:<version>`), which resolves through the asset's `dataUri`. Throws an error naming the URI and the
 * accepted forms otherwise.
 */
export function resolveStorageUri(resolver: UriResolver, uri: string): BlobLocation {
  const short = SHORT_DATASTORE_URI.exec(uri);
  if (short !== null) return datastorePath(resolver, short[1], short[2], uri);

  const long = LONG_DATASTORE_URI.exec(uri);
  if (long !== null) {
    const { workspace } = resolver;
    const sameWorkspace =
      long[1].toLowerCase() === workspace.subscriptionId.toLowerCase() &&
      long[2].toLowerCase() === workspace.resourceGroup.toLowerCase() &&
      long[3].toLowerCase() === workspace.workspaceName.toLowerCase();
    if (!sameWorkspace) throw new Error(`URI ${uri} names another workspace; the emulator serves only ${workspace.workspaceName}`);
    return datastorePath(resolver, long[4], long[5], uri);
  }

  const blob = resolver.storage.parseBlobUrl(uri);
  if (blob !== undefined) return blob;

  const asset = parseAssetReference(resolver.workspace, uri, 'data');
  if (asset !== undefined && asset.kind === 'data') {
    const version = resolver.assets.getVersion('data', asset.name, asset.version);
    if (version === undefined) throw new Error(`data asset ${asset.name}:${asset.version} referenced by ${uri} is not registered in the workspace`);
    return resolveStorageUri(resolver, String(version.properties.dataUri));
  }

  throw new Error(
    `URI ${uri} cannot be resolved: use azureml://datastores/<datastore>/paths/<path>, a data asset id, or a blob URL ` +
      `below ${resolver.storage.account.blobEndpoint}`,
  );
}

function datastorePath(resolver: UriResolver, datastoreName: string, blobPath: string, uri: string): BlobLocation {
  const datastore = resolver.datastores.get(datastoreName);
  if (datastore === undefined) throw new Error(`datastore ${datastoreName} in URI ${uri} is not registered in the workspace`);
  const { datastoreType, accountName, containerName } = datastore.properties;
  if (datastoreType !== 'AzureBlob' || accountName !== resolver.storage.account.accountName) {
    throw new Error(
      `datastore ${datastoreName} in URI ${uri} is ${String(datastoreType)} on storage account ${String(accountName)}; the emulator ` +
        `reads and writes only AzureBlob datastores on ${resolver.storage.account.accountName}`,
    );
  }
  return { container: String(containerName), blobPath: decodeURIComponent(blobPath) };
}
