/**
 * `@portal-backup/client`: seal Portal `/v1/generate` answers for the portal-backup function and
 * hand them to its queue, to the function itself, or to its HTTP API (SigV4).
 */

export {
  BackupClient,
  type BackupClientOptions,
  type BackUpResult,
  type BackupOutcome,
  type SqsSender,
} from './client';
export {
  API_ROUTE,
  API_SIGNING_SERVICE,
  type ApiCredentials,
} from './api';
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
