/**
 * ARM error responses of the emulator. Every non-2xx response carries the Azure Resource Manager error body
 * `{"error": {"code", "message", "target"?, "details": [], ...}}`, which `@azure/core-client` turns into a
 * `RestError` whose `code` and `message` come from `error.code` and `error.message`.
 */

/** One entry of an ARM error's `details` array. */
export interface ArmErrorDetail {
  code: string;
  message: string;
  target?: string;
}

export interface ArmErrorOptions {
  target?: string;
  details?: ArmErrorDetail[];
  /** Extra response headers, such as `Retry-After` or `WWW-Authenticate`. */
  headers?: Record<string, string>;
}

/** The JSON body of an ARM error response. */
export interface ArmErrorBody {
  error: {
    code: string;
    message: string;
    target?: string;
    details: ArmErrorDetail[];
  };
}

/** Error that a route handler throws to end the request with an ARM error response. */
export class ArmError extends Error {
  override readonly name = 'ArmError';
  readonly headers: Record<string, string>;

  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly options: ArmErrorOptions = {},
  ) {
    super(message);
    this.headers = options.headers ?? {};
  }

  toBody(): ArmErrorBody {
    return {
      error: {
        code: this.code,
        message: this.message,
        ...(this.options.target !== undefined ? { target: this.options.target } : {}),
        details: this.options.details ?? [],
      },
    };
  }
}

/**
 * 404 for a missing resource below the workspace, in the wording ARM uses for `ResourceNotFound`.
 * `resourcePath` is the path after `providers/`, e.g. `Microsoft.MachineLearningServices/workspaces/ws/jobs/j1`.
 */
export function resourceNotFound(resourcePath: string, resourceGroup: string): ArmError {
  return new ArmError(
    404,
    'ResourceNotFound',
    `The Resource '${resourcePath}' under resource group '${resourceGroup}' was not found. ` +
      'For more details please go to https://aka.ms/ARMResourceNotFoundFix',
  );
}

/** 400 with Azure ML's `UserError` code, the code the service uses for requests it rejects on their content. */
export function userError(message: string, options: ArmErrorOptions = {}): ArmError {
  return new ArmError(400, 'UserError', message, options);
}

/** 400 for a request body or query that does not match the 2022-10-01 OpenAPI spec; one detail per violation. */
export function specViolation(issues: readonly { code: string; message: string; path: string }[]): ArmError {
  const summary = issues.map((issue) => `${issue.path || '(body)'}: ${issue.message}`).join('; ');
  return new ArmError(400, 'ValidationError', `The request is invalid against the Azure ML 2022-10-01 API: ${summary}`, {
    details: issues.map((issue) => ({ code: issue.code, message: issue.message, target: issue.path })),
  });
}
