/** Lambda invoke answers: the payload, and a function error as a {@link BackupClientError}. */

import type { LambdaClient } from '@aws-sdk/client-lambda';

import { BackupClientError } from './errors';

/** A Lambda client of the AWS SDK for JavaScript v3: only `send` is used. */
export type LambdaSender = Pick<LambdaClient, 'send'>;

/** The function's error codes that retrying may fix. */
const TRANSIENT_CODES = [
  'DEPENDENCY_UNAVAILABLE',
  'DEADLINE',
  'IN_PROGRESS',
  'PORTAL_RATE_HELD',
  'PORTAL_RATE_LIMITED',
  'PORTAL_TIMEOUT',
  'PORTAL_UNAVAILABLE',
  'PORTAL_UNREACHABLE',
];

/** A Lambda answer's payload as JSON (`undefined` when empty or not JSON). */
export function payloadJson(payload: Uint8Array | undefined): unknown {
  if (!payload || payload.length === 0) return undefined;
  try {
    return JSON.parse(Buffer.from(payload).toString('utf8'));
  } catch {
    return undefined;
  }
}

/** A function error (`FunctionError` set) as a {@link BackupClientError} with its `errorType`. */
export function functionError(what: string, payload: Uint8Array | undefined): BackupClientError {
  const doc = payloadJson(payload) as { errorType?: unknown; errorMessage?: unknown } | undefined;
  const code = typeof doc?.errorType === 'string' && doc.errorType ? doc.errorType : 'FUNCTION_ERROR';
  const message = typeof doc?.errorMessage === 'string' ? doc.errorMessage.replace(/\s+/g, ' ') : 'no message';
  const retryable = TRANSIENT_CODES.includes(code);
  const field = code === 'INVALID_INPUT' ? /^field `([^`]+)`/.exec(message)?.[1] : undefined;
  return new BackupClientError(code, `${what}: ${message}`, {
    retryable,
    ...(field !== undefined ? { field } : {}),
  });
}
