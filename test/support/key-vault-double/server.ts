/**
 * A Key Vault test double: the secrets part of the Key Vault data-plane REST API over HTTPS, and a managed
 * identity token endpoint over plain HTTP as Azure ML compute and App Service expose it. The real Azure SDK
 * clients talk to it unchanged: `@azure/keyvault-secrets` with `@azure/identity`, and `azure-keyvault-secrets`
 * with `azure-identity` in Python. They must only trust its certificate and skip the challenge resource check,
 * because the vault runs on 127.0.0.1 and not under vault.azure.net.
 *
 * What it reproduces from the real service:
 * - the authentication challenge: a request without a token gets 401 with
 *   `WWW-Authenticate: Bearer authorization="https://login.microsoftonline.com/<tenant>", resource="https://vault.azure.net"`;
 * - bearer tokens: only tokens from its own token endpoint, signed by it, unexpired and with the audience
 *   https://vault.azure.net, are accepted;
 * - access policies: each test identity holds a fixed set of secret permissions, and a missing one gets
 *   403 Forbidden with inner error code AccessDenied;
 * - secrets: set (PUT), get the latest or one version, update attributes (PATCH) and list. A missing secret
 *   gets 404 SecretNotFound, and a disabled one 403 Forbidden with inner error code SecretDisabled;
 * - the `api-version` query parameter, which must name a version the SDKs send.
 *
 * Not reproduced: deletion and recovery, backup, certificates and keys, paging (every list is one page), and
 * the `nbf`/`exp` attributes, which are stored and returned but never enforced.
 */
import { createHmac, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';

/** The resource that Key Vault names in its challenge, and so the audience of the tokens it accepts. */
export const KEY_VAULT_RESOURCE = 'https://vault.azure.net';

/** Tenant named in the challenge. Managed identity credentials ignore it, so no client contacts that tenant. */
export const TEST_TENANT_ID = '00000000-0000-4000-8000-00000000a0a0';

/**
 * Value that token requests must carry in the `secret` header (Azure ML) or `X-IDENTITY-HEADER` (App Service).
 * It is a fixed, published value and not a secret, because it only proves that the caller read the environment.
 */
export const MANAGED_IDENTITY_HEADER_VALUE = 'amlbatch-test-managed-identity-header';

export type SecretPermission = 'get' | 'list' | 'set';

/** A managed identity that the token endpoint issues tokens for, with its access policy on the vault. */
export interface TestIdentity {
  clientId: string;
  permissions: readonly SecretPermission[];
}

/**
 * The identities of the simulated compute. `reader` is its system-assigned identity, which a token request
 * without a client id gets, with the permissions of the "Key Vault Secrets User" role. `administrator` can also
 * set secrets, so tests seed the vault with it. `noAccess` is assigned to the compute but has no access policy.
 */
export const TEST_IDENTITIES = {
  reader: { clientId: '00000000-0000-4000-8000-00000000a001', permissions: ['get', 'list'] },
  administrator: { clientId: '00000000-0000-4000-8000-00000000a002', permissions: ['get', 'list', 'set'] },
  noAccess: { clientId: '00000000-0000-4000-8000-00000000a003', permissions: [] },
} as const satisfies Record<string, TestIdentity>;

/** Key Vault API versions that the double accepts. The newest ones are the defaults of the installed SDKs. */
export const SUPPORTED_API_VERSIONS = ['7.0', '7.1', '7.2', '7.3', '7.4', '7.5', '7.6', '2025-07-01', '2026-04-01'];

/** Key Vault's own rule for secret names. */
const SECRET_NAME_PATTERN = /^[0-9a-zA-Z-]{1,127}$/;

/** Maximum request body size. Key Vault itself limits a secret value to 25 KiB. */
const MAX_BODY_BYTES = 256 * 1024;

const TOKEN_LIFETIME_SECONDS = 3600;

/** Allowed clock difference for token times. Both endpoints run in this process, so it only covers rounding. */
const CLOCK_SKEW_SECONDS = 60;

export type LogFunction = (message: string, fields: Record<string, unknown>) => void;

export interface KeyVaultDoubleOptions {
  /** PEM certificate of the HTTPS vault endpoint. Its subject alternative names must include 127.0.0.1. */
  certPem: string;
  /** PEM private key of `certPem`. */
  keyPem: string;
  /** Loopback address both servers bind. @default '127.0.0.1' */
  host?: string;
  /** HTTPS port of the vault, or 0 for a free one. @default 0 */
  vaultPort?: number;
  /** HTTP port of the managed identity token endpoint, or 0 for a free one. @default 0 */
  identityPort?: number;
  /** Receives one entry per request, without secret values or tokens. @default no logging */
  log?: LogFunction;
}

/** A running double: its two endpoints and how to stop it. */
export interface KeyVaultDoubleServer {
  /** Vault URL, such as `https://127.0.0.1:41234`, to pass to a SecretClient. */
  vaultUrl: string;
  /** Token endpoint: the value of `MSI_ENDPOINT` (Azure ML) or `IDENTITY_ENDPOINT` (App Service). */
  managedIdentityEndpoint: string;
  close(): Promise<void>;
}

/**
 * Coordinates of a running double, as the standalone program prints them. They contain no secrets. The
 * identities are client ids, and `reader` is the default (system-assigned) one.
 */
export interface KeyVaultDoubleCoordinates {
  vaultUrl: string;
  /** PEM file of the vault's self-signed certificate, to trust as a CA. */
  caCertPath: string;
  managedIdentityEndpoint: string;
  /** Value for `MSI_SECRET` or `IDENTITY_HEADER`: {@link MANAGED_IDENTITY_HEADER_VALUE}. */
  managedIdentityHeader: string;
  tenantId: string;
  identities: { reader: string; administrator: string; noAccess: string };
}

interface SecretVersion {
  version: string;
  value: string;
  enabled: boolean;
  contentType?: string;
  tags?: Record<string, string>;
  notBefore?: number;
  expires?: number;
  created: number;
  updated: number;
}

/** A Key Vault error response: HTTP status, the `error.code`, message and optional inner error code. */
class VaultError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly innerCode?: string,
  ) {
    super(message);
  }
}

/** Starts the vault and the token endpoint; resolves once both listen. */
export async function startKeyVaultDoubleServer(options: KeyVaultDoubleOptions): Promise<KeyVaultDoubleServer> {
  const host = options.host ?? '127.0.0.1';
  const log: LogFunction = options.log ?? (() => undefined);
  const signingKey = randomBytes(32);
  const secrets = new Map<string, SecretVersion[]>();

  const identityServer = http.createServer((request, response) => {
    handleTokenRequest(request, response, signingKey, log);
  });
  const identityPort = await listen(identityServer, host, options.identityPort ?? 0);

  let vaultUrl = '';
  const vaultServer = https.createServer({ cert: options.certPem, key: options.keyPem }, (request, response) => {
    handleVaultRequest(request, response, { vaultUrl, signingKey, secrets, log }).catch((error: unknown) => {
      log('key vault double failed to answer a request', { method: request.method, error: String(error) });
      if (!response.headersSent) sendJson(response, 500, { error: { code: 'InternalError', message: 'The test double failed; see its log.' } });
      else response.destroy();
    });
  });
  let vaultPort: number;
  try {
    vaultPort = await listen(vaultServer, host, options.vaultPort ?? 0);
  } catch (error) {
    await close(identityServer);
    throw error;
  }
  vaultUrl = `https://${host}:${vaultPort}`;

  return {
    vaultUrl,
    managedIdentityEndpoint: `http://${host}:${identityPort}/msi/token`,
    close: async () => {
      await Promise.all([close(vaultServer), close(identityServer)]);
    },
  };
}

// ////////////////////////////////////////////////////////////////////////////////////////////// Token endpoint

/**
 * Issues a token for a managed identity token request in one of the two forms the SDKs send:
 * - Azure ML compute (`MSI_ENDPOINT`, `MSI_SECRET`): api-version 2017-09-01, header `secret`, query `clientid`;
 * - App Service (`IDENTITY_ENDPOINT`, `IDENTITY_HEADER`): api-version 2019-08-01, header `X-IDENTITY-HEADER`,
 *   query `client_id`.
 * Without a client id the compute's system-assigned identity (`reader`) is used.
 */
function handleTokenRequest(request: http.IncomingMessage, response: http.ServerResponse, signingKey: Buffer, log: LogFunction): void {
  const url = new URL(request.url ?? '/', 'http://localhost');
  const apiVersion = url.searchParams.get('api-version');
  const forms: Record<string, { header: string; clientIdParameter: string }> = {
    '2017-09-01': { header: 'secret', clientIdParameter: 'clientid' },
    '2019-08-01': { header: 'x-identity-header', clientIdParameter: 'client_id' },
  };
  const form = apiVersion ? forms[apiVersion] : undefined;

  const reject = (status: number, error: string, description: string): void => {
    log('token request rejected', { apiVersion, status, error: description });
    sendJson(response, status, { error, error_description: description });
  };

  if (request.method !== 'GET' || url.pathname !== '/msi/token') {
    reject(404, 'not_found', `No token endpoint at ${request.method} ${url.pathname}; use GET /msi/token.`);
    return;
  }
  if (!form) {
    reject(400, 'invalid_request', `Unsupported api-version '${apiVersion}'; use 2017-09-01 (Azure ML) or 2019-08-01 (App Service).`);
    return;
  }
  if (request.headers[form.header] !== MANAGED_IDENTITY_HEADER_VALUE) {
    reject(401, 'unauthorized', `Missing or wrong '${form.header}' header; set it from MSI_SECRET or IDENTITY_HEADER.`);
    return;
  }
  const resource = url.searchParams.get('resource');
  if (!resource) {
    reject(400, 'invalid_request', "Missing the 'resource' query parameter.");
    return;
  }
  if (url.searchParams.has('mi_res_id') || url.searchParams.has('object_id') || url.searchParams.has('principal_id')) {
    reject(400, 'invalid_request', 'The test double selects user-assigned identities by client id only.');
    return;
  }

  const clientId = url.searchParams.get(form.clientIdParameter) || TEST_IDENTITIES.reader.clientId;
  if (!findIdentity(clientId)) {
    reject(400, 'invalid_request', `Identity not found: no managed identity with client id ${clientId} is assigned to this compute.`);
    return;
  }

  const now = Math.floor(Date.now() / 1000);
  const expiresOn = now + TOKEN_LIFETIME_SECONDS;
  const token = signToken(
    { aud: resource, iss: `https://sts.windows.net/${TEST_TENANT_ID}/`, tid: TEST_TENANT_ID, appid: clientId, iat: now, nbf: now, exp: expiresOn },
    signingKey,
  );
  log('token issued', { apiVersion, clientId, resource });
  // Azure ML returns expires_on as a number and App Service as a string of epoch seconds (azure-identity 1.27,
  // `_credentials/azure_ml.py`). Both SDKs accept either form.
  sendJson(response, 200, {
    access_token: token,
    expires_on: apiVersion === '2017-09-01' ? expiresOn : String(expiresOn),
    resource,
    token_type: 'Bearer',
    client_id: clientId,
  });
}

function findIdentity(clientId: string): TestIdentity | undefined {
  return Object.values(TEST_IDENTITIES).find((identity) => identity.clientId === clientId);
}

function signToken(claims: Record<string, unknown>, signingKey: Buffer): string {
  const header = base64Url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const payload = base64Url(JSON.stringify(claims));
  const signature = createHmac('sha256', signingKey).update(`${header}.${payload}`).digest('base64url');
  return `${header}.${payload}.${signature}`;
}

/** Returns the token's claims, or the reason it is not acceptable to the vault. */
function verifyToken(token: string, signingKey: Buffer): { claims: Record<string, unknown> } | { reason: string } {
  const parts = token.split('.');
  if (parts.length !== 3) return { reason: 'The bearer token is not a JWT.' };
  const [header, payload, signature] = parts as [string, string, string];

  const expected = createHmac('sha256', signingKey).update(`${header}.${payload}`).digest();
  const given = Buffer.from(signature, 'base64url');
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
    return { reason: "The bearer token's signature is invalid; only tokens from this double's token endpoint are accepted." };
  }

  // The signature matched, so the payload is one this double wrote.
  const claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as Record<string, unknown>;
  const now = Math.floor(Date.now() / 1000);
  if (typeof claims.exp !== 'number' || claims.exp + CLOCK_SKEW_SECONDS < now) return { reason: 'The bearer token has expired.' };
  if (typeof claims.nbf !== 'number' || claims.nbf - CLOCK_SKEW_SECONDS > now) return { reason: 'The bearer token is not valid yet.' };
  if (claims.aud !== KEY_VAULT_RESOURCE && claims.aud !== `${KEY_VAULT_RESOURCE}/`) {
    return { reason: `The bearer token's audience '${String(claims.aud)}' is invalid; Key Vault expects ${KEY_VAULT_RESOURCE}.` };
  }
  return { claims };
}

// /////////////////////////////////////////////////////////////////////////////////////////////////// Vault

interface VaultContext {
  vaultUrl: string;
  signingKey: Buffer;
  secrets: Map<string, SecretVersion[]>;
  log: LogFunction;
}

async function handleVaultRequest(request: http.IncomingMessage, response: http.ServerResponse, context: VaultContext): Promise<void> {
  const url = new URL(request.url ?? '/', context.vaultUrl);
  const method = request.method ?? 'GET';
  let clientId: string | undefined;

  try {
    // Authentication comes first, as in the real service, because the SDKs' first request has no token and expects 401.
    const authorization = request.headers.authorization;
    if (!authorization || !authorization.startsWith('Bearer ')) {
      sendChallenge(response, 'Request is missing a Bearer token.');
      context.log('key vault request', { method, path: url.pathname, status: 401, reason: 'no token' });
      return;
    }
    const verified = verifyToken(authorization.slice('Bearer '.length), context.signingKey);
    if ('reason' in verified) {
      sendChallenge(response, verified.reason);
      context.log('key vault request', { method, path: url.pathname, status: 401, reason: verified.reason });
      return;
    }
    clientId = String(verified.claims.appid);

    const apiVersion = url.searchParams.get('api-version');
    if (!apiVersion || !SUPPORTED_API_VERSIONS.includes(apiVersion)) {
      throw new VaultError(400, 'BadParameter', `The api-version '${apiVersion}' is not supported; use one of ${SUPPORTED_API_VERSIONS.join(', ')}.`);
    }

    const body = method === 'PUT' || method === 'PATCH' ? await readJsonBody(request) : undefined;
    const { status, payload } = routeSecretRequest(method, url.pathname, body, clientId, context);
    sendJson(response, status, payload);
    context.log('key vault request', { method, path: url.pathname, status, clientId });
  } catch (error) {
    if (!(error instanceof VaultError)) throw error;
    const inner = error.innerCode ? { innererror: { code: error.innerCode } } : {};
    sendJson(response, error.status, { error: { code: error.code, message: error.message, ...inner } });
    context.log('key vault request', { method, path: url.pathname, status: error.status, clientId, code: error.innerCode ?? error.code });
  }
}

function routeSecretRequest(
  method: string,
  pathname: string,
  body: Record<string, unknown> | undefined,
  clientId: string,
  context: VaultContext,
): { status: number; payload: unknown } {
  // The SDKs send "/secrets/{name}/" with a trailing slash when they ask for the latest version.
  const segments = pathname.split('/').filter((segment) => segment !== '');
  if (segments[0] !== 'secrets') {
    throw new VaultError(404, 'NotFound', `The test double serves only the /secrets API, not ${method} ${pathname}.`);
  }
  const [, name, version] = segments;

  if (name === undefined) {
    if (method !== 'GET') throw notImplemented(method, pathname);
    authorize(clientId, 'list', context.vaultUrl);
    const items = [...context.secrets.entries()].map(([secretName, versions]) => secretItem(context.vaultUrl, secretName, versions.at(-1)!));
    return { status: 200, payload: { value: items, nextLink: null } };
  }

  if (!SECRET_NAME_PATTERN.test(name)) {
    throw new VaultError(400, 'BadParameter', `The secret name '${name}' is invalid; use 1 to 127 letters, digits and dashes.`);
  }
  if (segments.length > 3) throw notImplemented(method, pathname);

  if (method === 'PUT' && version === undefined) {
    authorize(clientId, 'set', context.vaultUrl);
    return { status: 200, payload: setSecret(context, name, body ?? {}) };
  }
  if (method === 'GET') {
    authorize(clientId, 'get', context.vaultUrl);
    const found = findVersion(context, name, version);
    if (!found.enabled) {
      throw new VaultError(403, 'Forbidden', 'Operation get is not allowed on a disabled secret.', 'SecretDisabled');
    }
    return { status: 200, payload: secretBundle(context.vaultUrl, name, found, true) };
  }
  if (method === 'PATCH' && version !== undefined) {
    authorize(clientId, 'set', context.vaultUrl);
    const found = findVersion(context, name, version);
    applyAttributes(found, body ?? {});
    found.updated = Math.floor(Date.now() / 1000);
    return { status: 200, payload: secretBundle(context.vaultUrl, name, found, false) };
  }
  throw notImplemented(method, pathname);
}

function authorize(clientId: string, permission: SecretPermission, vaultUrl: string): void {
  const identity = findIdentity(clientId);
  if (!identity || !identity.permissions.includes(permission)) {
    throw new VaultError(
      403,
      'Forbidden',
      `The identity with client id ${clientId} does not have secrets ${permission} permission on key vault ${vaultUrl}.`,
      'AccessDenied',
    );
  }
}

function findVersion(context: VaultContext, name: string, version: string | undefined): SecretVersion {
  const versions = context.secrets.get(name);
  const found = version === undefined ? versions?.at(-1) : versions?.find((candidate) => candidate.version === version);
  if (!found) {
    const what = version === undefined ? `(name/id) ${name}` : `(name/id) ${name}/${version}`;
    throw new VaultError(404, 'SecretNotFound', `A secret with ${what} was not found in this key vault.`);
  }
  return found;
}

function setSecret(context: VaultContext, name: string, body: Record<string, unknown>): unknown {
  if (typeof body.value !== 'string') {
    throw new VaultError(400, 'BadParameter', "The request body must contain the secret 'value' as a string.");
  }
  const now = Math.floor(Date.now() / 1000);
  const entry: SecretVersion = { version: randomUUID().replace(/-/g, ''), value: body.value, enabled: true, created: now, updated: now };
  applyAttributes(entry, body);
  const versions = context.secrets.get(name) ?? [];
  versions.push(entry);
  context.secrets.set(name, versions);
  return secretBundle(context.vaultUrl, name, entry, true);
}

/** Copies `attributes.enabled/nbf/exp`, `contentType` and `tags` from a PUT or PATCH body. */
function applyAttributes(entry: SecretVersion, body: Record<string, unknown>): void {
  const attributes = (body.attributes ?? {}) as Record<string, unknown>;
  if (typeof attributes.enabled === 'boolean') entry.enabled = attributes.enabled;
  if (typeof attributes.nbf === 'number') entry.notBefore = attributes.nbf;
  if (typeof attributes.exp === 'number') entry.expires = attributes.exp;
  if (typeof body.contentType === 'string') entry.contentType = body.contentType;
  if (body.tags && typeof body.tags === 'object') entry.tags = body.tags as Record<string, string>;
}

function secretAttributes(entry: SecretVersion): Record<string, unknown> {
  return {
    enabled: entry.enabled,
    created: entry.created,
    updated: entry.updated,
    recoveryLevel: 'Recoverable+Purgeable',
    recoverableDays: 90,
    ...(entry.notBefore !== undefined ? { nbf: entry.notBefore } : {}),
    ...(entry.expires !== undefined ? { exp: entry.expires } : {}),
  };
}

function secretBundle(vaultUrl: string, name: string, entry: SecretVersion, includeValue: boolean): Record<string, unknown> {
  return {
    ...(includeValue ? { value: entry.value } : {}),
    id: `${vaultUrl}/secrets/${name}/${entry.version}`,
    attributes: secretAttributes(entry),
    ...(entry.contentType !== undefined ? { contentType: entry.contentType } : {}),
    ...(entry.tags !== undefined ? { tags: entry.tags } : {}),
  };
}

function secretItem(vaultUrl: string, name: string, latest: SecretVersion): Record<string, unknown> {
  return {
    id: `${vaultUrl}/secrets/${name}`,
    attributes: secretAttributes(latest),
    ...(latest.contentType !== undefined ? { contentType: latest.contentType } : {}),
    ...(latest.tags !== undefined ? { tags: latest.tags } : {}),
  };
}

function notImplemented(method: string, pathname: string): VaultError {
  return new VaultError(501, 'NotImplemented', `The test double does not implement ${method} ${pathname}.`);
}

// ////////////////////////////////////////////////////////////////////////////////////////////////// HTTP

function sendChallenge(response: http.ServerResponse, message: string): void {
  response.setHeader(
    'WWW-Authenticate',
    `Bearer authorization="https://login.microsoftonline.com/${TEST_TENANT_ID}", resource="${KEY_VAULT_RESOURCE}"`,
  );
  sendJson(response, 401, { error: { code: 'Unauthorized', message } });
}

function sendJson(response: http.ServerResponse, status: number, payload: unknown): void {
  const text = JSON.stringify(payload);
  response.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) });
  response.end(text);
}

async function readJsonBody(request: http.IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of request) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY_BYTES) throw new VaultError(413, 'BadParameter', `The request body exceeds ${MAX_BODY_BYTES} bytes.`);
    chunks.push(chunk as Buffer);
  }
  try {
    const parsed: unknown = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    if (parsed && typeof parsed === 'object' && !Array.isArray(parsed)) return parsed as Record<string, unknown>;
  } catch {
    // Reported below without echoing the body, which may contain a secret value.
  }
  throw new VaultError(400, 'BadParameter', 'The request body must be a JSON object.');
}

function base64Url(text: string): string {
  return Buffer.from(text, 'utf8').toString('base64url');
}

function listen(server: http.Server | https.Server, host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve((server.address() as AddressInfo).port);
    });
  });
}

function close(server: http.Server | https.Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}
