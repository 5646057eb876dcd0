/**
 * Routes of the workspace itself and of its datastores.
 */
import { WORKSPACE_TEMPLATE, type EmulatorContext } from './context';
import { pageOf } from './paging';
import type { EmulatorRequest, Router } from './router';
import { requireWorkspace, systemData, workspaceArmId } from './workspace';

/** Fixed ids of the emulated tenant and workspace identity; the emulator never checks tokens against them. */
export const EMULATOR_TENANT_ID = '72f988bf-0000-4000-8000-000000000001';
const WORKSPACE_PRINCIPAL_ID = '5a1f0c3e-0000-4000-8000-000000000002';

export function registerWorkspaceRoutes(router: Router, context: EmulatorContext): void {
  const { workspace } = context;

  router.add('GET', WORKSPACE_TEMPLATE, (_request, params) => {
    requireWorkspace(workspace, params);
    return { status: 200, body: workspaceResource(context) };
  });

  const datastores = `${WORKSPACE_TEMPLATE}/datastores`;
  router.add('GET', datastores, (request, params) => {
    requireWorkspace(workspace, params);
    const query = request.url.searchParams;
    const isDefault = query.get('isDefault');
    const records = context.datastores.list({
      ...(isDefault !== null ? { isDefault: isDefault.toLowerCase() === 'true' } : {}),
      names: query.getAll('names').flatMap((value) => value.split(',')).filter((name) => name !== ''),
      ...(query.get('searchText') !== null ? { searchText: query.get('searchText') ?? '' } : {}),
      ...(query.get('orderBy') !== null ? { orderBy: query.get('orderBy') ?? '' } : {}),
      orderByAsc: query.get('orderByAsc')?.toLowerCase() === 'true',
    });
    // `count` is the page size of this list; the spec's default is 30.
    const pageSize = Number(query.get('count') ?? 30);
    const page = pageOf(records, request.url, pageSize > 0 ? pageSize : 30);
    return { status: 200, body: { ...page, value: page.value.map((record) => context.datastores.toResource(record)) } };
  });

  router.add('GET', `${datastores}/{name}`, (_request, params) => {
    requireWorkspace(workspace, params);
    return { status: 200, body: context.datastores.toResource(context.datastores.require(params.name)) };
  });

  router.add('PUT', `${datastores}/{name}`, async (request, params) => {
    requireWorkspace(workspace, params);
    const skipValidation = request.url.searchParams.get('skipValidation')?.toLowerCase() === 'true';
    const { created, record } = await context.datastores.put(params.name, bodyWithProperties(request), skipValidation);
    context.log.info('Datastore saved', { datastore: params.name, created, skipValidation });
    return { status: created ? 201 : 200, body: context.datastores.toResource(record) };
  });

  router.add('DELETE', `${datastores}/{name}`, (_request, params) => {
    requireWorkspace(workspace, params);
    return { status: context.datastores.delete(params.name) ? 200 : 204 };
  });

  router.add('POST', `${datastores}/{name}/listSecrets`, (_request, params) => {
    requireWorkspace(workspace, params);
    return { status: 200, body: context.datastores.listSecrets(params.name) };
  });
}

/** Returns the body of a PUT that passed spec validation, which requires `properties` on every resource here. */
export function bodyWithProperties(request: EmulatorRequest): { properties: Record<string, unknown> } {
  return request.body as { properties: Record<string, unknown> };
}

function workspaceResource(context: EmulatorContext): Record<string, unknown> {
  const { workspace, endpoint } = context;
  const id = workspaceArmId(workspace);
  const resourceGroupId = `/subscriptions/${workspace.subscriptionId}/resourceGroups/${workspace.resourceGroup}`;
  const now = new Date().toISOString();
  return {
    id,
    name: workspace.workspaceName,
    type: 'Microsoft.MachineLearningServices/workspaces',
    location: workspace.location,
    tags: {},
    sku: { name: 'Basic', tier: 'Basic' },
    identity: { type: 'SystemAssigned', principalId: WORKSPACE_PRINCIPAL_ID, tenantId: EMULATOR_TENANT_ID },
    systemData: systemData({ createdAt: now, modifiedAt: now }),
    properties: {
      workspaceId: workspace.workspaceId,
      friendlyName: workspace.workspaceName,
      description: 'Workspace of the amlbatch AML emulator',
      storageAccount: `${resourceGroupId}/providers/Microsoft.Storage/storageAccounts/${context.storage.account.accountName}`,
      keyVault: context.keyVaultArmId,
      applicationInsights: `${resourceGroupId}/providers/Microsoft.Insights/components/${workspace.workspaceName}-insights`,
      // Both URLs point back at the emulator, so a client that follows them stays on this machine.
      discoveryUrl: `${endpoint}/discovery`,
      mlFlowTrackingUri: `azureml://${new URL(endpoint).host}/mlflow/v1.0${id}`,
      provisioningState: 'Succeeded',
      hbiWorkspace: false,
      publicNetworkAccess: 'Enabled',
      privateLinkCount: 0,
      tenantId: EMULATOR_TENANT_ID,
      storageHnsEnabled: false,
      v1LegacyMode: false,
    },
  };
}
