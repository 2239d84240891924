/**
 * The backup request, checked as the function checks it (`src/domain/request.rs`,
 * `src/domain/model.rs`, `src/domain/share.rs`), so that a request the function would refuse is
 * refused here, before any KMS call, with the same field and the same words. Errors name the
 * field, never the value.
 */

import { randomBytes } from 'node:crypto';

import { BackupClientError, invalidInput } from './errors';

/** Where the function puts the backup: its own table, or Portal. */
export type BackupMode = 'SELF_MANAGED' | 'PORTAL_MANAGED';

/** The backup modes the function takes. */
export const BACKUP_MODES: readonly BackupMode[] = ['SELF_MANAGED', 'PORTAL_MANAGED'];

/** One curve's signing share in Portal's `/v1/generate` answer. */
export interface SigningShare {
  /** The share (base64 of JSON naming the client). */
  share: string;
  /** The signing share pair id (a cuid). */
  id: string;
  [other: string]: unknown;
}

/**
 * Portal's `/v1/generate` answer: `{"SECP256K1": {"share", "id"}, "ED25519": {"share", "id"}}`
 * (lower-case curve names are taken too).
 */
export type GenerateResponse = Record<string, SigningShare>;

/** What a producer hands over: the generate response and the API key, in the clear. */
export interface BackupRequest {
  /** Portal client id (1 to 256 bytes, no control characters). */
  clientId: string;
  /** The client's API key or session token: sealed with the shares, never sent in the clear. */
  clientApiKey: string;
  /** Portal's `/v1/generate` answer, as an object or as its JSON text. */
  generateResponse: GenerateResponse | string;
  /** The backup's identity: 1 to 128 of letters, digits, `-` and `_`. */
  idempotencyKey?: string;
  /** Where the function stores the backup (its default when left out). */
  backupMode?: BackupMode;
}

/** A request that passed every check. */
export interface ValidRequest {
  clientId: string;
  clientApiKey: string;
  generateResponse: GenerateResponse | string;
  idempotencyKey: string | undefined;
  backupMode: BackupMode | undefined;
  /** The signing share pair ids (SECP256K1, ED25519). */
  signingSharePairIds: [string, string];
}

/** Largest body the function takes: SQS's message limit (256 KiB). */
export const MAX_BODY_BYTES = 256 * 1024;
/** Largest share the function takes (bytes of its base64 text). */
export const MAX_SHARE_BYTES = 64 * 1024;
/** Longest client id (bytes). */
export const MAX_CLIENT_ID_BYTES = 256;
/** Longest id (idempotency key, share pair id). */
export const MAX_ID_LEN = 128;

const REQUEST_FIELDS = [
  'clientId',
  'clientApiKey',
  'generateResponse',
  'idempotencyKey',
  'backupMode',
] as const;

const CURVES = [
  { name: 'SECP256K1', keys: ['SECP256K1', 'secp256k1'] },
  { name: 'ED25519', keys: ['ED25519', 'ed25519'] },
] as const;

const CONTROL = /\p{Cc}/u;
const ID = /^[A-Za-z0-9_-]+$/;

/** The function's rule for ids (`check_id`): the problem, or `undefined` when the id is fine. */
export function idProblem(id: string): string | undefined {
  if (id.length === 0 || id.length > MAX_ID_LEN) return 'must be 1 to 128 characters';
  if (!ID.test(id)) return "may hold only letters, digits, '-' and '_'";
  return undefined;
}

/** A fresh idempotency key: 24 random characters of `[A-Za-z0-9_-]`. */
export function newIdempotencyKey(): string {
  return randomBytes(18).toString('base64url');
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The keys of an object that hold a value (`undefined` is left out, as JSON leaves it out). */
function presentKeys(map: Record<string, unknown>): string[] {
  return Object.keys(map).filter((k) => map[k] !== undefined);
}

function utf8Length(text: string): number {
  return Buffer.byteLength(text, 'utf8');
}

/** A required non-empty string, as the function's `take_string` reads one. */
function requiredString(map: Record<string, unknown>, field: string): string {
  const value = map[field];
  if (value === undefined || value === null) throw invalidInput(field, 'is required');
  if (typeof value !== 'string') throw invalidInput(field, 'must be a string');
  if (value.length === 0) throw invalidInput(field, 'must not be empty');
  if (!value.isWellFormed()) throw invalidInput(field, 'is not valid Unicode (a lone surrogate)');
  return value;
}

/** Parses JSON without V8's message, which quotes the input. */
function parseJson(text: string, field: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw invalidInput(field, 'is not valid JSON');
  }
}

/**
 * Checks a request as the backup function would and answers it normalised; throws a
 * {@link BackupClientError} (`INVALID_INPUT` naming the field, or `CLIENT_MISMATCH`) otherwise.
 */
export function validateRequest(request: unknown): ValidRequest {
  if (!isObject(request)) throw invalidInput('body', 'must be a JSON object');
  const unknown = presentKeys(request).find(
    (k) => !(REQUEST_FIELDS as readonly string[]).includes(k),
  );
  if (unknown !== undefined) {
    throw invalidInput(
      [...unknown].slice(0, 64).join(''),
      'is not a known field (clientId, clientApiKey, generateResponse, idempotencyKey, backupMode)',
    );
  }
  const clientId = requiredString(request, 'clientId');
  if (utf8Length(clientId) > MAX_CLIENT_ID_BYTES || CONTROL.test(clientId)) {
    throw invalidInput('clientId', 'must be at most 256 characters with no control characters');
  }
  let backupMode: BackupMode | undefined;
  const mode = request['backupMode'];
  if (mode !== undefined && mode !== null) {
    if (typeof mode !== 'string') throw invalidInput('backupMode', 'must be a string');
    if (!(BACKUP_MODES as readonly string[]).includes(mode)) {
      throw invalidInput('backupMode', 'must be "SELF_MANAGED" or "PORTAL_MANAGED"');
    }
    backupMode = mode as BackupMode;
  }
  const { value: generate, ids, shareClientIds } = generateResponse(request['generateResponse'], 'generateResponse');
  const clientApiKey = requiredString(request, 'clientApiKey');
  let idempotencyKey: string | undefined;
  const key = request['idempotencyKey'];
  if (key !== undefined && key !== null) {
    if (typeof key !== 'string') throw invalidInput('idempotencyKey', 'must be a string');
    const problem = idProblem(key);
    if (problem !== undefined) throw invalidInput('idempotencyKey', problem);
    idempotencyKey = key;
  }
  // The function files a backup under the client its shares name, and refuses it otherwise.
  if (!shareClientIds.every((named) => named === clientId)) {
    throw new BackupClientError(
      'CLIENT_MISMATCH',
      'the signing shares in `generateResponse` do not all name clientId (permanent: a backup is filed only under the client its shares belong to)',
      { field: 'generateResponse' },
    );
  }
  return {
    clientId,
    clientApiKey,
    generateResponse: generate,
    idempotencyKey,
    backupMode,
    signingSharePairIds: ids,
  };
}

/**
 * Validates the generate response (an object, or that object as JSON text). An object is checked
 * as JSON will carry it (`undefined` dropped, `toJSON` applied), and answered in that form.
 */
function generateResponse(
  value: unknown,
  field: string,
): { value: GenerateResponse | string; ids: [string, string]; shareClientIds: (string | undefined)[] } {
  if (value === undefined || value === null) throw invalidInput(field, 'is required');
  if (typeof value === 'string') {
    if (!value.isWellFormed()) throw invalidInput(field, 'is not valid Unicode (a lone surrogate)');
    return { value, ...signingIds(parseJson(value, field), field) };
  }
  if (!isObject(value)) throw invalidInput(field, 'must be an object or a JSON string');
  let text: string;
  try {
    text = JSON.stringify(value);
  } catch {
    throw invalidInput(field, 'cannot be encoded as JSON (a cycle or a BigInt)');
  }
  const doc = parseJson(text, field);
  return { value: doc as GenerateResponse, ...signingIds(doc, field) };
}

/** The function's `signing_ids`: each curve once, each with a share and a valid id. */
function signingIds(
  doc: unknown,
  field: string,
): { ids: [string, string]; shareClientIds: (string | undefined)[] } {
  if (!isObject(doc)) throw invalidInput(field, 'must be a JSON object');
  const keys = presentKeys(doc);
  const known = CURVES.flatMap((c) => c.keys as readonly string[]);
  const other = keys.find((k) => !known.includes(k));
  if (other !== undefined) {
    const name = [...other].slice(0, 32).join('');
    throw invalidInput(field, `has an unknown curve \`${name}\` (expected SECP256K1 and ED25519)`);
  }
  const entries: unknown[] = [];
  for (const curve of CURVES) {
    const hits = curve.keys.filter((k) => keys.includes(k));
    if (hits.length > 1) throw invalidInput(field, `${curve.name} appears under more than one key`);
    entries.push(hits.length === 1 ? doc[hits[0] as string] : undefined);
  }
  for (const [i, curve] of CURVES.entries()) {
    if (entries[i] === undefined) throw invalidInput(field, `${curve.name} is missing`);
  }
  const ids: string[] = [];
  const shareClientIds: (string | undefined)[] = [];
  for (const [i, curve] of CURVES.entries()) {
    const at = `${field}.${curve.name}`;
    const entry = entries[i];
    if (!isObject(entry)) throw invalidInput(at, 'must be an object with `share` and `id`');
    const share = entry['share'];
    if (share === undefined) throw invalidInput(`${at}.share`, 'is required');
    if (typeof share !== 'string') throw invalidInput(`${at}.share`, 'must be a string');
    if (share.length === 0 || utf8Length(share) > MAX_SHARE_BYTES) {
      throw invalidInput(`${at}.share`, `must be 1 to ${MAX_SHARE_BYTES} bytes`);
    }
    if (!share.isWellFormed()) {
      throw invalidInput(`${at}.share`, 'is not valid Unicode (a lone surrogate)');
    }
    shareClientIds.push(clientIdIn(share));
    const id = entry['id'];
    if (id === undefined) throw invalidInput(`${at}.id`, 'is required');
    if (typeof id !== 'string') throw invalidInput(`${at}.id`, 'must be a string');
    const problem = idProblem(id);
    if (problem !== undefined) throw invalidInput(`${at}.id`, problem);
    ids.push(id);
  }
  if (ids[0] === ids[1]) throw invalidInput(field, 'has the same share pair id for both curves');
  return { ids: [ids[0] as string, ids[1] as string], shareClientIds };
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}(?:==)?|[A-Za-z0-9+/]{3}=?)?$/;

/**
 * The `clientId` a share names, as the function reads it (`share::client_id_in`): the share is
 * JSON, or standard base64 (padding optional) of JSON. `undefined` if it names none.
 */
export function clientIdIn(share: string): string | undefined {
  const trimmed = share.trim();
  let bytes: Buffer;
  if (trimmed.startsWith('{')) {
    bytes = Buffer.from(trimmed, 'utf8');
  } else {
    if (!BASE64.test(trimmed)) return undefined;
    bytes = Buffer.from(trimmed, 'base64');
    // Node ignores bits past the last byte; the function's decoder refuses them.
    if (bytes.toString('base64').replace(/=+$/, '') !== trimmed.replace(/=+$/, '')) {
      bytes.fill(0);
      return undefined;
    }
  }
  try {
    const text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
    const doc: unknown = JSON.parse(text);
    if (!isObject(doc)) return undefined;
    const id = doc['clientId'];
    return typeof id === 'string' && id.length > 0 ? id : undefined;
  } catch {
    return undefined;
  } finally {
    bytes.fill(0);
  }
}
