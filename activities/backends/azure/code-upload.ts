import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import type { ContainerClient } from '@azure/storage-blob';
import { compareCodeUnits } from '../common/files';

/** Folders and files that are build or test leftovers, never part of the code a job needs. */
const IGNORED_NAMES = new Set(['__pycache__', '.pytest_cache', '.git', '.mypy_cache', '.ipynb_checkpoints']);
const IGNORED_SUFFIXES = ['.pyc', '.egg-info'];

export interface CodeUpload {
  /** SHA-256 over the sorted relative paths and bytes of the uploaded files, hex. */
  hash: string;
  /** URL of the uploaded folder, as a code version's `codeUri`. */
  codeUri: string;
  /** False when an earlier complete upload of the same content was found and reused. */
  uploaded: boolean;
}

/**
 * Uploads a code folder once per content hash to `LocalUpload/<hash>/<folder name>/` in the container, the layout
 * the Azure ML SDK uses. The first file in sorted order carries `upload_status=completed` metadata once every file is
 * in place, so an interrupted upload is redone and a complete one is reused.
 */
export async function uploadCodeFolder(container: ContainerClient, folder: string): Promise<CodeUpload> {
  const files = await listCodeFiles(folder);
  if (files.length === 0) throw new Error(`code folder ${folder} contains no files; check codeDirectory`);
  const hash = await hashFiles(folder, files);
  const prefix = `LocalUpload/${hash}/${path.basename(folder)}`;
  const codeUri = `${container.url}/${prefix}`;

  const indicator = container.getBlobClient(`${prefix}/${files[0]}`);
  const properties = await indicator.getProperties().catch(() => undefined);
  if (properties?.metadata?.upload_status === 'completed') return { hash, codeUri, uploaded: false };

  await container.createIfNotExists();
  for (const file of files) {
    await container.getBlockBlobClient(`${prefix}/${file}`).uploadFile(path.join(folder, file));
  }
  await indicator.setMetadata({ upload_status: 'completed' });
  return { hash, codeUri, uploaded: true };
}

async function listCodeFiles(folder: string, relative = ''): Promise<string[]> {
  const entries = await readdir(path.join(folder, relative), { withFileTypes: true });
  const files: string[] = [];
  entries.sort((a, b) => compareCodeUnits(a.name, b.name));
  for (const entry of entries) {
    if (IGNORED_NAMES.has(entry.name) || IGNORED_SUFFIXES.some((suffix) => entry.name.endsWith(suffix))) continue;
    const child = relative === '' ? entry.name : `${relative}/${entry.name}`;
    if (entry.isDirectory()) files.push(...(await listCodeFiles(folder, child)));
    else if (entry.isFile()) files.push(child);
  }
  return files;
}

async function hashFiles(folder: string, files: string[]): Promise<string> {
  const hash = createHash('sha256');
  for (const file of files) {
    hash.update(file).update('\0');
    for await (const chunk of createReadStream(path.join(folder, file))) hash.update(chunk as Buffer);
    hash.update('\0');
  }
  return hash.digest('hex');
}
