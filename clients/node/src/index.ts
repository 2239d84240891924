/**
 * `@portal-backup/client`: seal Portal `/v1/generate` answers for the portal-backup function and
 * hand them to its queue or to the function itself.
 */

export {
  BackupClient,
  type BackupClientOptions,
  type BackUpResult,
  type BackupOutcome,
  type SqsSender,
} from './client';
export {
  BackupClientError,
  type ClientErrorCode,
} from './errors';
export { type LambdaSender } from './invoke';
export {
  listBackups,
  waitForOutcome,
  type BackupStatus,
  type BackupSummary,
  type ListAnswer,
  type WaitForOutcomeOptions,
} from './outcome';
export {
  GENERATE_RESPONSE_PURPOSE,
  SUITE_ID,
  checkKeyArn,
  generateResponseContext,
  type KmsSender,
} from './seal';
export {
  BACKUP_MODES,
  MAX_BODY_BYTES,
  newIdempotencyKey,
  validateRequest,
  type BackupMode,
  type BackupRequest,
  type GenerateResponse,
  type SigningShare,
  type ValidRequest,
} from './validate';
