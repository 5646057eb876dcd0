/**
 * The emulator's access to blob storage: the one Azurite account that replaces the workspace's storage
 * account. Jobs read their code and input from it and write their output and logs to it.
 */
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { AnonymousCredential, BlobServiceClient, ContainerClient, StorageSharedKeyCredential } from '@azure/storage-blob';

/** The storage account that the emulator reaches: an Azurite blob service. */
export interface StorageAccount {
  /** Blob endpoint including the account, e.g. `http://127.0.0.1:41234/devstoreaccount1`. */
  blobEndpoint: string;
  accountName: string;
  accountKey: string;
}

/** A blob location: container and blob name (or name prefix, for a folder). */
export interface BlobLocation {
  container: string;
  blobPath: string;
}

export class BlobStorage {
  private readonly service: BlobServiceClient;

  constructor(readonly account: StorageAccount) {
    this.service = new BlobServiceClient(account.blobEndpoint, new StorageSharedKeyCredential(account.accountName, account.accountKey));
  }

  container(name: string): ContainerClient {
    return this.service.getContainerClient(name);
  }

  async ensureContainer(name: string): Promise<void> {
    await this.container(name).createIfNotExists();
  }

  /**
   * Parses a blob URL of this account (`<blobEndpoint>/<container>/<path>`), or returns undefined for a URL of
   * another account or host.
   */
  parseBlobUrl(url: string): BlobLocation | undefined {
    const endpoint = this.account.blobEndpoint.replace(/\/+$/, '');
    if (!url.startsWith(`${endpoint}/`)) return undefined;
    const [container, ...rest] = url.slice(endpoint.length + 1).split('?')[0].split('/');
    if (container === '') return undefined;
    return { container: decodeURIComponent(container), blobPath: rest.map((part) => decodeURIComponent(part)).join('/') };
  }

  /**
   * Checks that `container` can be listed with the given credential, as the service does on a datastore PUT
   * without skipValidation. Throws the storage error's message when it cannot.
   */
  async checkContainerAccess(container: string, credential: { accountKey?: string; sasToken?: string }): Promise<void> {
    const client =
      credential.sasToken !== undefined
        ? new ContainerClient(`${this.account.blobEndpoint}/${container}?${credential.sasToken.replace(/^\?/, '')}`, new AnonymousCredential())
        : new ContainerClient(
            `${this.account.blobEndpoint}/${container}`,
            new StorageSharedKeyCredential(this.account.accountName, credential.accountKey ?? this.account.accountKey),
          );
    await client.listBlobsFlat().byPage({ maxPageSize: 1 }).next();
  }

  /**
   * Downloads every blob below the folder `location.blobPath` into `destination`, keeping relative paths, and
   * returns the relative paths written. Throws when the folder has no blobs, or a blob name would leave `destination`.
   */
  async downloadFolder(location: BlobLocation, destination: string): Promise<string[]> {
    const prefix = location.blobPath === '' ? '' : `${location.blobPath.replace(/\/+$/, '')}/`;
    const container = this.container(location.container);
    const written: string[] = [];
    for await (const blob of container.listBlobsFlat({ prefix })) {
      const relative = blob.name.slice(prefix.length);
      const target = path.resolve(destination, relative);
      if (relative === '' || !target.startsWith(`${path.resolve(destination)}${path.sep}`)) {
        throw new Error(`blob ${blob.name} in container ${location.container} has a name that leaves the download folder`);
      }
      await mkdir(path.dirname(target), { recursive: true });
      await container.getBlobClient(blob.name).downloadToFile(target);
      written.push(relative);
    }
    if (written.length === 0) {
      throw new Error(`no blobs found below ${location.container}/${prefix} in storage account ${this.account.accountName}`);
    }
    return written.sort();
  }

  async uploadFile(location: BlobLocation, file: string): Promise<void> {
    await this.container(location.container).getBlockBlobClient(location.blobPath).uploadFile(file);
  }

  async uploadText(location: BlobLocation, text: string): Promise<void> {
    const data = Buffer.from(text, 'utf8');
    await this.container(location.container)
      .getBlockBlobClient(location.blobPath)
      .uploadData(data, { blobHTTPHeaders: { blobContentType: 'text/plain; charset=utf-8' } });
  }
}
