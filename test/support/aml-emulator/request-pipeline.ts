/**
 * The emulator's handling of one HTTP request, in the order the ARM front door and the service apply their
 * checks: injected faults, bearer authentication, api-version, routing, JSON parsing, the resource name pattern,
 * spec validation of the request, the route handler, and spec validation of the response.
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { errorFields, type DriverLog } from '../../../activities/backends/local/runner/driver-log';
import { ArmError, specViolation, userError } from './arm-errors';
import { NAME_PATTERN, type EmulatorContext } from './context';
import { authenticationFailed, faultError, type FaultInjector, type FaultResponse } from './faults';
import { splitPath, type EmulatorRequest, type EmulatorResponse, type RouteMatch, type Router } from './router';
import { SUPPORTED_API_VERSION, type SpecIssue, type SpecValidator } from './spec-validator';
import { PROVIDER_NAMESPACE } from './workspace';

/** Largest request body accepted; Azure ML bodies are a few kilobytes. */
const MAX_BODY_BYTES = 4 * 1024 * 1024;

/** One request the emulator received, for tests that count calls. */
export interface RequestRecord {
  method: string;
  /** URL path without the query. */
  path: string;
  query: Record<string, string>;
  /** When the request arrived, in milliseconds since the epoch. */
  receivedAt: number;
  /** Status sent; undefined when a `lost-response` fault closed the connection without a response. */
  status: number | undefined;
  /** Kind of the injected fault that changed this request's response, if any. */
  fault?: FaultResponse['kind'];
}

/** A response of the emulator that broke the spec: a bug in the emulator, replaced by a 500. */
export interface ResponseValidationFailure {
  method: string;
  path: string;
  status: number;
  issues: SpecIssue[];
}

export class RequestPipeline {
  readonly requests: RequestRecord[] = [];
  readonly validationErrors: ResponseValidationFailure[] = [];

  constructor(
    private readonly router: Router,
    private readonly validator: SpecValidator,
    private readonly faults: FaultInjector,
    private readonly context: EmulatorContext,
    private readonly log: DriverLog,
  ) {}

  async handle(incoming: IncomingMessage, outgoing: ServerResponse): Promise<void> {
    const url = new URL(incoming.url ?? '/', this.context.endpoint);
    const method = (incoming.method ?? 'GET').toUpperCase();
    const record: RequestRecord = { method, path: url.pathname, query: Object.fromEntries(url.searchParams), receivedAt: Date.now(), status: undefined };
    this.requests.push(record);

    const fault = this.faults.take(method, url.pathname);
    if (fault !== undefined) record.fault = fault.kind;

    let match: RouteMatch = { kind: 'not-found' };
    let response: EmulatorResponse;
    try {
      const rawBody = await readBody(incoming);
      const segments = parseSegments(url.pathname);
      match = this.router.match(method, segments);
      if (fault !== undefined && fault.kind !== 'lost-response') throw faultError(fault, method, resourceType(segments), url.pathname);
      checkAuthorization(incoming.headers.authorization);
      checkApiVersion(url, this.context.workspace.location);
      const request: EmulatorRequest = { method, url, segments, headers: incoming.headers, body: parseBody(rawBody) };
      response = await this.dispatch(match, request);
    } catch (error) {
      response = this.errorResponse(error, method, url);
    }

    if (match.kind === 'matched' && match.options.inSpec) response = await this.checkResponse(method, url, response);

    if (fault?.kind === 'lost-response') {
      this.log.info('Response lost by injected fault', { method, path: url.pathname, processedStatus: response.status, then: fault.then });
      if (fault.then === 'drop-connection') {
        incoming.socket.destroy();
        return;
      }
      response = this.errorResponse(faultError(fault, method, '', url.pathname), method, url);
    }

    record.status = response.status;
    send(outgoing, response, incoming.headers['x-ms-client-request-id']);
  }

  private async dispatch(match: RouteMatch, request: EmulatorRequest): Promise<EmulatorResponse> {
    const path = request.url.pathname;
    if (match.kind === 'not-found') {
      throw new ArmError(
        404,
        'NotFound',
        `No operation of the emulated Microsoft.MachineLearningServices api-version ${SUPPORTED_API_VERSION} matches ${request.method} ${path}; ` +
          'the emulator serves the workspace, datastore, data, code, environment, component and job operations.',
      );
    }
    if (match.kind === 'method-not-allowed') {
      throw new ArmError(405, 'MethodNotAllowed', `The method ${request.method} is not allowed on ${path}; allowed methods: ${match.allowed.join(', ')}.`);
    }

    if (request.method === 'PUT') checkResourceName(match.params);
    if (match.options.inSpec) {
      const issues = await this.validator.validateRequest({
        url: request.url.toString(),
        method: request.method,
        headers: stringHeaders(request.headers),
        body: request.body,
      });
      if (issues.length > 0) {
        this.log.warn('Request rejected by spec validation', { method: request.method, path, issues });
        throw specViolation(issues);
      }
    }
    return match.handler(request, match.params);
  }

  /** Validates a response against the spec; a violation is recorded and replaced by a 500 that lists it. */
  private async checkResponse(method: string, url: URL, response: EmulatorResponse): Promise<EmulatorResponse> {
    const headers = { ...(response.body !== undefined ? { 'content-type': 'application/json; charset=utf-8' } : {}), ...response.headers };
    // oav finds operations by api-version, so the response to a request with a missing or other api-version is
    // validated as a response of the supported version's operation, whose error schema it shares.
    const operationUrl = new URL(url.toString());
    operationUrl.searchParams.set('api-version', SUPPORTED_API_VERSION);
    const issues = await this.validator.validateResponse({ url: operationUrl.toString(), method }, { status: response.status, headers, body: response.body });
    if (issues.length === 0) return response;

    this.validationErrors.push({ method, path: url.pathname, status: response.status, issues });
    this.log.error('Emulator response violates the spec', { method, path: url.pathname, status: response.status, issues });
    const error = new ArmError(
      500,
      'EmulatorResponseInvalid',
      `The AML emulator produced a ${response.status} response to ${method} ${url.pathname} that violates the 2022-10-01 spec, ` +
        `a bug in the emulator: ${issues.map((issue) => `${issue.path || '(body)'}: ${issue.message}`).join('; ')}`,
      { details: issues.map((issue) => ({ code: issue.code, message: issue.message, target: issue.path })) },
    );
    return { status: error.status, body: error.toBody() };
  }

  private errorResponse(error: unknown, method: string, url: URL): EmulatorResponse {
    if (error instanceof ArmError) return { status: error.status, body: error.toBody(), headers: error.headers };
    this.log.error('Request handler failed', { method, path: url.pathname, ...errorFields(error) });
    const internal = new ArmError(500, 'InternalServerError', `The AML emulator failed on ${method} ${url.pathname}: ${(error as Error).message}`);
    return { status: internal.status, body: internal.toBody() };
  }
}

/** ARM requires `Authorization: Bearer <token>`; the emulator accepts any non-empty token. */
function checkAuthorization(header: string | undefined): void {
  if (header === undefined || header === '') throw authenticationFailed("The 'Authorization' header is missing.");
  const match = /^Bearer\s+(\S+)$/i.exec(header);
  if (match === null) throw authenticationFailed("The 'Authorization' header is not in the expected format 'Bearer <access token>'.");
}

/** Rejects a missing or unsupported api-version in the wording ARM uses for both. */
function checkApiVersion(url: URL, location: string): void {
  const version = url.searchParams.get('api-version');
  if (version === null || version === '') {
    throw new ArmError(400, 'MissingApiVersionParameter', 'The api-version query parameter (?api-version=) is required for all requests.');
  }
  if (version !== SUPPORTED_API_VERSION) {
    throw new ArmError(
      400,
      'NoRegisteredProviderFound',
      `No registered resource provider found for location '${location}' and API version '${version}' for type 'workspaces'. ` +
        `The supported api-versions are '${SUPPORTED_API_VERSION}'.`,
    );
  }
}

/** Checks the spec's name pattern for every resource created by PUT: the path's `name` or `id` parameter. */
function checkResourceName(params: Record<string, string>): void {
  const name = params.id ?? params.name;
  if (name === undefined || NAME_PATTERN.test(name)) return;
  // NOTE: the service's wording for a name that breaks the pattern is unconfirmed.
  throw userError(
    `The name '${name}' is invalid: it must start with a letter or digit and contain only letters, digits, '-' and '_', ` +
      `at most 255 characters (pattern ${NAME_PATTERN.source}).`,
    { target: 'name' },
  );
}

function parseSegments(urlPath: string): string[] {
  try {
    return splitPath(urlPath);
  } catch {
    throw new ArmError(400, 'InvalidRequestUri', `The request path ${urlPath} has an invalid percent-encoding.`);
  }
}

function parseBody(raw: Buffer): unknown {
  if (raw.length === 0) return undefined;
  try {
    return JSON.parse(raw.toString('utf8'));
  } catch (error) {
    throw new ArmError(400, 'InvalidRequestContent', `The request content was invalid and could not be deserialized: ${(error as Error).message}`);
  }
}

/** Reads the whole body; a body over MAX_BODY_BYTES is drained and rejected with 413, so the response can still be sent. */
function readBody(incoming: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    incoming.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size <= MAX_BODY_BYTES) chunks.push(chunk);
    });
    incoming.on('error', reject);
    incoming.on('end', () => {
      if (size > MAX_BODY_BYTES) {
        reject(new ArmError(413, 'RequestEntityTooLarge', `The request body has ${size} bytes, more than the ${MAX_BODY_BYTES} accepted.`));
        return;
      }
      resolve(Buffer.concat(chunks));
    });
  });
}

/** Returns the ARM resource type of a path below the workspace, for authorization messages, e.g. `.../workspaces/jobs`. */
function resourceType(segments: readonly string[]): string {
  const workspaceIndex = segments.findIndex((segment) => segment.toLowerCase() === 'workspaces');
  const child = workspaceIndex >= 0 ? segments[workspaceIndex + 2] : undefined;
  return `${PROVIDER_NAMESPACE}/workspaces${child !== undefined ? `/${child}` : ''}`;
}

function stringHeaders(headers: IncomingMessage['headers']): Record<string, string> {
  const result: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value !== undefined) result[name.toLowerCase()] = Array.isArray(value) ? value.join(', ') : value;
  }
  return result;
}

function send(outgoing: ServerResponse, response: EmulatorResponse, clientRequestId: string | string[] | undefined): void {
  const headers: Record<string, string> = {
    'x-ms-request-id': randomUUID(),
    ...(typeof clientRequestId === 'string' ? { 'x-ms-client-request-id': clientRequestId } : {}),
    ...response.headers,
  };
  if (response.body === undefined) {
    outgoing.writeHead(response.status, { ...headers, 'content-length': '0' });
    outgoing.end();
    return;
  }
  const text = JSON.stringify(response.body);
  outgoing.writeHead(response.status, {
    ...headers,
    'content-type': 'application/json; charset=utf-8',
    'content-length': String(Buffer.byteLength(text)),
  });
  outgoing.end(text);
}
