/**
 * Waiting for a backup: the operator function's `list` action (`src/workflow/restore.rs`,
 * `ActionAnswer::List`), polled until the backup filed under the idempotency key is COMPLETED.
 */

import { setTimeout as sleep } from 'node:timers/promises';

import { InvokeCommand } from '@aws-sdk/client-lambda';

import { functionError, payloadJson, type LambdaSender } from './invoke';
import { BackupClientError, describeAwsError, isRetryableAwsError } from './errors';
import type { BackupMode } from './validate';

/** A backup's state, as `list` answers it (no secrets). */
export type BackupStatus = 'IN_PROGRESS' | 'BACKED_UP' | 'STORED' | 'COMPLETED';

/** A backup in the operator function's listing (`Summary` in `src/workflow/restore.rs`). */
export interface BackupSummary {
  /** The backup's idempotency key. */
  key: string;
  status: BackupStatus;
  backupMode: BackupMode;
  /** Backup share pair ids (SECP256K1, ED25519), once Portal created them. */
  backupSharePairIds?: [string, string];
  /** Signing share pair ids (SECP256K1, ED25519). */
  signingSharePairIds: [string, string];
  /** Epoch milliseconds. */
  createdAt: number;
  /** Epoch milliseconds. */
  updatedAt: number;
  /** Epoch milliseconds, once completed. */
  completedAt?: number;
  /** Wallet addresses keyed by curve, where the shares named their public keys. */
  addresses?: Record<string, string>;
}

/** The operator function's answer to `{"action": "list", "clientId"}`. */
export interface ListAnswer {
  clientId: string;
  /** Newest first. */
  backups: BackupSummary[];
  /** Checkpoints that could not be read. */
  unreadable: { count: number; keys: string[] };
}

/** How {@link waitForOutcome} polls. */
export interface WaitForOutcomeOptions {
  /** A Lambda client allowed to invoke the operator function. */
  lambda: LambdaSender;
  /** The operator function's name or ARN (`<stack>-operator`). */
  operatorFunctionName: string;
  clientId: string;
  /** The key {@link BackupClient.backUp} answered. */
  idempotencyKey: string;
  /** Give up after this long (default 120 000 ms). */
  timeoutMs?: number;
  /** Time between two listings (default 2 000 ms). */
  intervalMs?: number;
  /** Stops waiting (rejects with the signal's reason). */
  signal?: AbortSignal;
}

/** Asks the operator function for the client's backups once. */
export async function listBackups(
  lambda: LambdaSender,
  operatorFunctionName: string,
  clientId: string,
): Promise<ListAnswer> {
  const answer = await lambda.send(
    new InvokeCommand({
      FunctionName: operatorFunctionName,
      InvocationType: 'RequestResponse',
      Payload: Buffer.from(JSON.stringify({ action: 'list', clientId }), 'utf8'),
    }),
  );
  if (answer.FunctionError) throw functionError('the operator function refused list', answer.Payload);
  const doc = payloadJson(answer.Payload) as Partial<ListAnswer> | undefined;
  if (!doc || !Array.isArray(doc.backups)) {
    throw new BackupClientError('SEND_FAILED', 'the operator function answered list without `backups`');
  }
  return doc as ListAnswer;
}

/**
 * Polls `list` until the backup whose `key` is `idempotencyKey` is COMPLETED and answers its
 * summary. Rejects with code `TIMEOUT` after `timeoutMs`, or with the operator function's error
 * code if it refuses. Throttling and other transient failures are retried until the deadline.
 */
export async function waitForOutcome(options: WaitForOutcomeOptions): Promise<BackupSummary> {
  const { lambda, operatorFunctionName, clientId, idempotencyKey, signal } = options;
  const timeoutMs = options.timeoutMs ?? 120_000;
  const intervalMs = options.intervalMs ?? 2_000;
  if (!lambda || typeof lambda.send !== 'function') {
    throw new BackupClientError('INVALID_CONFIG', '`lambda` must be a Lambda client (LambdaClient)', { field: 'lambda' });
  }
  for (const [field, value] of Object.entries({ operatorFunctionName, clientId, idempotencyKey })) {
    if (typeof value !== 'string' || value.length === 0) {
      throw new BackupClientError('INVALID_CONFIG', `\`${field}\` is required`, { field });
    }
  }
  if (!(timeoutMs >= 0) || !(intervalMs > 0)) {
    throw new BackupClientError('INVALID_CONFIG', '`timeoutMs` must be 0 or more and `intervalMs` more than 0', {
      field: 'timeoutMs',
    });
  }
  const deadline = Date.now() + timeoutMs;
  let last = 'not listed yet';
  for (;;) {
    signal?.throwIfAborted();
    try {
      const listing = await listBackups(lambda, operatorFunctionName, clientId);
      const backup = listing.backups.find((b) => b.key === idempotencyKey);
      if (backup?.status === 'COMPLETED') return backup;
      last = backup ? `status ${backup.status}` : 'not listed yet';
    } catch (err) {
      if (err instanceof BackupClientError && !err.retryable) throw err;
      if (!(err instanceof BackupClientError) && !isRetryableAwsError(err)) {
        throw new BackupClientError('SEND_FAILED', `Lambda Invoke of the operator function failed: ${describeAwsError(err)}`, {
          cause: err,
        });
      }
      last = `last listing failed (${err instanceof Error ? err.name : 'error'})`;
    }
    const left = deadline - Date.now();
    if (left <= 0) {
      throw new BackupClientError(
        'TIMEOUT',
        `the backup was not COMPLETED within ${timeoutMs} ms (${last}); it may still complete: list again later`,
        { retryable: true },
      );
    }
    await sleep(Math.min(intervalMs, left), undefined, signal ? { signal } : {});
  }
}
