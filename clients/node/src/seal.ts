/**
 * Sealing a generate response as the function opens it (`src/adapters/esdk.rs`,
 * `src/domain/esdk_message.rs`): an AWS Encryption SDK message, version 2, suite 0x0478
 * (`AES_256_GCM_HKDF_SHA512_COMMIT_KEY`, committing, no signature), one data key wrapped by the
 * function's KMS key, the encryption context exactly `{clientId, purpose: generate-response}`
 * stored in the header, standard base64.
 */

import {
  AlgorithmSuiteIdentifier,
  CommitmentPolicy,
  KmsKeyringNode,
  buildClient,
} from '@aws-crypto/client-node';
import {
  DecryptCommand,
  EncryptCommand,
  GenerateDataKeyCommand,
  type DecryptCommandInput,
  type EncryptCommandInput,
  type GenerateDataKeyCommandInput,
  type KMSClient,
} from '@aws-sdk/client-kms';

import { BackupClientError, describeAwsError, isRetryableAwsError } from './errors';

/** A KMS client of the AWS SDK for JavaScript v3 (`KMSClient` or `KMS`): only `send` is used. */
export type KmsSender = Pick<KMSClient, 'send'>;

/** The suite every message must be under: 0x0478, committing, unsigned. */
export const SUITE_ID = AlgorithmSuiteIdentifier.ALG_AES256_GCM_IV12_TAG16_HKDF_SHA512_COMMIT_KEY;

/** The `purpose` of a sealed generate response's encryption context. */
export const GENERATE_RESPONSE_PURPOSE = 'generate-response';

/** The encryption context a sealed generate response is bound to, exactly. */
export function generateResponseContext(clientId: string): Record<string, string> {
  return { clientId, purpose: GENERATE_RESPONSE_PURPOSE };
}

/** A KMS key ARN (the template's own pattern for the key parameter). */
const KEY_ARN = /^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key\/[A-Za-z0-9-]+$/;

/**
 * Refuses anything but a key ARN. An alias or a bare key id would need `kms:DescribeKey` to
 * become the ARN the message must name, and the producer role is not allowed that call.
 */
export function checkKeyArn(keyArn: unknown): string {
  if (typeof keyArn !== 'string' || keyArn.length === 0) {
    throw new BackupClientError('INVALID_CONFIG', '`keyArn` is required: the backup key ARN', {
      field: 'keyArn',
    });
  }
  const alias = keyArn.startsWith('alias/') || (keyArn.startsWith('arn:') && keyArn.includes(':alias/'));
  if (alias || !KEY_ARN.test(keyArn)) {
    const what = alias ? 'an alias' : keyArn.startsWith('arn:') ? 'not a KMS key ARN' : 'a bare key id or not a key ARN';
    throw new BackupClientError(
      'INVALID_CONFIG',
      `\`keyArn\` is ${what}: give the backup key's ARN (arn:aws:kms:<region>:<account>:key/<key id>: the stack's KeyArn output); ` +
        'an alias or key id would have to be resolved with kms:DescribeKey, which the producer role may not call',
      { field: 'keyArn' },
    );
  }
  return keyArn;
}

/** The region a key ARN names. */
export function regionOfKeyArn(keyArn: string): string {
  return keyArn.split(':')[3] ?? '';
}

/**
 * The v2/v3-style client the ESDK's KMS keyring calls (`generateDataKey`, `encrypt`, `decrypt`),
 * over the caller's `send`: the caller's region, endpoint, credentials and middleware apply, and
 * no other operation is reachable (DescribeKey in particular).
 */
function keyringClient(kms: KmsSender) {
  return {
    generateDataKey: (input: GenerateDataKeyCommandInput) => kms.send(new GenerateDataKeyCommand(input)),
    encrypt: (input: EncryptCommandInput) => kms.send(new EncryptCommand(input)),
    decrypt: (input: DecryptCommandInput) => kms.send(new DecryptCommand(input)),
  };
}

const esdk = buildClient({
  commitmentPolicy: CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT,
  maxEncryptedDataKeys: 1,
});

/**
 * Seals `{"clientApiKey", "generateResponse"}` for `clientId` under `keyArn`: the text of
 * `sealedGenerateResponse`. One KMS call (GenerateDataKey) on `kms`.
 */
export async function sealGenerateResponse(
  kms: KmsSender,
  keyArn: string,
  clientId: string,
  clientApiKey: string,
  generateResponse: unknown,
): Promise<string> {
  checkKeyArn(keyArn);
  const context = generateResponseContext(clientId);
  const plaintext = Buffer.from(JSON.stringify({ clientApiKey, generateResponse }), 'utf8');
  const keyring = new KmsKeyringNode({
    generatorKeyId: keyArn,
    // The ESDK asks for a client per region; the caller's client answers for every one.
    clientProvider: () => keyringClient(kms) as never,
  });
  let sealed: Awaited<ReturnType<typeof esdk.encrypt>>;
  try {
    sealed = await esdk.encrypt(keyring, plaintext, {
      suiteId: SUITE_ID,
      encryptionContext: context,
      plaintextLength: plaintext.length,
    });
  } catch (err) {
    throw new BackupClientError('SEAL_FAILED', `could not seal the generate response: ${describeAwsError(err)}`, {
      retryable: isRetryableAwsError(err),
      cause: err,
    });
  } finally {
    plaintext.fill(0);
  }
  checkSealed(sealed.result, sealed.messageHeader, keyArn, context);
  return sealed.result.toString('base64');
}

/** What the function will check of the header, checked before anything is sent. */
function checkSealed(
  message: Buffer,
  header: {
    suiteId: number;
    encryptionContext: Record<string, string>;
    encryptedDataKeys: readonly { providerId: string; providerInfo: string }[];
  },
  keyArn: string,
  context: Record<string, string>,
): void {
  const fail = (what: string) =>
    new BackupClientError('SEAL_FAILED', `the sealed message would be refused by the function: ${what}`);
  if (message[0] !== 0x02 || message.readUInt16BE(1) !== SUITE_ID || header.suiteId !== SUITE_ID) {
    throw fail('it is not a version 2 message under suite 0x0478');
  }
  const keys = header.encryptedDataKeys;
  if (keys.length !== 1 || keys[0]?.providerId !== 'aws-kms') {
    throw fail('it does not have exactly one data key wrapped by AWS KMS');
  }
  if (keys[0].providerInfo !== keyArn) {
    throw fail('KMS named another key than keyArn for its data key');
  }
  const stored = Object.entries(header.encryptionContext).sort();
  const wanted = Object.entries(context).sort();
  if (JSON.stringify(stored) !== JSON.stringify(wanted)) {
    throw fail('its encryption context is not exactly {clientId, purpose}');
  }
}
