/**
 * The HTTP API sender: `POST {apiUrl}/backups` with the sealed body, signed with SigV4 for
 * `execute-api` (the stack's `BackupApi` is an API Gateway HTTP API with IAM authorization). The
 * function answers 200 with the outcome, or `{"error": {"code", "message", "retryable", "step",
 * "field"?}}` with a status and, for a rate limit or an unavailable dependency, `Retry-After`
 * (`src/entry/api.rs`, `src/entry/http.rs`).
 */

import { defaultProvider } from '@aws-sdk/credential-provider-node';
import { Sha256 } from '@smithy/core/checksum';
import { SignatureV4 } from '@smithy/signature-v4';
import type { AwsCredentialIdentity, AwsCredentialIdentityProvider, HttpRequest } from '@smithy/types';

import { BackupClientError, describeAwsError } from './errors';

/** The function's route on the API. */
export const API_ROUTE = '/backups';
/** The SigV4 service name API Gateway checks. */
export const API_SIGNING_SERVICE = 'execute-api';

/** Credentials to sign with: fixed, or an AWS SDK credential provider (refreshed as it decides). */
export type ApiCredentials = AwsCredentialIdentity | AwsCredentialIdentityProvider;

/** An API Gateway default endpoint: `<api-id>.execute-api.<region>.amazonaws.com[.cn]`. */
const EXECUTE_API_HOST = /^[a-z0-9]+\.execute-api\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?$/i;
const REGION = /^[a-z]{2}(?:-[a-z]+)+-\d+$/;

/** Longest message of an answer kept in an error (the function's are short and name no secret). */
const MAX_MESSAGE = 300;

/** Where and how the API sender posts. */
export interface ApiDestination {
  /** `{apiUrl}/backups`. */
  url: URL;
  region: string;
  signer: SignatureV4;
}

function configError(field: string, message: string): BackupClientError {
  return new BackupClientError('INVALID_CONFIG', message, { field });
}

/**
 * The URL to post to: `{apiUrl}/backups`. The stack's `ApiUrl` output already ends in `/backups`
 * and is taken as it is; so is a base URL (with a stage path or not).
 */
export function backupsUrl(apiUrl: unknown): URL {
  const problem =
    '`apiUrl` must be the backup API URL (https://<api-id>.execute-api.<region>.amazonaws.com, or the stack\'s ApiUrl output), with no query';
  if (typeof apiUrl !== 'string') throw configError('apiUrl', problem);
  let url: URL;
  try {
    url = new URL(apiUrl);
  } catch {
    throw configError('apiUrl', problem);
  }
  if ((url.protocol !== 'https:' && url.protocol !== 'http:') || url.search || url.hash || url.username || url.password) {
    throw configError('apiUrl', problem);
  }
  const path = url.pathname.replace(/\/+$/, '');
  url.pathname = path.endsWith(API_ROUTE) ? path : `${path}${API_ROUTE}`;
  return url;
}

/** The region of an API Gateway default endpoint's host, if it is one. */
export function regionOfApiUrl(url: URL): string | undefined {
  return EXECUTE_API_HOST.exec(url.hostname)?.[1]?.toLowerCase();
}

/** Builds the API destination: the URL, the signing region and a signer with the credentials. */
export function apiDestination(
  apiUrl: unknown,
  options: { region?: unknown; credentials?: unknown; keyArnRegion: string },
): ApiDestination {
  const url = backupsUrl(apiUrl);
  let region: string;
  if (options.region !== undefined) {
    if (typeof options.region !== 'string' || !REGION.test(options.region)) {
      throw configError('region', '`region` must be an AWS region name (us-east-1, …)');
    }
    region = options.region;
  } else {
    region = regionOfApiUrl(url) ?? options.keyArnRegion;
  }
  const credentials = options.credentials ?? defaultProvider();
  if (typeof credentials !== 'function' && !isCredentialIdentity(credentials)) {
    throw configError('credentials', '`credentials` must be AWS credentials or a credential provider of the AWS SDK');
  }
  const signer = new SignatureV4({
    service: API_SIGNING_SERVICE,
    region,
    credentials: credentials as ApiCredentials,
    sha256: Sha256,
    uriEscapePath: true,
    applyChecksum: true,
  });
  return { url, region, signer };
}

function isCredentialIdentity(value: unknown): value is AwsCredentialIdentity {
  if (typeof value !== 'object' || value === null) return false;
  const c = value as Record<string, unknown>;
  return typeof c['accessKeyId'] === 'string' && typeof c['secretAccessKey'] === 'string';
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function oneLine(text: string): string {
  const line = text.replace(/\s+/g, ' ').trim();
  return line.length > MAX_MESSAGE ? `${line.slice(0, MAX_MESSAGE)}…` : line;
}

/** `Retry-After` in seconds: delta-seconds, or an HTTP date from now (never negative). */
export function retryAfterSeconds(value: string | null, now = Date.now()): number | undefined {
  if (value === null) return undefined;
  const text = value.trim();
  if (/^\d{1,10}$/.test(text)) return Number(text);
  const at = Date.parse(text);
  if (Number.isNaN(at)) return undefined;
  return Math.max(0, Math.ceil((at - now) / 1000));
}

/** What the API answered a completed backup. */
export interface ApiAnswer {
  /** API Gateway's request id (`x-amzn-requestid`, or `apigw-requestid`), or empty. */
  messageId: string;
  /** The function's outcome (the 200 answer's JSON object). */
  outcome?: unknown;
}

/**
 * Posts `body` to the API, signed. A 2xx answers the outcome; any other status is a
 * {@link BackupClientError}: the function's code, message, field and `retryable`, or, for an
 * answer of API Gateway itself (`{"message": "Forbidden"}`, …), `SEND_FAILED` with the status.
 * `Retry-After` becomes `retryAfterSeconds`. Redirects are refused: the body goes to the API only.
 */
export async function postToApi(destination: ApiDestination, body: string): Promise<ApiAnswer> {
  const { url, signer } = destination;
  const unsigned: HttpRequest = {
    method: 'POST',
    protocol: url.protocol,
    hostname: url.hostname,
    ...(url.port ? { port: Number(url.port) } : {}),
    path: url.pathname,
    query: {},
    headers: { host: url.host, 'content-type': 'application/json' },
    body,
  };
  let signed: HttpRequest;
  try {
    signed = await signer.sign(unsigned);
  } catch (err) {
    throw new BackupClientError('SEND_FAILED', `could not sign the API request (credentials): ${describeAwsError(err)}`, {
      cause: err,
    });
  }
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(signed.headers)) {
    // fetch sets Host from the URL, to the value signed (url.host).
    if (name.toLowerCase() !== 'host') headers[name] = value;
  }
  let response: Response;
  try {
    response = await fetch(url, { method: 'POST', headers, body, redirect: 'error' });
  } catch (err) {
    const cause = (err as { cause?: unknown }).cause;
    const why = cause instanceof Error ? describeAwsError(cause) : describeAwsError(err);
    throw new BackupClientError('SEND_FAILED', `the API could not be reached: ${why}`, { retryable: true, cause: err });
  }
  const requestId = response.headers.get('x-amzn-requestid') ?? response.headers.get('apigw-requestid') ?? '';
  let text: string;
  try {
    text = await response.text();
  } catch (err) {
    throw new BackupClientError('SEND_FAILED', `the API's answer was cut short (status ${response.status})`, {
      retryable: true,
      status: response.status,
      ...(requestId ? { requestId } : {}),
      cause: err,
    });
  }
  let doc: unknown;
  try {
    doc = text ? JSON.parse(text) : undefined;
  } catch {
    doc = undefined;
  }
  if (response.ok) {
    return isObject(doc) ? { messageId: requestId, outcome: doc } : { messageId: requestId };
  }
  throw apiError(response.status, doc, response.headers.get('retry-after'), requestId);
}

/** A refusal of the API as a {@link BackupClientError}; quotes the answer's message only. */
function apiError(status: number, doc: unknown, retryAfter: string | null, requestId: string): BackupClientError {
  const after = retryAfterSeconds(retryAfter);
  const common = {
    status,
    ...(after !== undefined ? { retryAfterSeconds: after } : {}),
    ...(requestId ? { requestId } : {}),
  };
  const hint = after !== undefined ? ` (retry after ${after} s)` : '';
  const error = isObject(doc) ? doc['error'] : undefined;
  if (isObject(error) && typeof error['code'] === 'string' && error['code']) {
    const code = error['code'];
    const message = typeof error['message'] === 'string' ? oneLine(error['message']) : 'no message';
    const field = typeof error['field'] === 'string' ? error['field'] : undefined;
    const retryable = typeof error['retryable'] === 'boolean' ? error['retryable'] : status === 429 || status >= 500;
    return new BackupClientError(code, `the backup API answered ${status}: ${message}${hint}`, {
      ...common,
      retryable,
      ...(field !== undefined ? { field } : {}),
    });
  }
  // API Gateway's own answers: {"message": "Forbidden"}, a signature mismatch (its first line
  // only: the rest quotes the canonical request), a throttle, a timeout.
  const raw = isObject(doc) && typeof doc['message'] === 'string' ? doc['message'] : '';
  const first = oneLine(raw.split('\n')[0] ?? '');
  return new BackupClientError('SEND_FAILED', `the backup API answered ${status}${first ? `: ${first}` : ''}${hint}`, {
    ...common,
    retryable: status === 429 || status >= 500,
  });
}
