/**
 * The producer's client: validate a backup request as the function would, seal the generate
 * response and the API key together, and hand the body to the backup queue, the backup function,
 * or the backup function's HTTP API.
 */

import { InvokeCommand } from '@aws-sdk/client-lambda';
import { SendMessageCommand, type SQSClient } from '@aws-sdk/client-sqs';

import { apiDestination, postToApi, type ApiCredentials, type ApiDestination } from './api';
import { BackupClientError, describeAwsError, invalidInput, isRetryableAwsError } from './errors';
import { functionError, payloadJson, type LambdaSender } from './invoke';
import { checkKeyArn, regionOfKeyArn, sealGenerateResponse, type KmsSender } from './seal';
import {
  MAX_BODY_BYTES,
  newIdempotencyKey,
  validateRequest,
  type BackupMode,
  type BackupRequest,
} from './validate';

/** An SQS client of the AWS SDK for JavaScript v3: only `send` is used. */
export type SqsSender = Pick<SQSClient, 'send'>;

/** How {@link BackupClient} is built. */
export interface BackupClientOptions {
  /** Seals with the caller's region, endpoint and credentials; only GenerateDataKey is called. */
  kms: KmsSender;
  /** The backup key's ARN (the stack's `KeyArn` output); an alias or bare key id is refused. */
  keyArn: string;
  /** Sends to the backup queue. */
  sqs?: SqsSender;
  /** The backup queue's URL (a `.fifo` URL gets a message group and deduplication id). */
  queueUrl?: string;
  /** Invokes the backup function directly. */
  lambda?: LambdaSender;
  /** The backup function's name or ARN (`<stack>-backup`). */
  functionName?: string;
  /**
   * Direct invoke only: `RequestResponse` (default) waits for the backup and answers its
   * outcome, or throws the function's error code; `Event` queues the invoke and returns.
   */
  invocationType?: 'RequestResponse' | 'Event';
  /**
   * Posts to the backup function's HTTP API: `{apiUrl}/backups`, signed with SigV4 for
   * `execute-api`. The base URL (`https://<api-id>.execute-api.<region>.amazonaws.com`) or the
   * stack's `ApiUrl` output (which already ends in `/backups`).
   */
  apiUrl?: string;
  /**
   * API only: the credentials to sign with, fixed or an AWS SDK credential provider. Default: the
   * SDK's default chain (`defaultProvider` of `@aws-sdk/credential-provider-node`).
   */
  credentials?: ApiCredentials;
  /**
   * API only: the region to sign for. Default: the API URL's (`…execute-api.<region>.amazonaws.com`),
   * else the key ARN's.
   */
  region?: string;
}

/** What the function answers a completed backup (direct invoke, `RequestResponse`). */
export interface BackupOutcome {
  clientId: string;
  backupMode: BackupMode;
  /** Backup share pair ids, SECP256K1 then ED25519. */
  backupSharePairIds: [string, string];
  status: 'COMPLETED';
}

/** What {@link BackupClient.backUp} answers. */
export interface BackUpResult {
  /** The backup's idempotency key: the request's, or the one generated for it. */
  idempotencyKey: string;
  /**
   * The SQS message id, the Lambda request id of a direct invoke, or API Gateway's request id
   * (`x-amzn-requestid` / `apigw-requestid`; empty if the API answered none).
   */
  messageId: string;
  /** The function's outcome, for a direct `RequestResponse` invoke or the HTTP API. */
  outcome?: BackupOutcome;
}

/** SQS's rule for a FIFO message group id: 1 to 128 ASCII letters, digits and punctuation. */
const FIFO_ID = /^[\x21-\x7e]{1,128}$/;

type Destination =
  | { kind: 'sqs'; sqs: SqsSender; queueUrl: string; fifo: boolean }
  | { kind: 'lambda'; lambda: LambdaSender; functionName: string; invocationType: 'RequestResponse' | 'Event' }
  | ({ kind: 'api' } & ApiDestination)
  | { kind: 'none' };

function configError(field: string, message: string): BackupClientError {
  return new BackupClientError('INVALID_CONFIG', message, { field });
}

/** Seals backup requests and sends them to the backup queue, the backup function or its HTTP API. */
export class BackupClient {
  readonly #kms: KmsSender;
  readonly #keyArn: string;
  readonly #destination: Destination;

  constructor(options: BackupClientOptions) {
    if (options === null || typeof options !== 'object') {
      throw configError('options', 'BackupClient takes { kms, keyArn, sqs?, queueUrl?, lambda?, functionName?, apiUrl? }');
    }
    if (!options.kms || typeof options.kms.send !== 'function') {
      throw configError('kms', '`kms` must be a KMS client of the AWS SDK for JavaScript v3 (KMSClient)');
    }
    this.#kms = options.kms;
    this.#keyArn = checkKeyArn(options.keyArn);
    const toQueue = options.queueUrl !== undefined || options.sqs !== undefined;
    const toFunction = options.functionName !== undefined || options.lambda !== undefined;
    const toApi = options.apiUrl !== undefined;
    if ([toQueue, toFunction, toApi].filter(Boolean).length > 1) {
      throw configError(
        toQueue ? 'queueUrl' : 'functionName',
        'give one destination: `sqs` and `queueUrl`, `lambda` and `functionName`, or `apiUrl`',
      );
    }
    if (!toApi && (options.credentials !== undefined || options.region !== undefined)) {
      throw configError(options.credentials !== undefined ? 'credentials' : 'region', '`credentials` and `region` are for the HTTP API sender (`apiUrl`)');
    }
    if (toQueue) {
      if (!options.sqs || typeof options.sqs.send !== 'function') {
        throw configError('sqs', '`queueUrl` needs `sqs`, an SQS client (SQSClient)');
      }
      if (typeof options.queueUrl !== 'string' || !/^https?:\/\/\S+$/.test(options.queueUrl)) {
        throw configError('queueUrl', '`queueUrl` must be the backup queue URL (https://sqs.<region>.amazonaws.com/<account>/<name>)');
      }
      this.#destination = {
        kind: 'sqs',
        sqs: options.sqs,
        queueUrl: options.queueUrl,
        fifo: options.queueUrl.replace(/\/+$/, '').endsWith('.fifo'),
      };
    } else if (toFunction) {
      if (!options.lambda || typeof options.lambda.send !== 'function') {
        throw configError('lambda', '`functionName` needs `lambda`, a Lambda client (LambdaClient)');
      }
      if (typeof options.functionName !== 'string' || options.functionName.length === 0) {
        throw configError('functionName', '`functionName` must be the backup function name or ARN');
      }
      const invocationType = options.invocationType ?? 'RequestResponse';
      if (invocationType !== 'RequestResponse' && invocationType !== 'Event') {
        throw configError('invocationType', '`invocationType` must be RequestResponse or Event');
      }
      this.#destination = { kind: 'lambda', lambda: options.lambda, functionName: options.functionName, invocationType };
    } else if (toApi) {
      this.#destination = {
        kind: 'api',
        ...apiDestination(options.apiUrl, {
          region: options.region,
          credentials: options.credentials,
          keyArnRegion: regionOfKeyArn(this.#keyArn),
        }),
      };
    } else {
      this.#destination = { kind: 'none' };
    }
  }

  /** The key ARN messages are sealed under. */
  get keyArn(): string {
    return this.#keyArn;
  }

  /**
   * Validates `request` as the function would and answers the backup request body (JSON):
   * `{"clientId", "sealedGenerateResponse", "idempotencyKey"?, "backupMode"?}`. One KMS call.
   * Without an idempotency key the body has none, and the function uses the signing share pair
   * ids.
   */
  async seal(request: BackupRequest): Promise<string> {
    const valid = validateRequest(request);
    return this.#body(valid.clientId, valid.clientApiKey, valid.generateResponse, valid.idempotencyKey, valid.backupMode);
  }

  /**
   * Validates, seals and sends one backup request: to the queue (SendMessage; on a FIFO queue
   * with MessageGroupId = clientId and MessageDeduplicationId = idempotency key), to the
   * function (Invoke), or to its HTTP API (`POST /backups`, SigV4). Without an idempotency key, a
   * random one is generated and answered.
   */
  async backUp(request: BackupRequest): Promise<BackUpResult> {
    const destination = this.#destination;
    if (destination.kind === 'none') {
      throw configError('queueUrl', 'backUp needs a destination: `sqs` and `queueUrl`, `lambda` and `functionName`, or `apiUrl`');
    }
    const valid = validateRequest(request);
    const idempotencyKey = valid.idempotencyKey ?? newIdempotencyKey();
    if (destination.kind === 'sqs' && destination.fifo && !FIFO_ID.test(valid.clientId)) {
      throw invalidInput('clientId', 'cannot be a FIFO queue message group id (1 to 128 ASCII letters, digits and punctuation)');
    }
    const body = await this.#body(valid.clientId, valid.clientApiKey, valid.generateResponse, idempotencyKey, valid.backupMode);
    if (destination.kind === 'sqs') {
      return { idempotencyKey, messageId: await sendToQueue(destination, body, valid.clientId, idempotencyKey) };
    }
    if (destination.kind === 'api') {
      const { messageId, outcome } = await postToApi(destination, body);
      return outcome === undefined ? { idempotencyKey, messageId } : { idempotencyKey, messageId, outcome: outcome as BackupOutcome };
    }
    return { idempotencyKey, ...(await invokeFunction(destination, body)) };
  }

  async #body(
    clientId: string,
    clientApiKey: string,
    generateResponse: unknown,
    idempotencyKey: string | undefined,
    backupMode: BackupMode | undefined,
  ): Promise<string> {
    const sealed = await sealGenerateResponse(this.#kms, this.#keyArn, clientId, clientApiKey, generateResponse);
    const body: Record<string, string> = { clientId, sealedGenerateResponse: sealed };
    if (idempotencyKey !== undefined) body['idempotencyKey'] = idempotencyKey;
    if (backupMode !== undefined) body['backupMode'] = backupMode;
    const text = JSON.stringify(body);
    const size = Buffer.byteLength(text, 'utf8');
    if (size > MAX_BODY_BYTES) {
      throw invalidInput('body', `is ${size} bytes once sealed; the limit is ${MAX_BODY_BYTES}`);
    }
    return text;
  }
}

async function sendToQueue(
  destination: Extract<Destination, { kind: 'sqs' }>,
  body: string,
  clientId: string,
  idempotencyKey: string,
): Promise<string> {
  const command = new SendMessageCommand({
    QueueUrl: destination.queueUrl,
    MessageBody: body,
    ...(destination.fifo ? { MessageGroupId: clientId, MessageDeduplicationId: idempotencyKey } : {}),
  });
  let answer;
  try {
    answer = await destination.sqs.send(command);
  } catch (err) {
    throw new BackupClientError('SEND_FAILED', `SQS SendMessage failed: ${describeAwsError(err)}`, {
      retryable: isRetryableAwsError(err),
      cause: err,
    });
  }
  if (!answer.MessageId) throw new BackupClientError('SEND_FAILED', 'SQS SendMessage answered no MessageId');
  return answer.MessageId;
}

async function invokeFunction(
  destination: Extract<Destination, { kind: 'lambda' }>,
  body: string,
): Promise<{ messageId: string; outcome?: BackupOutcome }> {
  let answer;
  try {
    answer = await destination.lambda.send(
      new InvokeCommand({
        FunctionName: destination.functionName,
        InvocationType: destination.invocationType,
        Payload: Buffer.from(body, 'utf8'),
      }),
    );
  } catch (err) {
    throw new BackupClientError('SEND_FAILED', `Lambda Invoke failed: ${describeAwsError(err)}`, {
      retryable: isRetryableAwsError(err),
      cause: err,
    });
  }
  if (answer.FunctionError) throw functionError('the backup function refused or failed', answer.Payload);
  const messageId = answer.$metadata?.requestId ?? '';
  if (destination.invocationType === 'Event') return { messageId };
  const outcome = payloadJson(answer.Payload) as BackupOutcome | undefined;
  return outcome === undefined ? { messageId } : { messageId, outcome };
}
