/** Sealing and sending against a moto server: the message as the function will read it. */

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { CommitmentPolicy, KmsKeyringNode, buildClient } from '@aws-crypto/client-node';
import {
  CreateAliasCommand,
  CreateKeyCommand,
  DecryptCommand,
  KMS,
  KMSClient,
} from '@aws-sdk/client-kms';
import {
  CreateQueueCommand,
  ReceiveMessageCommand,
  SQSClient,
} from '@aws-sdk/client-sqs';

import { BackupClient, BackupClientError, type LambdaSender } from '@portal-backup/client';

import { API_KEY, generateResponse, readHeader, recordCommands, startMoto, type Moto } from './support';

const CLIENT = 'cm-client-0001';

let moto: Moto;
let kms: KMSClient;
let sqs: SQSClient;
let keyArn: string;
let fifoUrl: string;
let standardUrl: string;

before(async () => {
  moto = await startMoto();
  kms = new KMSClient(moto.aws);
  sqs = new SQSClient(moto.aws);
  const key = await kms.send(new CreateKeyCommand({ Description: 'portal-backup test key' }));
  keyArn = key.KeyMetadata?.Arn as string;
  await kms.send(new CreateAliasCommand({ AliasName: 'alias/portal-backup-test', TargetKeyId: key.KeyMetadata?.KeyId }));
  fifoUrl = (await sqs.send(new CreateQueueCommand({ QueueName: 'backups.fifo', Attributes: { FifoQueue: 'true' } }))).QueueUrl as string;
  standardUrl = (await sqs.send(new CreateQueueCommand({ QueueName: 'backups' }))).QueueUrl as string;
});

after(async () => {
  kms?.destroy();
  sqs?.destroy();
  await moto?.stop();
});

function request(extra: Record<string, string> = {}) {
  return { clientId: CLIENT, clientApiKey: API_KEY, generateResponse: generateResponse(CLIENT), ...extra };
}

/** Opens a sealed generate response with the ESDK, as the recovery role could. */
async function open(sealed: string) {
  const reader = new KMS(moto.aws);
  try {
    const { decrypt } = buildClient({ commitmentPolicy: CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT, maxEncryptedDataKeys: 1 });
    const keyring = new KmsKeyringNode({ keyIds: [keyArn], clientProvider: () => reader });
    return await decrypt(keyring, Buffer.from(sealed, 'base64'));
  } finally {
    reader.destroy();
  }
}

describe('seal', () => {
  it('writes the message the function opens: suite 0x0478, one data key, the exact context', async () => {
    const calls = recordCommands(kms);
    const client = new BackupClient({ kms, keyArn });
    const body = JSON.parse(await client.seal(request({ idempotencyKey: 'order-1', backupMode: 'SELF_MANAGED' })));
    assert.deepEqual(Object.keys(body), ['clientId', 'sealedGenerateResponse', 'idempotencyKey', 'backupMode']);
    assert.equal(body.clientId, CLIENT);
    assert.equal(body.idempotencyKey, 'order-1');
    assert.equal(body.backupMode, 'SELF_MANAGED');
    assert.match(body.sealedGenerateResponse, /^[A-Za-z0-9+/]+={0,2}$/, 'standard base64');

    const message = Buffer.from(body.sealedGenerateResponse, 'base64');
    assert.deepEqual([...message.subarray(0, 3)], [0x02, 0x04, 0x78]);
    const header = readHeader(message);
    assert.equal(header.suite, 0x0478);
    assert.deepEqual(header.storedContext, [
      ['clientId', CLIENT],
      ['purpose', 'generate-response'],
    ]);
    assert.equal(header.dataKeys.length, 1);
    assert.equal(header.dataKeys[0]?.providerId, 'aws-kms');
    assert.equal(header.dataKeys[0]?.providerInfo, keyArn);

    // KMS binds the data key to exactly that context.
    const edk = header.dataKeys[0]?.ciphertext;
    await kms.send(new DecryptCommand({ CiphertextBlob: edk, KeyId: keyArn, EncryptionContext: { clientId: CLIENT, purpose: 'generate-response' } }));
    await assert.rejects(
      kms.send(new DecryptCommand({ CiphertextBlob: edk, KeyId: keyArn, EncryptionContext: { clientId: 'another', purpose: 'generate-response' } })),
      /InvalidCiphertext/,
    );

    const opened = await open(body.sealedGenerateResponse);
    assert.equal(opened.messageHeader.suiteId, 0x0478);
    assert.equal(opened.messageHeader.encryptedDataKeys.length, 1);
    assert.deepEqual({ ...opened.messageHeader.encryptionContext }, { clientId: CLIENT, purpose: 'generate-response' });
    assert.deepEqual(JSON.parse(opened.plaintext.toString('utf8')), {
      clientApiKey: API_KEY,
      generateResponse: generateResponse(CLIENT),
    });

    // One GenerateDataKey for the seal; DescribeKey never (the two Decrypts are this test's).
    assert.deepEqual(calls.filter((c) => c !== 'DecryptCommand'), ['GenerateDataKeyCommand']);
    assert.ok(!calls.includes('DescribeKeyCommand'));
  });

  it('keeps a generate response given as JSON text as text, and leaves out what was not given', async () => {
    const client = new BackupClient({ kms, keyArn });
    const text = JSON.stringify(generateResponse(CLIENT));
    const body = JSON.parse(await client.seal({ clientId: CLIENT, clientApiKey: API_KEY, generateResponse: text }));
    assert.deepEqual(Object.keys(body), ['clientId', 'sealedGenerateResponse']);
    const opened = JSON.parse((await open(body.sealedGenerateResponse)).plaintext.toString('utf8'));
    assert.equal(opened.generateResponse, text);
  });

  it('refuses an alias even where KMS knows it, before calling KMS', async () => {
    const calls = recordCommands(kms);
    for (const keyId of ['alias/portal-backup-test', keyArn.replace(/key\/.*/, 'alias/portal-backup-test'), keyArn.split('/')[1] as string]) {
      assert.throws(() => new BackupClient({ kms, keyArn: keyId }), (err: unknown) => err instanceof BackupClientError && err.code === 'INVALID_CONFIG');
    }
    assert.deepEqual(calls, []);
  });

  it('reports a KMS refusal as SEAL_FAILED without quoting the request', async () => {
    const missing = keyArn.replace(/key\/.*/, 'key/00000000-0000-0000-0000-000000000000');
    const client = new BackupClient({ kms, keyArn: missing });
    await assert.rejects(client.seal(request()), (err: unknown) => {
      assert.ok(err instanceof BackupClientError);
      assert.equal(err.code, 'SEAL_FAILED');
      assert.ok(!err.message.includes(API_KEY));
      return true;
    });
  });
});

describe('backUp', () => {
  async function receive(queueUrl: string) {
    const answer = await sqs.send(
      new ReceiveMessageCommand({ QueueUrl: queueUrl, MessageSystemAttributeNames: ['All'], MaxNumberOfMessages: 10, WaitTimeSeconds: 0 }),
    );
    assert.equal(answer.Messages?.length, 1);
    return answer.Messages?.[0] as NonNullable<typeof answer.Messages>[number];
  }

  it('sends to a FIFO queue with the client as group and the idempotency key as deduplication id', async () => {
    const calls = recordCommands(kms);
    const client = new BackupClient({ kms, keyArn, sqs, queueUrl: fifoUrl });
    const sent = await client.backUp(request());
    assert.match(sent.idempotencyKey, /^[A-Za-z0-9_-]{1,128}$/);
    const message = await receive(fifoUrl);
    assert.equal(message.MessageId, sent.messageId);
    assert.equal(message.Attributes?.MessageGroupId, CLIENT);
    assert.equal(message.Attributes?.MessageDeduplicationId, sent.idempotencyKey);
    const body = JSON.parse(message.Body as string);
    assert.equal(body.clientId, CLIENT);
    assert.equal(body.idempotencyKey, sent.idempotencyKey);
    assert.ok(!(message.Body as string).includes(API_KEY));
    assert.deepEqual(calls, ['GenerateDataKeyCommand']);
  });

  it('sends to a standard queue with the given idempotency key', async () => {
    const client = new BackupClient({ kms, keyArn, sqs, queueUrl: standardUrl });
    const sent = await client.backUp(request({ idempotencyKey: 'wallet-2024_01' }));
    assert.equal(sent.idempotencyKey, 'wallet-2024_01');
    const message = await receive(standardUrl);
    assert.equal(message.MessageId, sent.messageId);
    assert.equal(message.Attributes?.MessageGroupId, undefined);
    assert.equal(JSON.parse(message.Body as string).idempotencyKey, 'wallet-2024_01');
  });

  it('invokes the backup function directly and answers its outcome or its error code', async () => {
    const invoked: { FunctionName?: string; InvocationType?: string; body: Record<string, unknown> }[] = [];
    let fail = false;
    const lambda = {
      send: async (command: { input: { FunctionName?: string; InvocationType?: string; Payload?: Uint8Array } }) => {
        const body = JSON.parse(Buffer.from(command.input.Payload ?? []).toString());
        invoked.push({ FunctionName: command.input.FunctionName, InvocationType: command.input.InvocationType, body });
        const payload = fail
          ? { errorType: 'INVALID_SEALED_INPUT', errorMessage: 'ciphertext failed authentication' }
          : { clientId: CLIENT, backupMode: 'SELF_MANAGED', backupSharePairIds: ['b1', 'b2'], status: 'COMPLETED' };
        return { StatusCode: 200, FunctionError: fail ? 'Unhandled' : undefined, Payload: Buffer.from(JSON.stringify(payload)), $metadata: { requestId: 'lambda-req-1' } };
      },
    } as unknown as LambdaSender;
    const client = new BackupClient({ kms, keyArn, lambda, functionName: 'stack-backup' });
    const sent = await client.backUp(request({ idempotencyKey: 'direct-1' }));
    assert.deepEqual(sent, {
      idempotencyKey: 'direct-1',
      messageId: 'lambda-req-1',
      outcome: { clientId: CLIENT, backupMode: 'SELF_MANAGED', backupSharePairIds: ['b1', 'b2'], status: 'COMPLETED' },
    });
    assert.equal(invoked[0]?.FunctionName, 'stack-backup');
    assert.equal(invoked[0]?.InvocationType, 'RequestResponse');
    assert.deepEqual(Object.keys(invoked[0]?.body ?? {}), ['clientId', 'sealedGenerateResponse', 'idempotencyKey']);
    fail = true;
    await assert.rejects(client.backUp(request()), (err: unknown) => err instanceof BackupClientError && err.code === 'INVALID_SEALED_INPUT');
  });

  it('refuses a client id SQS cannot take as a FIFO group id', async () => {
    const client = new BackupClient({ kms, keyArn, sqs, queueUrl: fifoUrl });
    const wide = 'client with spaces';
    const gr = generateResponse(wide);
    await assert.rejects(client.backUp({ clientId: wide, clientApiKey: API_KEY, generateResponse: gr }), (err: unknown) => {
      assert.ok(err instanceof BackupClientError);
      assert.equal(err.field, 'clientId');
      return true;
    });
  });
});
