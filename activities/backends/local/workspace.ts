import { createHash, randomUUID } from 'node:crypto';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { StageError } from '../../errors';
import type { DatastoreRef } from '../../types';

/** Maximum job name length, as Azure ML allows for job names. */
const MAX_JOB_NAME_LENGTH = 255;

/**
 * The local workspace folder: the local backend's counterpart of an Azure ML workspace.
 *   datastores/<name>.json            registered datastores (a root folder each)
 *   datasets/<name>/<version>/        immutable dataset versions: manifest.jsonl and asset.json
 *   jobs/<job name>/                  local jobs (see runner/job-spec.ts)
 *   results/<workflow id>/            collected results, unless the input names another folder
 */
export class LocalWorkspace {
  constructor(readonly root: string) {}

  /** Creates the workspace if needed and proves it is writable, with a clear error when it is not. */
  async ensureWritable(): Promise<void> {
    const probe = path.join(this.root, `.write-check-${randomUUID()}`);
    try {
      await mkdir(this.root, { recursive: true });
      await writeFile(probe, '');
    } catch (error) {
      throw new StageError(
        'PermissionDenied',
        `local workspace ${this.root} is not writable (${(error as Error).message}); set AMLBATCH_LOCAL_WORKSPACE to a writable folder`,
        { workspace: this.root },
      );
    } finally {
      await rm(probe, { force: true });
    }
  }

  datasetDir(datasetName: string): string {
    return path.join(this.root, 'datasets', datasetName);
  }

  jobDir(jobName: string): string {
    return path.join(this.root, 'jobs', jobName);
  }

  resultsDir(workflowId: string): string {
    return path.join(this.root, 'results', LocalWorkspace.safeName(workflowId));
  }

  /**
   * Registers `root` as a datastore, named from a hash of the path so the same folder always maps to the same
   * datastore. An existing registration with the same root is reused; one with another root is a conflict.
   */
  async registerDatastore(root: string): Promise<DatastoreRef> {
    const datastoreName = `local_${shortHash(root)}`;
    const file = path.join(this.root, 'datastores', `${datastoreName}.json`);
    const existing = await readFile(file, 'utf8').then(
      (text) => JSON.parse(text) as { root: string },
      (error: NodeJS.ErrnoException) => {
        if (error.code === 'ENOENT') return undefined;
        throw error;
      },
    );
    if (existing) {
      if (existing.root !== root) {
        throw new StageError(
          'Conflict',
          `datastore ${datastoreName} is registered with root ${existing.root}, not ${root}; remove ${file} if the old folder is gone`,
          { datastoreName, registeredRoot: existing.root, requestedRoot: root },
        );
      }
      return { datastoreName, root, created: false };
    }

    await mkdir(path.dirname(file), { recursive: true });
    const draft = `${file}.${randomUUID()}.tmp`;
    await writeFile(draft, `${JSON.stringify({ name: datastoreName, type: 'local_folder', root }, null, 2)}\n`);
    await rename(draft, file);
    return { datastoreName, root, created: true };
  }

  /**
   * Deletes the registration of datastore `datastoreName` if it still points at `root`, and returns whether it
   * existed. A registration with another root belongs to someone else and is kept: that is a conflict.
   */
  async removeDatastore(datastoreName: string, root: string): Promise<boolean> {
    const file = path.join(this.root, 'datastores', `${datastoreName}.json`);
    const existing = await readFile(file, 'utf8').then(
      (text) => JSON.parse(text) as { root: string },
      (error: NodeJS.ErrnoException) => {
        if (error.code === 'ENOENT') return undefined;
        throw error;
      },
    );
    if (!existing) return false;
    if (existing.root !== root) {
      throw new StageError(
        'Conflict',
        `datastore ${datastoreName} is registered with root ${existing.root}, not ${root}, so this batch did not create it; it was kept`,
        { datastoreName, registeredRoot: existing.root, batchRoot: root },
      );
    }
    await rm(file, { force: true });
    return true;
  }

  /** Names a dataset after its folder, plus a hash of the full path so two folders called `images` stay apart. */
  static datasetNameFor(root: string): string {
    const base = path.basename(root).replace(/[^A-Za-z0-9_.-]/g, '_').replace(/^[^A-Za-z0-9]+/, '').slice(0, 64);
    return `${base || 'folder'}-${shortHash(root)}`;
  }

  /** Derives a job name from the workflow id and submission number; the same pair always gives the same name. */
  static jobNameFor(workflowId: string, submission: number): string {
    const name = `${LocalWorkspace.safeName(workflowId)}-${submission}`;
    return name.length <= MAX_JOB_NAME_LENGTH ? name : `${name.slice(0, MAX_JOB_NAME_LENGTH - 13)}-${shortHash(name)}`;
  }

  /** Maps any workflow id to a folder-safe name; ids that needed changes get a hash so two ids cannot collide. */
  static safeName(id: string): string {
    const safe = id.replace(/[^A-Za-z0-9_-]/g, '_').slice(0, 200);
    return safe === id ? safe : `${safe}-${shortHash(id)}`;
  }
}

function shortHash(text: string): string {
  return createHash('sha256').update(text).digest('hex').slice(0, 12);
}
