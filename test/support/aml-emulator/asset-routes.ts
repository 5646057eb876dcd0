/**
 * Routes of the versioned assets: `/data`, `/codes`, `/environments` and `/components`, each with containers
 * and versions.
 */
import { userError } from './arm-errors';
import { ASSET_KINDS, type AssetKind, type ListViewType } from './asset-store';
import { WORKSPACE_TEMPLATE, type EmulatorContext } from './context';
import { pageOf } from './paging';
import { checkComponentSpec, type ContractIssue } from './pipeline-contract';
import type { Router } from './router';
import { parseAssetReference, requireWorkspace } from './workspace';
import { bodyWithProperties } from './workspace-routes';

export function registerAssetRoutes(router: Router, context: EmulatorContext): void {
  for (const kind of ASSET_KINDS) registerKind(router, context, kind);
}

function registerKind(router: Router, context: EmulatorContext, kind: AssetKind): void {
  const { assets, workspace } = context;
  const containers = `${WORKSPACE_TEMPLATE}/${kind}`;
  const versions = `${containers}/{name}/versions`;

  router.add('GET', containers, (request, params) => {
    requireWorkspace(workspace, params);
    const records = assets.listContainers(kind, listView(request.url));
    const page = pageOf(records, request.url, context.listPageSize);
    return { status: 200, body: { ...page, value: page.value.map((record) => assets.containerResource(kind, record)) } };
  });

  router.add('GET', `${containers}/{name}`, (_request, params) => {
    requireWorkspace(workspace, params);
    return { status: 200, body: assets.containerResource(kind, assets.requireContainer(kind, params.name)) };
  });

  router.add('PUT', `${containers}/{name}`, (request, params) => {
    requireWorkspace(workspace, params);
    const { created, record } = assets.putContainer(kind, params.name, bodyWithProperties(request).properties);
    return { status: created ? 201 : 200, body: assets.containerResource(kind, record) };
  });

  router.add('DELETE', `${containers}/{name}`, (_request, params) => {
    requireWorkspace(workspace, params);
    return { status: assets.deleteContainer(kind, params.name) ? 200 : 204 };
  });

  router.add('GET', versions, (request, params) => {
    requireWorkspace(workspace, params);
    const query = request.url.searchParams;
    const top = query.get('$top');
    const records = assets.listVersions(kind, params.name, {
      view: listView(request.url),
      ...(query.get('$orderBy') !== null ? { orderBy: query.get('$orderBy') ?? '' } : {}),
      ...(top !== null ? { top: Number(top) } : {}),
      ...(query.get('$tags') !== null ? { tags: query.get('$tags') ?? '' } : {}),
    });
    const page = pageOf(records, request.url, context.listPageSize);
    return { status: 200, body: { ...page, value: page.value.map((record) => assets.versionResource(kind, record)) } };
  });

  router.add('GET', `${versions}/{version}`, (_request, params) => {
    requireWorkspace(workspace, params);
    return { status: 200, body: assets.versionResource(kind, assets.requireVersion(kind, params.name, params.version)) };
  });

  router.add('PUT', `${versions}/{version}`, (request, params) => {
    requireWorkspace(workspace, params);
    const properties = bodyWithProperties(request).properties;
    checkVersion(context, kind, params.name, params.version, properties);
    const { created, record } = assets.putVersion(kind, params.name, params.version, properties);
    context.log.info('Asset version saved', { kind, name: params.name, version: params.version, created });
    return { status: created ? 201 : 200, body: assets.versionResource(kind, record) };
  });

  router.add('DELETE', `${versions}/{version}`, (_request, params) => {
    requireWorkspace(workspace, params);
    return { status: assets.deleteVersion(kind, params.name, params.version) ? 200 : 204 };
  });
}

function listView(url: URL): ListViewType {
  const view = url.searchParams.get('listViewType');
  return view === 'All' || view === 'ArchivedOnly' ? view : 'ActiveOnly';
}

/** Checks of a version body that the spec cannot express; each failure is a 400 UserError. */
function checkVersion(context: EmulatorContext, kind: AssetKind, name: string, version: string, properties: Record<string, unknown>): void {
  if (kind === 'environments') {
    const hasImage = typeof properties.image === 'string' && properties.image !== '';
    const hasBuild = properties.build !== undefined && properties.build !== null;
    if (hasImage === hasBuild) {
      // NOTE: the service's wording for an environment with neither or both of image and build is unconfirmed.
      throw userError(`Environment ${name} version ${version} must set exactly one of image and build: a Docker image name, or a Docker build context.`);
    }
  }
  if (kind === 'components') {
    const issues = [...checkComponentSpec(properties.componentSpec), ...componentReferenceIssues(context, name, version, properties.componentSpec)];
    if (issues.length > 0) throw contractError(`Component ${name} version ${version} has an invalid componentSpec`, issues);
  }
}

/** The spec's name and version must match the URL, and its code and environment must be registered versions. */
function componentReferenceIssues(context: EmulatorContext, name: string, version: string, spec: unknown): ContractIssue[] {
  if (typeof spec !== 'object' || spec === null) return [];
  const componentSpec = spec as { name?: unknown; version?: unknown; task?: { code?: unknown; environment?: unknown } };
  const issues: ContractIssue[] = [];
  const at = '/properties/componentSpec';
  // NOTE: whether the service rejects a componentSpec whose name or version differs from the URL is unconfirmed.
  if (componentSpec.name !== undefined && componentSpec.name !== name) {
    issues.push({ path: `${at}/name`, message: `is ${JSON.stringify(componentSpec.name)} but the URL names component ${name}` });
  }
  // The SDK sends the version as a string; the spec's own example sends a number.
  const specVersion = typeof componentSpec.version === 'number' ? String(componentSpec.version) : componentSpec.version;
  if (specVersion !== undefined && specVersion !== version) {
    issues.push({ path: `${at}/version`, message: `is ${JSON.stringify(componentSpec.version)} but the URL names version ${version}` });
  }
  const references: [string, unknown, 'codes' | 'environments'][] = [
    ['code', componentSpec.task?.code, 'codes'],
    ['environment', componentSpec.task?.environment, 'environments'],
  ];
  for (const [field, reference, kind] of references) {
    if (typeof reference !== 'string') continue;
    const parsed = parseAssetReference(context.workspace, reference, kind);
    if (parsed === undefined || parsed.kind !== kind) {
      issues.push({ path: `${at}/task/${field}`, message: `${reference} is not a ${kind} version of this workspace; use azureml:<ARM id of the version>` });
    } else if (context.assets.getVersion(kind, parsed.name, parsed.version) === undefined) {
      issues.push({ path: `${at}/task/${field}`, message: `${kind} version ${parsed.name}:${parsed.version} is not registered; register it before the component` });
    }
  }
  return issues;
}

/** Builds a 400 UserError that lists contract violations, one detail per violation. */
export function contractError(summary: string, issues: readonly ContractIssue[]) {
  return userError(`${summary}: ${issues.map((issue) => `${issue.path}: ${issue.message}`).join('; ')}`, {
    details: issues.map((issue) => ({ code: 'InvalidValue', message: issue.message, target: issue.path })),
  });
}
