/**
 * Fault injection: rules that make the emulator respond to matching requests with throttling, server errors,
 * authentication or authorization failures, or lose the response of a request it processed.
 */
import { ArmError } from './arm-errors';

/** The emulator's response to a request that a fault rule matches. */
export type FaultResponse =
  /** 429 with `Retry-After: <seconds>`, before the request is processed. */
  | { kind: 'throttle'; retryAfterSeconds: number }
  /** 500 before the request is processed. */
  | { kind: 'server-error' }
  /** 401 with a `WWW-Authenticate` challenge, before the request is processed. */
  | { kind: 'unauthorized' }
  /** 403 `AuthorizationFailed`, before the request is processed. */
  | { kind: 'forbidden' }
  /**
   * The request is processed in full, then the response is lost: the client receives a 500 instead, or the
   * connection is closed without a response. A client retry then meets the resource the lost request created.
   */
  | { kind: 'lost-response'; then: 'server-error' | 'drop-connection' };

export interface FaultRule {
  /** HTTP method to match; any method when absent. */
  method?: string;
  /** Tested against the URL path without the query, e.g. `/\/jobs\/[^/]+$/`. */
  path: RegExp;
  /** How many matching requests the rule applies to. @default 1 */
  times?: number;
  response: FaultResponse;
}

/** A rule after `injectFault`; `remaining` counts down as requests match it. */
export interface ActiveFault {
  readonly rule: FaultRule;
  readonly remaining: number;
}

interface StoredFault {
  rule: FaultRule;
  remaining: number;
}

export class FaultInjector {
  private readonly faults: StoredFault[] = [];

  add(rule: FaultRule): ActiveFault {
    const times = rule.times ?? 1;
    if (!Number.isInteger(times) || times < 1) throw new Error(`fault rule times is ${times}; expected an integer of 1 or more`);
    if (rule.response.kind === 'throttle' && (!Number.isInteger(rule.response.retryAfterSeconds) || rule.response.retryAfterSeconds < 0)) {
      throw new Error(`throttle fault retryAfterSeconds is ${rule.response.retryAfterSeconds}; expected a whole number of seconds, 0 or more`);
    }
    const fault: StoredFault = { rule, remaining: times };
    this.faults.push(fault);
    return {
      rule,
      get remaining() {
        return fault.remaining;
      },
    };
  }

  /** Returns the response of the first rule that matches and still applies, and counts the use. */
  take(method: string, urlPath: string): FaultResponse | undefined {
    const fault = this.faults.find(
      (candidate) =>
        candidate.remaining > 0 &&
        (candidate.rule.method === undefined || candidate.rule.method.toUpperCase() === method.toUpperCase()) &&
        candidate.rule.path.test(urlPath),
    );
    if (fault === undefined) return undefined;
    fault.remaining -= 1;
    return fault.rule.response;
  }

  clear(): void {
    this.faults.length = 0;
  }
}

/** Returns the ARM error sent for a fault that stops a request before processing, or replaces a lost response. */
export function faultError(response: FaultResponse, method: string, resourceType: string, scope: string): ArmError {
  switch (response.kind) {
    case 'throttle':
      return new ArmError(
        429,
        'TooManyRequests',
        `The request is being throttled; retry after ${response.retryAfterSeconds} seconds.`,
        { headers: { 'retry-after': String(response.retryAfterSeconds) } },
      );
    case 'unauthorized':
      return authenticationFailed('The access token expired or was revoked; acquire a new token and retry.');
    case 'forbidden':
      return new ArmError(
        403,
        'AuthorizationFailed',
        `The client 'amlbatch-test' does not have authorization to perform action '${resourceType}/${method === 'GET' ? 'read' : 'write'}' ` +
          `over scope '${scope}' or the scope is invalid. If access was recently granted, please refresh your credentials.`,
      );
    case 'server-error':
    case 'lost-response':
      return new ArmError(500, 'InternalServerError', 'The server encountered an internal error; retry the request.');
  }
}

/**
 * 401 with the bearer challenge ARM sends. The challenge carries no `claims`, so the SDK's claim-challenge
 * handler does not retry and the client sees the 401.
 */
export function authenticationFailed(message: string): ArmError {
  return new ArmError(401, 'AuthenticationFailed', `Authentication failed. ${message}`, {
    headers: {
      'www-authenticate':
        'Bearer authorization_uri="https://login.microsoftonline.com/common", error="invalid_token", ' +
        'error_description="The authentication failed because of missing or invalid Authorization header."',
    },
  });
}
