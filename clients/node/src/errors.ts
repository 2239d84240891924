/**
 * Errors of this package. A message names the field at fault and what is wrong with it, never a
 * value: no share, API key or client id is ever quoted.
 */

/** Codes this package raises itself. Errors the backup function answers keep its own code. */
export type ClientErrorCode =
  /** The request would be refused by the function (its own code for bad input). */
  | 'INVALID_INPUT'
  /** The signing shares name another client than `clientId`, or none (the function's code). */
  | 'CLIENT_MISMATCH'
  /** The client was built with settings that cannot work (a key alias, no destination, …). */
  | 'INVALID_CONFIG'
  /** KMS or the AWS Encryption SDK could not seal. */
  | 'SEAL_FAILED'
  /** SQS, Lambda or the HTTP API refused the message, or could not be reached. */
  | 'SEND_FAILED'
  /** `waitForOutcome` gave up. */
  | 'TIMEOUT';

/** An error of this package, or one the backup function answered (its `errorType` as `code`). */
export class BackupClientError extends Error {
  /** A stable code: one of {@link ClientErrorCode}, or the function's `errorType`. */
  readonly code: string;
  /** The request field at fault, where there is one (`clientId`, `generateResponse.ED25519.id`, …). */
  readonly field: string | undefined;
  /** Whether trying again later may help. */
  readonly retryable: boolean;
  /** The HTTP status of the API's answer (the HTTP API sender only). */
  readonly status: number | undefined;
  /**
   * How many seconds the API asked to wait before trying again (its `Retry-After`), a hint for
   * the caller's back-off; the client itself does not retry.
   */
  readonly retryAfterSeconds: number | undefined;
  /** API Gateway's request id of the refused call (`apigw-requestid`), for its access log. */
  readonly requestId: string | undefined;

  constructor(
    code: ClientErrorCode | (string & {}),
    message: string,
    options: {
      field?: string;
      retryable?: boolean;
      cause?: unknown;
      status?: number;
      retryAfterSeconds?: number;
      requestId?: string;
    } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'BackupClientError';
    this.code = code;
    this.field = options.field;
    this.retryable = options.retryable ?? false;
    this.status = options.status;
    this.retryAfterSeconds = options.retryAfterSeconds;
    this.requestId = options.requestId;
  }
}

/** A field-level refusal, worded as the function words it: ``field `x` is required``. */
export function invalidInput(field: string, problem: string): BackupClientError {
  return new BackupClientError('INVALID_INPUT', `field \`${field}\` ${problem}`, { field });
}

/** A short, one-line description of an AWS SDK error: its name and message, never a request. */
export function describeAwsError(err: unknown): string {
  if (err instanceof Error) {
    const text = err.message ? `${err.name}: ${err.message}` : err.name;
    return text.replace(/\s+/g, ' ').trim();
  }
  return 'unknown error';
}

/** Whether an AWS SDK error says retrying may help (throttling, a 5xx, the network). */
export function isRetryableAwsError(err: unknown): boolean {
  if (typeof err !== 'object' || err === null) return false;
  const e = err as { $retryable?: unknown; $metadata?: { httpStatusCode?: number }; name?: string };
  if (e.$retryable) return true;
  const status = e.$metadata?.httpStatusCode;
  if (status !== undefined && (status >= 500 || status === 429)) return true;
  return [
    'ThrottlingException',
    'TooManyRequestsException',
    'KMSInternalException',
    'KeyUnavailableException',
    'DependencyTimeoutException',
    'ServiceException',
    'TimeoutError',
    'ECONNRESET',
    'ECONNREFUSED',
    'ETIMEDOUT',
  ].includes(e.name ?? '');
}
