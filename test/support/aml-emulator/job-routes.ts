/**
 * Routes of jobs, and the polling URLs of their long-running cancel and delete operations.
 */
import { randomUUID } from 'node:crypto';
import { userError } from './arm-errors';
import { contractError } from './asset-routes';
import { WORKSPACE_TEMPLATE, type EmulatorContext } from './context';
import { isTerminalStatus, type JobRecord } from './jobs';
import { pageOf } from './paging';
import { checkPipelineJob, type ContractIssue } from './pipeline-contract';
import type { EmulatorResponse, Router } from './router';
import { SUPPORTED_API_VERSION } from './spec-validator';
import { parseAssetReference, parseComputeId, PROVIDER_NAMESPACE, requireWorkspace } from './workspace';
import { bodyWithProperties } from './workspace-routes';

/** Path of the operation-status URLs that `Location` headers point to; the service uses the same resource type. */
export const OPERATION_RESULTS_TEMPLATE = `/subscriptions/{subscriptionId}/providers/${PROVIDER_NAMESPACE}/locations/{location}/mfeOperationResults/{operationId}`;

export function registerJobRoutes(router: Router, context: EmulatorContext): void {
  const { workspace, jobs, executor } = context;
  const jobsPath = `${WORKSPACE_TEMPLATE}/jobs`;

  router.add('GET', jobsPath, (request, params) => {
    requireWorkspace(workspace, params);
    const query = request.url.searchParams;
    const view = query.get('listViewType');
    const records = jobs.list({
      ...(query.get('tag') !== null ? { tag: query.get('tag') ?? '' } : {}),
      ...(query.get('jobType') !== null ? { jobType: query.get('jobType') ?? '' } : {}),
      view: view === 'All' || view === 'ArchivedOnly' ? view : 'ActiveOnly',
    });
    const page = pageOf(records, request.url, context.listPageSize);
    return { status: 200, body: { ...page, value: page.value.map((record) => jobs.toResource(record)) } };
  });

  router.add('GET', `${jobsPath}/{id}`, (_request, params) => {
    requireWorkspace(workspace, params);
    return { status: 200, body: jobs.toResource(jobs.require(params.id)) };
  });

  router.add('PUT', `${jobsPath}/{id}`, (request, params) => {
    requireWorkspace(workspace, params);
    const properties = bodyWithProperties(request).properties;
    checkJob(context, properties);
    const { created, record } = jobs.put(params.id, properties);
    if (created) {
      context.log.info('Job created', { job: record.name });
      executor.start(record);
    }
    return { status: created ? 201 : 200, body: jobs.toResource(record) };
  });

  router.add('POST', `${jobsPath}/{id}/cancel`, (_request, params) => {
    requireWorkspace(workspace, params);
    const record = jobs.require(params.id);
    // NOTE: the service's response to cancelling a finished job is unconfirmed, so this reports success.
    if (isTerminalStatus(record.status)) return { status: 200 };
    executor.cancel(record, 'cancel requested through the API');
    return accepted(context, { kind: 'cancel', job: record });
  });

  router.add('DELETE', `${jobsPath}/{id}`, (_request, params) => {
    requireWorkspace(workspace, params);
    const record = jobs.get(params.id);
    if (record === undefined) return { status: 204 };
    executor.cancel(record, 'job deleted');
    void executor.settled(record).then(() => {
      if (jobs.get(record.name) === record) jobs.delete(record.name);
      context.log.info('Job deleted', { job: record.name });
    });
    return accepted(context, { kind: 'delete', job: record });
  });

  router.add(
    'GET',
    OPERATION_RESULTS_TEMPLATE,
    (request, params) => {
      const operation = context.operations.get(params.operationId);
      if (operation === undefined || params.subscriptionId.toLowerCase() !== workspace.subscriptionId.toLowerCase()) {
        throw userError(`Operation ${params.operationId} was not found; poll the Location URL that the operation returned.`, { target: 'operationId' });
      }
      const done = operation.kind === 'cancel' ? isTerminalStatus(operation.job.status) : jobs.get(operation.job.name) !== operation.job;
      if (!done) return { status: 202, headers: { location: request.url.toString() } };
      context.operations.delete(params.operationId);
      return { status: 200 };
    },
    { inSpec: false },
  );
}

/** 202 with a `Location` to poll and no `Retry-After`, so clients poll at their own interval. */
function accepted(context: EmulatorContext, operation: { kind: 'cancel' | 'delete'; job: JobRecord }): EmulatorResponse {
  const operationId = `${operation.kind}:${randomUUID()}`;
  context.operations.set(operationId, operation);
  const { subscriptionId, location } = context.workspace;
  const path = `/subscriptions/${subscriptionId}/providers/${PROVIDER_NAMESPACE}/locations/${location}/mfeOperationResults/${encodeURIComponent(operationId)}`;
  return { status: 202, headers: { location: `${context.endpoint}${path}?api-version=${SUPPORTED_API_VERSION}` } };
}

/**
 * Checks what the spec leaves open or cannot express: the job type, the pipeline's nodes, that the component
 * exists and declares the ports the node binds, and that every compute exists.
 */
function checkJob(context: EmulatorContext, properties: Record<string, unknown>): void {
  if (properties.jobType !== 'Pipeline') {
    throw userError(`jobType ${String(properties.jobType)} is not run by the emulator; it runs Pipeline jobs with one parallel node.`, {
      target: '/properties/jobType',
    });
  }
  const issues: ContractIssue[] = checkPipelineJob(properties);
  if (issues.length === 0) issues.push(...componentIssues(context, properties), ...computeIssues(context, properties));
  if (issues.length > 0) throw contractError('The pipeline job is invalid', issues);
}

function componentIssues(context: EmulatorContext, properties: Record<string, unknown>): ContractIssue[] {
  const [[key, node]] = Object.entries(properties.jobs as Record<string, Record<string, unknown>>);
  const at = `/properties/jobs/${key}`;
  const componentId = String(node.componentId);
  const reference = parseAssetReference(context.workspace, componentId);
  if (reference === undefined || reference.kind !== 'components') {
    return [{ path: `${at}/componentId`, message: `${componentId} is not a component version ARM id of this workspace` }];
  }
  const component = context.assets.getVersion('components', reference.name, reference.version);
  if (component === undefined) {
    return [{ path: `${at}/componentId`, message: `component ${reference.name}:${reference.version} is not registered; register it before the job` }];
  }

  const spec = component.properties.componentSpec as { inputs?: object; outputs?: object };
  const issues: ContractIssue[] = [];
  const ports: [string, object | undefined, object | undefined][] = [
    ['inputs', node.inputs as object | undefined, spec.inputs],
    ['outputs', node.outputs as object | undefined, spec.outputs],
  ];
  for (const [direction, bound, declared] of ports) {
    const declaredNames = Object.keys(declared ?? {});
    for (const port of Object.keys(bound ?? {})) {
      if (!declaredNames.includes(port)) {
        issues.push({ path: `${at}/${direction}/${port}`, message: `component ${reference.name}:${reference.version} declares no ${direction.slice(0, -1)} ${port}; it declares ${declaredNames.join(', ') || 'none'}` });
      }
    }
  }
  return issues;
}

function computeIssues(context: EmulatorContext, properties: Record<string, unknown>): ContractIssue[] {
  const [[key, node]] = Object.entries(properties.jobs as Record<string, Record<string, unknown>>);
  const settings = (properties.settings ?? {}) as Record<string, unknown>;
  const candidates: [string, unknown][] = [
    ['/properties/computeId', properties.computeId],
    ['/properties/settings/default_compute', settings.default_compute],
    [`/properties/jobs/${key}/computeId`, node.computeId],
  ];
  const issues: ContractIssue[] = [];
  for (const [path, computeId] of candidates) {
    if (computeId === undefined || computeId === null) continue;
    const name = typeof computeId === 'string' ? parseComputeId(context.workspace, computeId) : undefined;
    if (name === undefined) {
      issues.push({ path, message: `${JSON.stringify(computeId)} is not a compute ARM id of this workspace (.../workspaces/<ws>/computes/<name>)` });
    } else if (!context.computeNames.includes(name)) {
      issues.push({ path, message: `compute ${name} does not exist in the workspace; existing computes: ${context.computeNames.join(', ') || 'none'}` });
    }
  }
  if (node.computeId == null && settings.default_compute == null && properties.computeId == null) {
    issues.push({ path: `/properties/jobs/${key}/computeId`, message: 'no compute: set the node computeId or settings.default_compute' });
  }
  return issues;
}
