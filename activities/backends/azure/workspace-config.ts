import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { StageError } from '../../errors';
import type { AzureWorkspaceRef } from '../../types';

/** Environment variables for the workspace fields. Precedence: the batch input, then these, then the config file. */
export const WORKSPACE_ENVIRONMENT_VARIABLES = {
  subscriptionId: 'AZUREML_SUBSCRIPTION_ID',
  resourceGroup: 'AZUREML_RESOURCE_GROUP',
  workspaceName: 'AZUREML_WORKSPACE_NAME',
} as const;

/** The keys of `.azureml/config.json`, as the Azure ML SDK writes and reads them. */
const CONFIG_FILE_KEYS = {
  subscriptionId: 'subscription_id',
  resourceGroup: 'resource_group',
  workspaceName: 'workspace_name',
} as const;

/**
 * Finds the workspace config file the way the Azure ML SDK does: `config.json` or `.azureml/config.json` in the
 * starting folder, then in each parent folder up to the root. Returns undefined when there is none.
 */
export async function findWorkspaceConfigFile(startFolder: string): Promise<string | undefined> {
  let folder = path.resolve(startFolder);
  for (;;) {
    for (const candidate of [path.join(folder, '.azureml', 'config.json'), path.join(folder, 'config.json')]) {
      const found = await readFile(candidate, 'utf8').then(
        (text) => (looksLikeWorkspaceConfig(text) ? candidate : undefined),
        () => undefined,
      );
      if (found) return found;
    }
    const parent = path.dirname(folder);
    if (parent === folder) return undefined;
    folder = parent;
  }
}

function looksLikeWorkspaceConfig(text: string): boolean {
  try {
    const parsed = JSON.parse(text) as Record<string, unknown>;
    return typeof parsed === 'object' && parsed !== null && 'workspace_name' in parsed;
  } catch {
    return false;
  }
}

/**
 * Resolves the workspace from the batch input, then `AZUREML_*` environment variables, then the config file found
 * from `startFolder`. Throws a non-retryable error naming every source when a field is still missing.
 */
export async function resolveWorkspace(
  fromInput: Partial<AzureWorkspaceRef>,
  environment: NodeJS.ProcessEnv,
  startFolder: string,
): Promise<AzureWorkspaceRef & { configFile?: string }> {
  const configFile = await findWorkspaceConfigFile(startFolder);
  let fromFile: Record<string, unknown> = {};
  if (configFile) {
    try {
      fromFile = JSON.parse(await readFile(configFile, 'utf8')) as Record<string, unknown>;
    } catch (error) {
      throw new StageError('InvalidInput', `workspace config ${configFile} is not valid JSON (${(error as Error).message})`, {
        configFile,
      });
    }
  }

  const resolved: Partial<AzureWorkspaceRef> = {};
  const missing: Array<keyof AzureWorkspaceRef> = [];
  for (const field of ['subscriptionId', 'resourceGroup', 'workspaceName'] as const) {
    const fileValue = fromFile[CONFIG_FILE_KEYS[field]];
    const value =
      fromInput[field] ??
      nonEmpty(environment[WORKSPACE_ENVIRONMENT_VARIABLES[field]]) ??
      (typeof fileValue === 'string' && fileValue !== '' ? fileValue : undefined);
    if (value === undefined) missing.push(field);
    else resolved[field] = value;
  }
  if (missing.length > 0) {
    const how = missing
      .map((field) => `azure.${field} in the input, ${WORKSPACE_ENVIRONMENT_VARIABLES[field]}, or "${CONFIG_FILE_KEYS[field]}" in .azureml/config.json`)
      .join('; ');
    throw new StageError(
      'InvalidInput',
      `Azure ML workspace not configured: ${missing.join(', ')} missing (${configFile ? `read ${configFile}` : `no .azureml/config.json found from ${startFolder} up`}). Set ${how}`,
      { missing, configFile },
    );
  }
  return { ...(resolved as AzureWorkspaceRef), ...(configFile ? { configFile } : {}) };
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === '' ? undefined : value;
}
