/**
 * Route table of the emulator: ARM path templates, matched segment by segment. Literal segments match
 * case-insensitively, as ARM treats provider namespaces and resource types; parameters keep their case, because
 * Azure ML job and asset names are case-sensitive.
 */
import type { IncomingHttpHeaders } from 'node:http';

/** A request after the body was read and parsed. */
export interface EmulatorRequest {
  method: string;
  /** Full URL, with the emulator's origin. */
  url: URL;
  /** Percent-decoded path segments. */
  segments: string[];
  headers: IncomingHttpHeaders;
  /** Parsed JSON body, or undefined for an empty body. */
  body: unknown;
}

/** What a route handler returns; errors are thrown as `ArmError`. */
export interface EmulatorResponse {
  status: number;
  body?: unknown;
  headers?: Record<string, string>;
}

export type RouteHandler = (request: EmulatorRequest, params: Record<string, string>) => Promise<EmulatorResponse> | EmulatorResponse;

export interface RouteOptions {
  /**
   * Whether the route is an operation of the 2022-10-01 spec, so that its traffic is validated. Only the polling
   * URLs of long-running operations are not: the service hands them out in `Location` headers, outside the spec.
   */
  inSpec: boolean;
}

interface Route {
  method: string;
  template: string[];
  handler: RouteHandler;
  options: RouteOptions;
}

export type RouteMatch =
  | { kind: 'matched'; handler: RouteHandler; params: Record<string, string>; options: RouteOptions }
  | { kind: 'method-not-allowed'; allowed: string[] }
  | { kind: 'not-found' };

export class Router {
  private readonly routes: Route[] = [];

  /** Adds a route; `template` is an ARM path such as `/subscriptions/{subscriptionId}/.../jobs/{id}`. */
  add(method: string, template: string, handler: RouteHandler, options: RouteOptions = { inSpec: true }): void {
    this.routes.push({ method: method.toUpperCase(), template: splitPath(template), handler, options });
  }

  match(method: string, segments: readonly string[]): RouteMatch {
    const allowed: string[] = [];
    for (const route of this.routes) {
      const params = matchTemplate(route.template, segments);
      if (params === undefined) continue;
      if (route.method === method.toUpperCase()) return { kind: 'matched', handler: route.handler, params, options: route.options };
      allowed.push(route.method);
    }
    return allowed.length > 0 ? { kind: 'method-not-allowed', allowed } : { kind: 'not-found' };
  }
}

/** Splits a URL path into percent-decoded segments; an empty path gives no segments. */
export function splitPath(urlPath: string): string[] {
  return urlPath
    .split('/')
    .filter((segment) => segment !== '')
    .map((segment) => decodeURIComponent(segment));
}

function matchTemplate(template: readonly string[], segments: readonly string[]): Record<string, string> | undefined {
  if (template.length !== segments.length) return undefined;
  const params: Record<string, string> = {};
  for (let index = 0; index < template.length; index += 1) {
    const part = template[index];
    const segment = segments[index];
    if (part.startsWith('{') && part.endsWith('}')) {
      params[part.slice(1, -1)] = segment;
    } else if (part.toLowerCase() !== segment.toLowerCase()) {
      return undefined;
    }
  }
  return params;
}
