/**
 * Validation of the emulator's traffic against the official Azure ML OpenAPI 2.0 spec, stable 2022-10-01.
 *
 * The validator is `oav`, Azure's own live-traffic validator for azure-rest-api-specs. Unlike generic OpenAPI
 * validators it implements the Azure extensions that these files depend on. These are `discriminator` polymorphism
 * with `x-ms-discriminator-value` (job types, job inputs and outputs, datastore credentials), `allOf` inheritance
 * combined with `additionalProperties: false`, `x-nullable`, `readOnly` and `x-ms-mutability` per direction, and
 * the ARM long-running-operation header rules.
 *
 * NOTE: oav does not reject unknown values of enums marked `x-ms-enum.modelAsString` (every enum of mfe.json), as
 * the spec declares them extensible. Discriminator values, such as `dataType` or `jobInputType`, are checked.
 *
 * oav loads specs from disk by path and resolves their relative `$ref`s, which point into the layout of the
 * azure-rest-api-specs repository. The emulator therefore lays out that tree in its work folder: symbolic links to
 * the unmodified files, except `types.json`, which is written with one added definition (see `writeSpecTree`).
 */
import { existsSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { LiveValidator, type LiveValidationIssue, type LiveValidationResult } from 'oav';
import { projectRoot } from '../../../common/project-paths';

/** The only api-version the emulator serves, the one `@azure/arm-machinelearning` 2.1.1 sends. */
export const SUPPORTED_API_VERSION = '2022-10-01';

/** The operation id oav reports for a request that matches no operation of the loaded specs. */
const UNKNOWN_OPERATION = 'unknownOperationId';

const SPEC_FILES = {
  mfe: 'mfe.json',
  workspaces: 'machineLearningServices.json',
  commonTypes: 'common-types-resource-management-v3-types.json',
  managedIdentity: 'common-types-resource-management-v3-managedidentity.json',
} as const;

/** Where the spec files sit inside azure-rest-api-specs; their relative `$ref`s assume these places. */
const MACHINE_LEARNING_DIR = 'specification/machinelearningservices/resource-manager/Microsoft.MachineLearningServices/stable/2022-10-01';
const COMMON_TYPES_DIR = 'specification/common-types/resource-management/v3';

/** Returns the folder of the official spec files: `shared/reference/azure-ml-spec-2022-10-01` beside the project. */
export function amlSpecFolder(): string {
  return path.resolve(projectRoot(), '..', 'shared', 'reference', 'azure-ml-spec-2022-10-01');
}

/** Thrown by `SpecValidator.create` when the spec folder or one of its files is missing. */
export class SpecFolderMissingError extends Error {
  override readonly name = 'SpecFolderMissingError';
}

/** Returns the names of the spec files missing from `folder`; all of them when the folder does not exist. */
export function missingSpecFiles(folder: string = amlSpecFolder()): string[] {
  return Object.values(SPEC_FILES).filter((file) => !existsSync(path.join(folder, file)));
}

/** One violation of the spec, with the JSON pointer of the offending value in the body or query. */
export interface SpecIssue {
  code: string;
  message: string;
  path: string;
}

export interface ValidatedRequest {
  url: string;
  method: string;
  headers: Record<string, string>;
  body: unknown;
}

export interface ValidatedResponse {
  status: number;
  headers: Record<string, string>;
  body: unknown;
}

/** A loaded spec, ready to validate requests and responses of the operations it defines. */
export class SpecValidator {
  private constructor(
    private readonly validator: LiveValidator,
    /** Names of properties the spec never returns: their `x-ms-mutability` lacks `read`. */
    private readonly writeOnlyProperties: ReadonlySet<string>,
  ) {}

  /**
   * Lays out the spec tree under `workFolder` and loads it. Throws `SpecFolderMissingError` when the spec files
   * are absent, and an error listing oav's messages when a file fails to load.
   */
  static async create(workFolder: string): Promise<SpecValidator> {
    const folder = amlSpecFolder();
    const missing = missingSpecFiles(folder);
    if (missing.length > 0) {
      throw new SpecFolderMissingError(
        `Azure ML OpenAPI spec folder ${folder} is missing ${missing.join(', ')}. The AML emulator validates every request ` +
          'and response against the official files of Microsoft.MachineLearningServices stable/2022-10-01 from ' +
          'Azure/azure-rest-api-specs; put mfe.json, machineLearningServices.json and the common-types v3 types.json and ' +
          `managedidentity.json (named ${SPEC_FILES.commonTypes} and ${SPEC_FILES.managedIdentity}) in that folder`,
      );
    }

    const treeRoot = writeSpecTree(folder, path.join(workFolder, 'openapi'));
    const loadErrors: string[] = [];
    const validator = new LiveValidator(
      {
        directory: treeRoot,
        swaggerPathsPattern: ['specification/machinelearningservices/**/*.json'],
        git: { shouldClone: false },
        isPathCaseSensitive: false,
        // Validators are compiled per operation on first use; compiling all in the background would hold a core.
        loadValidatorInBackground: false,
        isArmCall: true,
      },
      (message, level) => {
        if (level === 'error') loadErrors.push(message);
      },
    );
    await validator.initialize();
    if (loadErrors.length > 0) {
      throw new Error(`oav could not load the Azure ML spec from ${treeRoot}: ${loadErrors.join(' | ')}`);
    }
    return new SpecValidator(validator, writeOnlyPropertyNames(folder));
  }

  /**
   * Validates path and query parameters, headers and body of a request against its operation. Throws when oav
   * cannot validate the request at all, such as for a URL that matches no operation: that is a bug in the
   * emulator's routes, not an invalid request.
   */
  async validateRequest(request: ValidatedRequest): Promise<SpecIssue[]> {
    const result = await this.validator.validateLiveRequest(
      { url: request.url, method: request.method, headers: request.headers, body: asBody(request.body) },
      { includeOperationMatch: true },
    );
    const failure = validationFailure(result);
    if (failure !== undefined) throw new Error(`oav could not validate ${request.method} ${request.url}: ${failure}`);
    return toIssues(result.errors);
  }

  /**
   * Validates a response's status code, headers and body against the operation of `request`, and checks that the
   * body contains no write-only property, such as a datastore's `credentials.secrets`.
   *
   * oav skips the `required` check for write-only properties in responses, as the service never returns them,
   * but loses their `x-ms-secret`/`x-ms-mutability` when they sit beside a `$ref` (datastore credentials'
   * `secrets`), and then reports them as missing. Those reports are dropped here.
   */
  async validateResponse(request: { url: string; method: string }, response: ValidatedResponse): Promise<SpecIssue[]> {
    const result = await this.validator.validateLiveResponse(
      { statusCode: String(response.status), headers: response.headers, body: asBody(response.body) },
      { url: request.url, method: request.method },
      { includeOperationMatch: true },
    );
    const failure = validationFailure(result);
    const issues = toIssues(result.errors).filter(
      (issue) => !(issue.code === 'OBJECT_MISSING_REQUIRED_PROPERTY' && this.writeOnlyProperties.has(issue.path.split('/').at(-1) ?? '')),
    );
    if (failure !== undefined) issues.push({ code: 'OPERATION_NOT_VALIDATED', message: `oav could not validate the response: ${failure}`, path: '' });
    for (const leaked of findProperties(response.body, this.writeOnlyProperties, '')) {
      issues.push({ code: 'SECRET_PROPERTY', message: 'a write-only property of the spec is returned in a response', path: leaked });
    }
    return issues;
  }
}

function asBody(body: unknown): Record<string, unknown> | undefined {
  if (body === undefined) return undefined;
  return body as Record<string, unknown>;
}

/** Turns oav's issues into `SpecIssue`s, each with the JSON pointer of the first offending value. */
function toIssues(errors: readonly LiveValidationIssue[]): SpecIssue[] {
  return errors.map((error) => ({ code: String(error.code), message: error.message, path: error.pathsInPayload[0] ?? '' }));
}

/**
 * Returns why oav could not validate at all, or undefined when it did. oav reports an unmatched URL as operation
 * `unknownOperationId`, sometimes with an empty runtime exception, rather than as an issue.
 */
function validationFailure(result: LiveValidationResult): string | undefined {
  if (result.operationInfo.operationId === UNKNOWN_OPERATION) return 'no operation of the spec matches the URL and method';
  const exception = result.runtimeException as { message?: string } | undefined;
  if (exception !== undefined && Object.keys(exception).length > 0) return exception.message ?? JSON.stringify(exception);
  return undefined;
}

/**
 * Collects the names of properties whose `x-ms-mutability` lacks `read`, such as datastore credentials'
 * `secrets`. `x-ms-secret` alone does not make a property write-only: `listSecrets` returns such values.
 */
function writeOnlyPropertyNames(specFolder: string): Set<string> {
  const names = new Set<string>();
  for (const file of [SPEC_FILES.mfe, SPEC_FILES.workspaces]) {
    const spec = JSON.parse(readFileSync(path.join(specFolder, file), 'utf8')) as {
      definitions: Record<string, { properties?: Record<string, { 'x-ms-mutability'?: string[] }> }>;
    };
    for (const definition of Object.values(spec.definitions)) {
      for (const [name, property] of Object.entries(definition.properties ?? {})) {
        const mutability = property['x-ms-mutability'];
        if (mutability !== undefined && !mutability.includes('read')) names.add(name);
      }
    }
  }
  return names;
}

/** JSON pointers of every object key in `value` whose name is in `names`. */
function findProperties(value: unknown, names: ReadonlySet<string>, at: string): string[] {
  if (typeof value !== 'object' || value === null) return [];
  const found: string[] = [];
  for (const [key, child] of Object.entries(value)) {
    const childPath = `${at}/${key}`;
    if (!Array.isArray(value) && names.has(key)) found.push(childPath);
    found.push(...findProperties(child, names, childPath));
  }
  return found;
}

/**
 * Builds the azure-rest-api-specs layout under `treeRoot` and returns `treeRoot`. The spec's `mfe.json` refers to
 * `types.json#/definitions/SkuTier` (for `PartialSku.tier` and `SkuSetting.tier`), which the v3 `types.json` of
 * this copy does not define: it declares the tier inline as `Sku.properties.tier`. The written `types.json` adds
 * that inline schema as `SkuTier`, so the reference resolves to the same enum. The other files are linked as they are.
 */
function writeSpecTree(specFolder: string, treeRoot: string): string {
  const machineLearningDir = path.join(treeRoot, MACHINE_LEARNING_DIR);
  const commonTypesDir = path.join(treeRoot, COMMON_TYPES_DIR);
  rmSync(treeRoot, { recursive: true, force: true });
  mkdirSync(machineLearningDir, { recursive: true });
  mkdirSync(commonTypesDir, { recursive: true });

  symlinkSync(path.join(specFolder, SPEC_FILES.mfe), path.join(machineLearningDir, 'mfe.json'));
  symlinkSync(path.join(specFolder, SPEC_FILES.workspaces), path.join(machineLearningDir, 'machineLearningServices.json'));
  symlinkSync(path.join(specFolder, SPEC_FILES.managedIdentity), path.join(commonTypesDir, 'managedidentity.json'));

  const commonTypesFile = path.join(specFolder, SPEC_FILES.commonTypes);
  const commonTypes = JSON.parse(readFileSync(commonTypesFile, 'utf8')) as {
    definitions: Record<string, { properties?: Record<string, unknown> }>;
  };
  const inlineTier = commonTypes.definitions.Sku?.properties?.tier;
  if (inlineTier === undefined) {
    throw new Error(`${commonTypesFile} has no definitions.Sku.properties.tier; expected the common-types v3 types.json`);
  }
  commonTypes.definitions.SkuTier ??= structuredClone(inlineTier) as { properties?: Record<string, unknown> };
  writeFileSync(path.join(commonTypesDir, 'types.json'), `${JSON.stringify(commonTypes, null, 2)}\n`);
  return treeRoot;
}
