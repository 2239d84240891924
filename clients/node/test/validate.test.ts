/** Validation, key ARN checks and waiting, without AWS: nothing here reaches a network. */

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import {
  BackupClient,
  BackupClientError,
  checkKeyArn,
  newIdempotencyKey,
  validateRequest,
  waitForOutcome,
  type KmsSender,
  type LambdaSender,
} from '@portal-backup/client';

import { API_KEY, SHARE_SECRET, generateResponse, share } from './support';

const ARN = 'arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab';

function good(): Record<string, unknown> {
  return { clientId: 'client-1', clientApiKey: API_KEY, generateResponse: generateResponse('client-1') };
}

/** The error `fn` throws, which must be a BackupClientError. */
function caught(fn: () => unknown): BackupClientError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof BackupClientError, `not a BackupClientError: ${String(err)}`);
    return err;
  }
  assert.fail('expected a refusal');
}

/** A KMS client that records every command and answers none. */
function silentKms(): { kms: KmsSender; calls: string[] } {
  const calls: string[] = [];
  const kms = {
    send: async (command: { constructor: { name: string } }) => {
      calls.push(command.constructor.name);
      throw new Error('no KMS in this test');
    },
  } as unknown as KmsSender;
  return { kms, calls };
}

describe('validateRequest', () => {
  it('accepts the forms the function takes', () => {
    const ok = validateRequest(good());
    assert.equal(ok.clientId, 'client-1');
    assert.deepEqual(ok.signingSharePairIds, ['cmsecp0000000000000000001', 'cmed000000000000000000001']);
    assert.equal(ok.idempotencyKey, undefined);
    const asText = validateRequest({ ...good(), generateResponse: JSON.stringify(generateResponse('client-1')) });
    assert.equal(typeof asText.generateResponse, 'string');
    const lower = validateRequest({
      ...good(),
      generateResponse: {
        secp256k1: { share: share('client-1', 'a'), id: 'x1' },
        ed25519: { share: share('client-1', 'b'), id: 'x2' },
      },
      idempotencyKey: 'order-42_A',
      backupMode: 'PORTAL_MANAGED',
    });
    assert.deepEqual(lower.signingSharePairIds, ['x1', 'x2']);
    assert.equal(lower.backupMode, 'PORTAL_MANAGED');
    assert.equal(lower.idempotencyKey, 'order-42_A');
  });

  it('names the field at fault, never its value', () => {
    const gr = generateResponse('client-1');
    const secretId = `bad/${SHARE_SECRET}`;
    const cases: [Record<string, unknown>, string][] = [
      [{ ...good(), clientId: undefined }, 'clientId'],
      [{ ...good(), clientId: '' }, 'clientId'],
      [{ ...good(), clientId: 7 }, 'clientId'],
      [{ ...good(), clientId: 'x'.repeat(257) }, 'clientId'],
      [{ ...good(), clientId: `a\u0007${SHARE_SECRET}` }, 'clientId'],
      [{ ...good(), clientApiKey: undefined }, 'clientApiKey'],
      [{ ...good(), clientApiKey: '' }, 'clientApiKey'],
      [{ ...good(), clientApiKey: 12 }, 'clientApiKey'],
      [{ ...good(), generateResponse: undefined }, 'generateResponse'],
      [{ ...good(), generateResponse: 3 }, 'generateResponse'],
      [{ ...good(), generateResponse: [gr] }, 'generateResponse'],
      [{ ...good(), generateResponse: `{not json ${SHARE_SECRET}` }, 'generateResponse'],
      [{ ...good(), generateResponse: { SECP256K1: gr.SECP256K1 } }, 'generateResponse'],
      [{ ...good(), generateResponse: { ...gr, secp256k1: gr.SECP256K1 } }, 'generateResponse'],
      [{ ...good(), generateResponse: { ...gr, BITCOIN: gr.ED25519 } }, 'generateResponse'],
      [{ ...good(), generateResponse: { ...gr, ED25519: { ...gr.ED25519, id: gr.SECP256K1.id } } }, 'generateResponse'],
      [{ ...good(), generateResponse: { ...gr, SECP256K1: SHARE_SECRET } }, 'generateResponse.SECP256K1'],
      [{ ...good(), generateResponse: { ...gr, SECP256K1: { id: 'a' } } }, 'generateResponse.SECP256K1.share'],
      [{ ...good(), generateResponse: { ...gr, SECP256K1: { share: 1, id: 'a' } } }, 'generateResponse.SECP256K1.share'],
      [{ ...good(), generateResponse: { ...gr, SECP256K1: { share: '', id: 'a' } } }, 'generateResponse.SECP256K1.share'],
      [{ ...good(), generateResponse: { ...gr, ED25519: { share: 'x'.repeat(65537), id: 'a' } } }, 'generateResponse.ED25519.share'],
      [{ ...good(), generateResponse: { ...gr, ED25519: { share: gr.ED25519.share } } }, 'generateResponse.ED25519.id'],
      [{ ...good(), generateResponse: { ...gr, ED25519: { share: gr.ED25519.share, id: null } } }, 'generateResponse.ED25519.id'],
      [{ ...good(), generateResponse: { ...gr, ED25519: { share: gr.ED25519.share, id: secretId } } }, 'generateResponse.ED25519.id'],
      [{ ...good(), idempotencyKey: secretId }, 'idempotencyKey'],
      [{ ...good(), idempotencyKey: '' }, 'idempotencyKey'],
      [{ ...good(), idempotencyKey: 'k'.repeat(129) }, 'idempotencyKey'],
      [{ ...good(), idempotencyKey: 5 }, 'idempotencyKey'],
      [{ ...good(), backupMode: 'CLOUD' }, 'backupMode'],
      [{ ...good(), backupMode: 1 }, 'backupMode'],
      [{ ...good(), sealedGenerateResponse: 'AgR4' }, 'sealedGenerateResponse'],
      [{ ...good(), extra: SHARE_SECRET }, 'extra'],
      [{ ...good(), generateResponse: { ...gr, ED25519: { ...gr.ED25519, nonce: 10n } } }, 'generateResponse'],
    ];
    for (const [input, field] of cases) {
      const err = caught(() => validateRequest(input));
      assert.equal(err.code, 'INVALID_INPUT', `${field}: ${err.message}`);
      assert.equal(err.field, field, err.message);
      assert.ok(err.message.includes(`\`${field}\``), err.message);
      for (const secret of [API_KEY, SHARE_SECRET, 'client-1']) {
        assert.ok(!err.message.includes(secret), `the message quotes a value: ${err.message}`);
      }
    }
    assert.equal(caught(() => validateRequest(['not', 'an', 'object'])).field, 'body');
    assert.equal(caught(() => validateRequest(null)).field, 'body');
    const cyclic: Record<string, unknown> = { ...gr };
    cyclic['SECP256K1'] = { ...gr.SECP256K1, self: cyclic };
    assert.equal(caught(() => validateRequest({ ...good(), generateResponse: cyclic })).field, 'generateResponse');
  });

  it('checks an object as JSON carries it, and answers it in that form', () => {
    const gr = generateResponse('client-1');
    const ok = validateRequest({ ...good(), idempotencyKey: undefined, generateResponse: { ...gr, ED25519: { ...gr.ED25519, note: undefined } } });
    assert.deepEqual(ok.generateResponse, gr);
    assert.ok(!('note' in ((ok.generateResponse as Record<string, object>)['ED25519'] ?? {})));
  });

  it('refuses shares that do not name the client, as the function does', () => {
    const other = { ...good(), generateResponse: generateResponse('someone-else') };
    const err = caught(() => validateRequest(other));
    assert.equal(err.code, 'CLIENT_MISMATCH');
    assert.equal(err.field, 'generateResponse');
    const none = { ...good(), generateResponse: { ...generateResponse('client-1'), ED25519: { share: 'bm90IGpzb24=', id: 'e1' } } };
    assert.equal(caught(() => validateRequest(none)).code, 'CLIENT_MISMATCH');
    // Unpadded base64 and a JSON share are read as the function reads them.
    const unpadded = share('client-1', 'SECP256K1').replace(/=+$/, '');
    const json = JSON.stringify({ clientId: 'client-1', secret: 's' });
    assert.ok(validateRequest({ ...good(), generateResponse: { SECP256K1: { share: unpadded, id: 'a' }, ED25519: { share: json, id: 'b' } } }));
  });
});

describe('keys and ids', () => {
  it('takes a key ARN and refuses an alias or a bare key id', () => {
    assert.equal(checkKeyArn(ARN), ARN);
    assert.equal(checkKeyArn(ARN.replace('key/1234abcd', 'key/mrk-1234abcd')), ARN.replace('key/1234abcd', 'key/mrk-1234abcd'));
    for (const bad of [
      'alias/portal-backup',
      'arn:aws:kms:us-east-1:111122223333:alias/portal-backup',
      '1234abcd-12ab-34cd-56ef-1234567890ab',
      'mrk-1234abcd12ab34cd56ef1234567890ab',
      'arn:aws:sqs:us-east-1:111122223333:queue',
      '',
      undefined,
    ]) {
      const err = caught(() => checkKeyArn(bad));
      assert.equal(err.code, 'INVALID_CONFIG');
      assert.equal(err.field, 'keyArn');
      assert.match(err.message, /ARN/);
    }
    assert.match(caught(() => checkKeyArn('alias/x')).message, /alias/);
    assert.match(caught(() => checkKeyArn('1234abcd-12ab-34cd-56ef-1234567890ab')).message, /key id/);
  });

  it('refuses an alias when the client is built, before any KMS call', () => {
    const { kms, calls } = silentKms();
    for (const keyArn of ['alias/portal-backup', 'arn:aws:kms:us-east-1:111122223333:alias/x', '1234abcd-12ab-34cd-56ef-1234567890ab']) {
      const err = caught(() => new BackupClient({ kms, keyArn }));
      assert.equal(err.code, 'INVALID_CONFIG');
    }
    assert.deepEqual(calls, []);
  });

  it('refuses a bad request before any KMS call', async () => {
    const { kms, calls } = silentKms();
    const client = new BackupClient({ kms, keyArn: ARN });
    await assert.rejects(client.seal({ ...good(), idempotencyKey: 'no spaces' } as never), (err: unknown) => {
      assert.ok(err instanceof BackupClientError);
      assert.equal(err.code, 'INVALID_INPUT');
      assert.equal(err.field, 'idempotencyKey');
      return true;
    });
    await assert.rejects(client.backUp(good() as never), (err: unknown) => err instanceof BackupClientError && err.code === 'INVALID_CONFIG');
    assert.deepEqual(calls, []);
  });

  it('refuses an ambiguous or incomplete destination', () => {
    const { kms } = silentKms();
    const sqs = { send: async () => ({}) } as never;
    const lambda = { send: async () => ({}) } as never;
    assert.equal(caught(() => new BackupClient({ kms, keyArn: ARN, sqs, queueUrl: 'https://q/1/x', lambda, functionName: 'f' })).code, 'INVALID_CONFIG');
    assert.equal(caught(() => new BackupClient({ kms, keyArn: ARN, queueUrl: 'https://q/1/x' })).field, 'sqs');
    assert.equal(caught(() => new BackupClient({ kms, keyArn: ARN, lambda })).field, 'functionName');
  });

  it('generates idempotency keys the function takes', () => {
    const keys = new Set(Array.from({ length: 200 }, () => newIdempotencyKey()));
    assert.equal(keys.size, 200);
    for (const key of keys) assert.match(key, /^[A-Za-z0-9_-]{1,128}$/);
  });
});

/** A Lambda client that answers each invoke with the next of `answers`, and records payloads. */
function scriptedLambda(answers: ({ payload: unknown; functionError?: string } | Error)[]) {
  const invoked: { FunctionName?: string; InvocationType?: string; payload: unknown }[] = [];
  const lambda = {
    send: async (command: { input: { FunctionName?: string; InvocationType?: string; Payload?: Uint8Array } }) => {
      const { FunctionName, InvocationType, Payload } = command.input;
      invoked.push({ FunctionName, InvocationType, payload: JSON.parse(Buffer.from(Payload ?? []).toString()) });
      const next = answers.length > 1 ? answers.shift() : answers[0];
      if (next instanceof Error) throw next;
      return {
        StatusCode: 200,
        FunctionError: next?.functionError,
        Payload: Buffer.from(JSON.stringify(next?.payload)),
        $metadata: { requestId: 'req-1' },
      };
    },
  } as unknown as LambdaSender;
  return { lambda, invoked };
}

const summary = (status: string) => ({
  key: 'key-1',
  status,
  backupMode: 'SELF_MANAGED',
  signingSharePairIds: ['a', 'b'],
  createdAt: 1,
  updatedAt: 2,
  ...(status === 'COMPLETED' ? { backupSharePairIds: ['c', 'd'], completedAt: 3 } : {}),
});
const listing = (...backups: unknown[]) => ({ payload: { clientId: 'client-1', backups, unreadable: { count: 0, keys: [] } } });

describe('waitForOutcome', () => {
  it('polls list until the backup under the key is COMPLETED', async () => {
    const throttled = Object.assign(new Error('slow down'), { name: 'TooManyRequestsException', $retryable: {} });
    const { lambda, invoked } = scriptedLambda([
      listing(),
      throttled,
      listing({ ...summary('COMPLETED'), key: 'another-backup' }, summary('IN_PROGRESS')),
      listing(summary('COMPLETED')),
    ]);
    const done = await waitForOutcome({
      lambda,
      operatorFunctionName: 'stack-operator',
      clientId: 'client-1',
      idempotencyKey: 'key-1',
      timeoutMs: 5000,
      intervalMs: 5,
    });
    assert.equal(done.status, 'COMPLETED');
    assert.equal(done.key, 'key-1');
    assert.deepEqual(done.backupSharePairIds, ['c', 'd']);
    assert.equal(invoked.length, 4);
    for (const call of invoked) {
      assert.deepEqual(call.payload, { action: 'list', clientId: 'client-1' });
      assert.equal(call.FunctionName, 'stack-operator');
      assert.equal(call.InvocationType, 'RequestResponse');
    }
  });

  it('rejects on timeout, and with the operator function error code', async () => {
    const { lambda } = scriptedLambda([listing(summary('STORED'))]);
    const options = { lambda, operatorFunctionName: 'op', clientId: 'client-1', idempotencyKey: 'key-1' };
    await assert.rejects(waitForOutcome({ ...options, timeoutMs: 60, intervalMs: 10 }), (err: unknown) => {
      assert.ok(err instanceof BackupClientError);
      assert.equal(err.code, 'TIMEOUT');
      assert.match(err.message, /STORED/);
      return true;
    });
    const refused = scriptedLambda([
      { functionError: 'Unhandled', payload: { errorType: 'INVALID_INPUT', errorMessage: 'field `clientId` is required' } },
    ]);
    await assert.rejects(waitForOutcome({ ...options, lambda: refused.lambda, timeoutMs: 1000 }), (err: unknown) => {
      assert.ok(err instanceof BackupClientError);
      assert.equal(err.code, 'INVALID_INPUT');
      assert.equal(err.field, 'clientId');
      return true;
    });
    const denied = scriptedLambda([Object.assign(new Error('not allowed'), { name: 'AccessDeniedException' })]);
    await assert.rejects(waitForOutcome({ ...options, lambda: denied.lambda, timeoutMs: 1000 }), /AccessDeniedException/);
  });
});
