// The peer that scripts/bench measures portal-backup against: the seed guide's "Back up a wallet"
// flow (self-managed) as a Node.js 20 Lambda, written the way a user would: axios for Portal, the
// AWS SDK for JavaScript v3 for KMS and DynamoDB, node:crypto for AES-256-GCM. It runs under a
// minimal Runtime API loop (what Lambda's Node runtime does), so the same local Runtime API drives
// both functions. Benchmark only: no checkpoints, retries or read-back, which portal-backup does.
import http from 'node:http';
import crypto from 'node:crypto';
import axios from 'axios';
import { KMSClient, GenerateDataKeyCommand } from '@aws-sdk/client-kms';
import { DynamoDBClient, PutItemCommand } from '@aws-sdk/client-dynamodb';

// Cold start: clients built once, as the Lambda best practice says.
// A local stack: service-specific endpoints first, as the AWS SDKs read them.
const endpoint = (service) => process.env[`AWS_ENDPOINT_URL_${service}`] || process.env.AWS_ENDPOINT_URL || undefined;
const kms = new KMSClient({ endpoint: endpoint("KMS") });
const ddb = new DynamoDBClient({ endpoint: endpoint("DYNAMODB") });
const keepAlive = new http.Agent({ keepAlive: true });
const portal = axios.create({ httpAgent: keepAlive, timeout: 15000 });
const MPC = process.env.PORTAL_MPC_URL || 'https://mpc-client.portalhq.io';
const API = process.env.PORTAL_API_URL || 'https://api.portalhq.io';
const KEY_ID = process.env.KMS_KEY_ID;
const TABLE = process.env.BACKUP_TABLE_NAME;

const b64url = (buf) => Buffer.from(buf).toString('base64url');

// Envelope encryption: a KMS data key per share, AES-256-GCM, same context as KMS and AAD.
async function encrypt(share, context) {
  const dk = await kms.send(new GenerateDataKeyCommand({
    KeyId: KEY_ID, KeySpec: 'AES_256', EncryptionContext: context,
  }));
  const nonce = crypto.randomBytes(12);
  const cipher = crypto.createCipheriv('aes-256-gcm', dk.Plaintext, nonce);
  const sorted = Object.fromEntries(Object.entries(context).sort(([a], [b]) => (a < b ? -1 : 1)));
  cipher.setAAD(Buffer.from(JSON.stringify(sorted)));
  const body = Buffer.concat([cipher.update(JSON.stringify(share)), cipher.final(), cipher.getAuthTag()]);
  dk.Plaintext.fill(0);
  return ['pbe1', b64url(dk.KeyId), b64url(dk.CiphertextBlob), b64url(nonce), b64url(body)].join('.');
}

async function backUp(message) {
  const { clientId, clientApiKey } = message;
  const signingShares = typeof message.generateResponse === 'string'
    ? JSON.parse(message.generateResponse) : message.generateResponse;
  const headers = { 'Content-Type': 'application/json', Authorization: `Bearer ${clientApiKey}` };

  // Step 1. Run backup by passing in the response from generate (the signing shares).
  const backupResponse = await portal.post(`${MPC}/v1/backup`,
    { generateResponse: JSON.stringify(signingShares) }, { headers });
  const secp256k1Share = backupResponse.data.SECP256K1 ?? backupResponse.data.secp256k1Share;
  const ed25519Share = backupResponse.data.ED25519 ?? backupResponse.data.ed25519Share;

  // Step 2. Encrypt the client backup shares.
  const ctx = (share, curve) => ({ clientId, backupSharePairId: share.id, curve });
  const secp256k1Ciphertext = await encrypt(secp256k1Share, ctx(secp256k1Share, 'SECP256K1'));
  const ed25519Ciphertext = await encrypt(ed25519Share, ctx(ed25519Share, 'ED25519'));

  // Step 3. Store the client ciphertexts on your own backend (here: DynamoDB).
  const put = (share, curve, cipherText) => ddb.send(new PutItemCommand({
    TableName: TABLE,
    Item: {
      pk: { S: `CLIENT#${clientId}` }, sk: { S: `SHARE#${share.id}` },
      clientId: { S: clientId }, backupSharePairId: { S: share.id }, curve: { S: curve },
      cipherText: { S: cipherText }, createdAt: { N: String(Math.floor(Date.now() / 1000)) },
    },
  }));
  await put(secp256k1Share, 'SECP256K1', secp256k1Ciphertext);
  await put(ed25519Share, 'ED25519', ed25519Ciphertext);

  // Step 4. Mark the backup process as complete.
  await portal.patch(`${API}/api/v3/clients/me/backup-share-pairs`, {
    status: 'STORED_CLIENT_BACKUP_SHARE',
    backupSharePairIds: [secp256k1Share.id, ed25519Share.id],
  }, { headers });
}

// The SQS handler, with partial batch responses.
export async function handler(event) {
  const results = await Promise.allSettled(
    event.Records.map((r) => backUp(JSON.parse(r.body))));
  return {
    batchItemFailures: results
      .map((r, i) => (r.status === 'rejected' ? { itemIdentifier: event.Records[i].messageId } : null))
      .filter(Boolean),
  };
}

// The Runtime API loop that Lambda's Node runtime runs around a handler.
const runtime = `http://${process.env.AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime/invocation`;
const agent = new http.Agent({ keepAlive: true });
function request(method, url, body) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, agent }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ headers: res.headers, body: Buffer.concat(chunks).toString() }));
    });
    req.on('error', reject);
    if (body !== undefined) req.setHeader('Content-Type', 'application/json');
    req.end(body);
  });
}

for (;;) {
  const next = await request('GET', `${runtime}/next`);
  const id = next.headers['lambda-runtime-aws-request-id'];
  try {
    const result = await handler(JSON.parse(next.body));
    await request('POST', `${runtime}/${id}/response`, JSON.stringify(result));
  } catch (e) {
    await request('POST', `${runtime}/${id}/error`,
      JSON.stringify({ errorType: e.name || 'Error', errorMessage: String(e.message) }));
  }
}
