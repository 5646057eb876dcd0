/**
 * Paged list responses `{value, nextLink}`. The continuation token travels in the spec's `$skip` query
 * parameter of `nextLink`. It is the offset of the next item, base64url-encoded so that clients treat it as opaque.
 */
import { userError } from './arm-errors';

/** Query parameter of the continuation token in every paged list of the 2022-10-01 spec. */
export const SKIP_TOKEN_PARAMETER = '$skip';

export interface Page<T> {
  value: T[];
  /** Absent on the last page: the spec types `nextLink` as a string, so it is omitted rather than null. */
  nextLink?: string;
}

/**
 * Returns the page of `items` that starts at the request's `$skip` token. `nextLink` repeats the request URL,
 * including its filters and api-version, with the token of the following page.
 */
export function pageOf<T>(items: readonly T[], requestUrl: URL, pageSize: number): Page<T> {
  const offset = readOffset(requestUrl.searchParams.get(SKIP_TOKEN_PARAMETER));
  const end = offset + pageSize;
  const page: Page<T> = { value: items.slice(offset, end) };
  if (end < items.length) {
    const next = new URL(requestUrl.toString());
    next.searchParams.set(SKIP_TOKEN_PARAMETER, Buffer.from(`offset:${end}`).toString('base64url'));
    page.nextLink = next.toString();
  }
  return page;
}

function readOffset(token: string | null): number {
  if (token === null || token === '') return 0;
  const decoded = Buffer.from(token, 'base64url').toString('utf8');
  const match = /^offset:(\d+)$/.exec(decoded);
  if (match === null) {
    throw userError(`The continuation token '${token}' is invalid; use the nextLink of the previous page unchanged.`, {
      target: SKIP_TOKEN_PARAMETER,
    });
  }
  return Number(match[1]);
}
