/**
 * The HTTP API sender against a local server that answers like the function: the request is
 * `POST /backups` with the sealed body, signed with SigV4 for `execute-api`, and the signature
 * verifies; the function's errors keep their code, `retryable` and `Retry-After`.
 */

import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { after, before, beforeEach, describe, it } from 'node:test';

import { BackupClient, BackupClientError, type KmsSender, type SqsSender, type LambdaSender } from '@portal-backup/client';

import { backupsUrl, regionOfApiUrl, retryAfterSeconds } from '../dist/api';
import {
  API_KEY,
  SHARE_SECRET,
  SIGNING_CREDENTIALS,
  expectedSignature,
  generateResponse,
  parseAuthorization,
  readHeader,
  startFakeApi,
  type FakeApi,
} from './support';

const CLIENT = 'cm-api-client';
const KEY_ARN = 'arn:aws:kms:eu-central-1:111122223333:key/0f2c1a7e-0000-4000-8000-000000000001';
const OUTCOME = { clientId: CLIENT, backupMode: 'SELF_MANAGED', backupSharePairIds: ['b-secp', 'b-ed'], status: 'COMPLETED' };

/** A KMS stand-in: GenerateDataKey answers a fresh data key "wrapped" by KEY_ARN. */
function fakeKms(calls: string[] = []): KmsSender {
  return {
    send: async (command: { constructor: { name: string } }) => {
      calls.push(command.constructor.name);
      return { KeyId: KEY_ARN, Plaintext: new Uint8Array(randomBytes(32)), CiphertextBlob: new Uint8Array(randomBytes(48)) };
    },
  } as unknown as KmsSender;
}

function request(extra: Record<string, string> = {}) {
  return { clientId: CLIENT, clientApiKey: API_KEY, generateResponse: generateResponse(CLIENT), ...extra };
}

function sha256Hex(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('hex');
}

let api: FakeApi;

before(async () => {
  api = await startFakeApi({ status: 200, body: OUTCOME });
});

beforeEach(() => {
  api.requests.length = 0;
  api.answer = { status: 200, body: OUTCOME, headers: { 'apigw-requestid': 'apigw-req-1' } };
});

after(async () => {
  await api?.stop();
});

describe('HTTP API sender', () => {
  it('posts the sealed body to /backups, signed with SigV4 for execute-api, and answers the outcome', async () => {
    const calls: string[] = [];
    const client = new BackupClient({ kms: fakeKms(calls), keyArn: KEY_ARN, apiUrl: api.url, credentials: SIGNING_CREDENTIALS, region: 'us-west-2' });
    const sent = await client.backUp(request({ idempotencyKey: 'api-1', backupMode: 'SELF_MANAGED' }));
    assert.deepEqual(sent, { idempotencyKey: 'api-1', messageId: 'apigw-req-1', outcome: OUTCOME });
    assert.deepEqual(calls, ['GenerateDataKeyCommand']);

    assert.equal(api.requests.length, 1);
    const captured = api.requests[0]!;
    assert.equal(captured.method, 'POST');
    assert.equal(captured.url, '/backups');
    assert.equal(captured.headers['content-type'], 'application/json');
    assert.equal(captured.headers['host'], new URL(api.url).host);

    // The body is seal()'s: sealed, the key and the shares never in the clear.
    const body = JSON.parse(captured.body);
    assert.deepEqual(Object.keys(body), ['clientId', 'sealedGenerateResponse', 'idempotencyKey', 'backupMode']);
    assert.equal(body.clientId, CLIENT);
    assert.equal(body.idempotencyKey, 'api-1');
    const header = readHeader(Buffer.from(body.sealedGenerateResponse, 'base64'));
    assert.equal(header.suite, 0x0478);
    assert.equal(header.dataKeys[0]?.providerInfo, KEY_ARN);
    for (const secret of [API_KEY, SHARE_SECRET]) assert.ok(!captured.body.includes(secret));

    // SigV4: scope, signed headers, body hash.
    const auth = parseAuthorization(captured.headers['authorization']);
    assert.equal(auth.accessKeyId, SIGNING_CREDENTIALS.accessKeyId);
    assert.equal(auth.region, 'us-west-2');
    assert.equal(auth.service, 'execute-api');
    assert.match(captured.headers['x-amz-date'] ?? '', /^\d{8}T\d{6}Z$/);
    assert.equal(auth.date, captured.headers['x-amz-date']?.slice(0, 8));
    for (const name of ['host', 'x-amz-date', 'x-amz-content-sha256', 'x-amz-security-token', 'content-type']) {
      assert.ok(auth.signedHeaders.includes(name), `${name} is signed`);
    }
    assert.equal(captured.headers['x-amz-content-sha256'], sha256Hex(captured.body));
    assert.equal(captured.headers['x-amz-security-token'], SIGNING_CREDENTIALS.sessionToken);

    // The signature verifies, recomputed from what arrived; another secret would not match.
    assert.equal(auth.signature, await expectedSignature(captured, SIGNING_CREDENTIALS));
    assert.notEqual(auth.signature, await expectedSignature(captured, { ...SIGNING_CREDENTIALS, secretAccessKey: 'another-secret' }));
    assert.notEqual(auth.signature, await expectedSignature({ ...captured, method: 'PUT' }, SIGNING_CREDENTIALS));
  });

  it("takes the stack's ApiUrl output (ending in /backups), signs for the key ARN's region, and calls a credential provider", async () => {
    let provided = 0;
    const { sessionToken: _, ...longTerm } = SIGNING_CREDENTIALS;
    const credentials = async () => {
      provided++;
      return longTerm;
    };
    const client = new BackupClient({ kms: fakeKms(), keyArn: KEY_ARN, apiUrl: `${api.url}/backups/`, credentials });
    api.answer = { status: 200, body: OUTCOME, headers: { 'x-amzn-requestid': 'amzn-req-2', 'apigw-requestid': 'apigw-req-2' } };
    const sent = await client.backUp(request());
    assert.match(sent.idempotencyKey, /^[A-Za-z0-9_-]{24}$/);
    assert.equal(sent.messageId, 'amzn-req-2');
    assert.ok(provided >= 1);
    const captured = api.requests[0]!;
    assert.equal(captured.url, '/backups');
    assert.equal(JSON.parse(captured.body).idempotencyKey, sent.idempotencyKey);
    const auth = parseAuthorization(captured.headers['authorization']);
    assert.equal(auth.region, 'eu-central-1', "the key ARN's region: a local URL names none");
    assert.ok(!auth.signedHeaders.includes('x-amz-security-token'));
    assert.equal(captured.headers['x-amz-security-token'], undefined);
    assert.equal(auth.signature, await expectedSignature(captured, longTerm));
  });

  it('answers no request id as an empty messageId', async () => {
    api.answer = { status: 200, body: OUTCOME };
    const client = new BackupClient({ kms: fakeKms(), keyArn: KEY_ARN, apiUrl: api.url, credentials: SIGNING_CREDENTIALS });
    const sent = await client.backUp(request({ idempotencyKey: 'api-3' }));
    assert.equal(sent.messageId, '');
    assert.deepEqual(sent.outcome, OUTCOME);
  });

  it("turns a 400 into the function's code and field, echoing no value", async () => {
    api.answer = {
      status: 400,
      body: {
        error: {
          code: 'INVALID_SEALED_INPUT',
          message: 'field `sealedGenerateResponse` could not be opened',
          retryable: false,
          step: 'decode',
          field: 'sealedGenerateResponse',
        },
      },
      headers: { 'apigw-requestid': 'apigw-req-400' },
    };
    const client = new BackupClient({ kms: fakeKms(), keyArn: KEY_ARN, apiUrl: api.url, credentials: SIGNING_CREDENTIALS });
    await assert.rejects(client.backUp(request({ idempotencyKey: 'api-400' })), (err: unknown) => {
      assert.ok(err instanceof BackupClientError);
      assert.equal(err.code, 'INVALID_SEALED_INPUT');
      assert.equal(err.field, 'sealedGenerateResponse');
      assert.equal(err.status, 400);
      assert.equal(err.retryable, false);
      assert.equal(err.retryAfterSeconds, undefined);
      assert.equal(err.requestId, 'apigw-req-400');
      assert.match(err.message, /400: field `sealedGenerateResponse` could not be opened/);
      const sealed = JSON.parse(api.requests[0]!.body).sealedGenerateResponse as string;
      for (const value of [API_KEY, SHARE_SECRET, sealed.slice(0, 40), SIGNING_CREDENTIALS.secretAccessKey, SIGNING_CREDENTIALS.sessionToken]) {
        assert.ok(!err.message.includes(value));
        assert.ok(!JSON.stringify(err).includes(value));
      }
      return true;
    });
  });

  it('makes a 503 with Retry-After retryable, with the wait as a hint', async () => {
    api.answer = {
      status: 503,
      body: { error: { code: 'PORTAL_RATE_LIMITED', message: 'Portal rate-limited the backup call', retryable: true, step: 'portal' } },
      headers: { 'retry-after': '60' },
    };
    const client = new BackupClient({ kms: fakeKms(), keyArn: KEY_ARN, apiUrl: api.url, credentials: SIGNING_CREDENTIALS });
    await assert.rejects(client.backUp(request({ idempotencyKey: 'api-503' })), (err: unknown) => {
      assert.ok(err instanceof BackupClientError);
      assert.equal(err.code, 'PORTAL_RATE_LIMITED');
      assert.equal(err.status, 503);
      assert.equal(err.retryable, true);
      assert.equal(err.retryAfterSeconds, 60);
      assert.match(err.message, /retry after 60 s/);
      return true;
    });
  });

  it("reports API Gateway's own refusals as SEND_FAILED without quoting its canonical request", async () => {
    const client = new BackupClient({ kms: fakeKms(), keyArn: KEY_ARN, apiUrl: api.url, credentials: SIGNING_CREDENTIALS });
    api.answer = {
      status: 403,
      body: {
        message:
          'The request signature we calculated does not match the signature you provided.\n\nThe Canonical String for this request should have been\n\'POST\n/backups\n\nx-amz-security-token:test-session-token\'',
      },
    };
    await assert.rejects(client.backUp(request({ idempotencyKey: 'api-403' })), (err: unknown) => {
      assert.ok(err instanceof BackupClientError);
      assert.equal(err.code, 'SEND_FAILED');
      assert.equal(err.status, 403);
      assert.equal(err.retryable, false);
      assert.match(err.message, /403: The request signature we calculated does not match/);
      assert.ok(!err.message.includes('Canonical') && !err.message.includes(SIGNING_CREDENTIALS.sessionToken));
      return true;
    });
    api.answer = { status: 429, body: { message: 'Too Many Requests' } };
    await assert.rejects(client.backUp(request({ idempotencyKey: 'api-429' })), (err: unknown) => {
      assert.ok(err instanceof BackupClientError);
      assert.equal(err.code, 'SEND_FAILED');
      assert.equal(err.retryable, true);
      return true;
    });
  });

  it('reports an unreachable API as a retryable SEND_FAILED, and a failing credential provider before sending', async () => {
    const closed = await startFakeApi({ status: 200, body: {} });
    await closed.stop();
    const offline = new BackupClient({ kms: fakeKms(), keyArn: KEY_ARN, apiUrl: closed.url, credentials: SIGNING_CREDENTIALS });
    await assert.rejects(offline.backUp(request()), (err: unknown) => {
      assert.ok(err instanceof BackupClientError);
      assert.equal(err.code, 'SEND_FAILED');
      assert.equal(err.retryable, true);
      return true;
    });
    const noCredentials = async () => {
      throw new Error('Could not load credentials from any providers');
    };
    const client = new BackupClient({ kms: fakeKms(), keyArn: KEY_ARN, apiUrl: api.url, credentials: noCredentials });
    await assert.rejects(client.backUp(request()), (err: unknown) => err instanceof BackupClientError && err.code === 'SEND_FAILED' && /credentials/.test(err.message));
    assert.equal(api.requests.length, 0);
  });

  it('takes one destination only, and a usable API URL', () => {
    const kms = fakeKms();
    const sqs = { send: async () => ({}) } as unknown as SqsSender;
    const lambda = { send: async () => ({}) } as unknown as LambdaSender;
    const refused = (options: Record<string, unknown>, field: string) =>
      assert.throws(
        () => new BackupClient({ kms, keyArn: KEY_ARN, ...options }),
        (err: unknown) => err instanceof BackupClientError && err.code === 'INVALID_CONFIG' && err.field === field,
        JSON.stringify(Object.keys(options)),
      );
    refused({ apiUrl: api.url, sqs, queueUrl: 'https://sqs.eu-central-1.amazonaws.com/111122223333/q' }, 'queueUrl');
    refused({ apiUrl: api.url, lambda, functionName: 'stack-backup' }, 'functionName');
    refused({ region: 'eu-west-1' }, 'region');
    refused({ sqs, queueUrl: 'https://sqs.eu-central-1.amazonaws.com/111122223333/q', credentials: SIGNING_CREDENTIALS }, 'credentials');
    for (const apiUrl of ['ftp://example.com', 'not a url', `${api.url}/?stage=prod`, 'https://user:pw@example.com', 42]) {
      refused({ apiUrl }, 'apiUrl');
    }
    refused({ apiUrl: api.url, region: 'not a region' }, 'region');
    refused({ apiUrl: api.url, credentials: { accessKeyId: 'only-the-id' } }, 'credentials');
  });

  it("finds the URL to post to and the region in an API Gateway endpoint's host", () => {
    assert.equal(backupsUrl('https://a1b2c3.execute-api.eu-west-1.amazonaws.com').href, 'https://a1b2c3.execute-api.eu-west-1.amazonaws.com/backups');
    assert.equal(backupsUrl('https://a1b2c3.execute-api.eu-west-1.amazonaws.com/backups').pathname, '/backups');
    assert.equal(backupsUrl('https://a1b2c3.execute-api.eu-west-1.amazonaws.com/prod/').pathname, '/prod/backups');
    assert.equal(regionOfApiUrl(new URL('https://a1b2c3.execute-api.eu-west-1.amazonaws.com/backups')), 'eu-west-1');
    assert.equal(regionOfApiUrl(new URL('https://a1b2c3.execute-api.cn-north-1.amazonaws.com.cn')), 'cn-north-1');
    assert.equal(regionOfApiUrl(new URL('https://backups.example.com')), undefined);
    assert.equal(retryAfterSeconds('120'), 120);
    assert.equal(retryAfterSeconds(new Date(Date.UTC(2030, 0, 1, 0, 1, 0)).toUTCString(), Date.UTC(2030, 0, 1)), 60);
    assert.equal(retryAfterSeconds('soon'), undefined);
    assert.equal(retryAfterSeconds(null), undefined);
  });
});
