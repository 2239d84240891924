/** The CLI, run as a producer runs it, against a moto server. */

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { CreateKeyCommand, KMSClient } from '@aws-sdk/client-kms';
import { CreateQueueCommand, ReceiveMessageCommand, SQSClient } from '@aws-sdk/client-sqs';

import {
  API_KEY,
  CLI,
  CREDENTIALS,
  SHARE_SECRET,
  expectedSignature,
  generateResponse,
  parseAuthorization,
  readHeader,
  startFakeApi,
  startMoto,
  type FakeApi,
  type Moto,
} from './support';

const CLIENT = 'cm-cli-client';

let moto: Moto;
let api: FakeApi;
let kms: KMSClient;
let sqs: SQSClient;
let keyArn: string;
let fifoUrl: string;
let dir: string;
let responseFile: string;

before(async () => {
  moto = await startMoto();
  api = await startFakeApi({ status: 200, body: {} });
  kms = new KMSClient(moto.aws);
  sqs = new SQSClient(moto.aws);
  keyArn = (await kms.send(new CreateKeyCommand({}))).KeyMetadata?.Arn as string;
  fifoUrl = (await sqs.send(new CreateQueueCommand({ QueueName: 'cli.fifo', Attributes: { FifoQueue: 'true' } }))).QueueUrl as string;
  dir = await mkdtemp(join(tmpdir(), 'portal-backup-cli-'));
  responseFile = join(dir, 'generate.json');
  await writeFile(responseFile, JSON.stringify(generateResponse(CLIENT)));
});

after(async () => {
  kms?.destroy();
  sqs?.destroy();
  await moto?.stop();
  await api?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the built CLI with moto's credentials and the API key in the environment. */
function cli(args: string[], options: { stdin?: string; env?: Record<string, string | undefined> } = {}): Promise<Run> {
  return new Promise((done, fail) => {
    const env: NodeJS.ProcessEnv = {
      PATH: process.env['PATH'],
      HOME: dir,
      AWS_ACCESS_KEY_ID: CREDENTIALS.accessKeyId,
      AWS_SECRET_ACCESS_KEY: CREDENTIALS.secretAccessKey,
      AWS_EC2_METADATA_DISABLED: 'true',
      PORTAL_CLIENT_API_KEY: API_KEY,
      ...options.env,
    };
    for (const [k, v] of Object.entries(env)) if (v === undefined) delete env[k];
    const child = spawn(process.execPath, [CLI, ...args], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.once('error', fail);
    child.once('close', (code) => done({ code, stdout, stderr }));
    child.stdin.end(options.stdin ?? '');
  });
}

function common(extra: string[] = []): string[] {
  return ['--key-arn', keyArn, '--client-id', CLIENT, '--generate-response-file', responseFile, '--endpoint-url', moto.endpoint, ...extra];
}

/** `args` with the argument `from` replaced by `to`. */
function swap(args: string[], from: string, to: string): string[] {
  const at = args.indexOf(from);
  assert.ok(at >= 0, `no argument ${from}`);
  return [...args.slice(0, at), to, ...args.slice(at + 1)];
}

/** An error run: one line on stderr, nothing on stdout, no secret anywhere. */
function assertError(run: Run, code: number, pattern: RegExp): void {
  assert.equal(run.code, code, run.stderr);
  assert.equal(run.stdout, '');
  assert.equal(run.stderr.split('\n').filter(Boolean).length, 1, run.stderr);
  assert.ok(run.stderr.endsWith('\n'));
  assert.match(run.stderr, pattern);
  for (const secret of [API_KEY, SHARE_SECRET]) assert.ok(!run.stderr.includes(secret), run.stderr);
}

describe('portal-backup-send', () => {
  it('seal prints the body, sealed under the exact context', async () => {
    const run = await cli(['seal', ...common(['--idempotency-key', 'cli-1', '--backup-mode', 'PORTAL_MANAGED'])]);
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.stderr, '');
    assert.ok(!run.stdout.includes(API_KEY) && !run.stdout.includes(SHARE_SECRET));
    const body = JSON.parse(run.stdout);
    assert.deepEqual(Object.keys(body), ['clientId', 'sealedGenerateResponse', 'idempotencyKey', 'backupMode']);
    assert.equal(body.backupMode, 'PORTAL_MANAGED');
    const header = readHeader(Buffer.from(body.sealedGenerateResponse, 'base64'));
    assert.equal(header.suite, 0x0478);
    assert.equal(header.dataKeys.length, 1);
    assert.deepEqual(header.storedContext, [
      ['clientId', CLIENT],
      ['purpose', 'generate-response'],
    ]);
  });

  it('send reads stdin and puts the message on the FIFO queue', async () => {
    const args = ['send', ...swap(common(['--queue-url', fifoUrl]), responseFile, '-')];
    const run = await cli(args, { stdin: JSON.stringify(generateResponse(CLIENT)) });
    assert.equal(run.code, 0, run.stderr);
    const sent = JSON.parse(run.stdout);
    assert.deepEqual(Object.keys(sent), ['idempotencyKey', 'messageId']);
    const answer = await sqs.send(new ReceiveMessageCommand({ QueueUrl: fifoUrl, MessageSystemAttributeNames: ['All'], MaxNumberOfMessages: 10 }));
    const message = answer.Messages?.[0];
    assert.equal(message?.MessageId, sent.messageId);
    assert.equal(message?.Attributes?.MessageGroupId, CLIENT);
    assert.equal(message?.Attributes?.MessageDeduplicationId, sent.idempotencyKey);
  });

  it('send --api-url posts the body to /backups, signed with the default chain, and prints the outcome', async () => {
    const outcome = { clientId: CLIENT, backupMode: 'SELF_MANAGED', backupSharePairIds: ['b1', 'b2'], status: 'COMPLETED' };
    api.requests.length = 0;
    api.answer = { status: 200, body: outcome, headers: { 'apigw-requestid': 'cli-req-1' } };
    const run = await cli(['send', ...common(['--api-url', api.url, '--idempotency-key', 'cli-api-1'])]);
    assert.equal(run.code, 0, run.stderr);
    assert.deepEqual(JSON.parse(run.stdout), { idempotencyKey: 'cli-api-1', messageId: 'cli-req-1', outcome });
    const captured = api.requests[0];
    assert.ok(captured);
    assert.equal(captured.method, 'POST');
    assert.equal(captured.url, '/backups');
    assert.equal(JSON.parse(captured.body).idempotencyKey, 'cli-api-1');
    assert.ok(!captured.body.includes(API_KEY));
    const auth = parseAuthorization(captured.headers['authorization']);
    assert.equal(auth.accessKeyId, CREDENTIALS.accessKeyId);
    assert.equal(auth.region, keyArn.split(':')[3], "the key ARN's region");
    assert.equal(auth.service, 'execute-api');
    assert.equal(auth.signature, await expectedSignature(captured, CREDENTIALS));

    api.answer = {
      status: 503,
      body: { error: { code: 'DEPENDENCY_UNAVAILABLE', message: 'the backup table is unavailable', retryable: true, step: 'store' } },
      headers: { 'retry-after': '5' },
    };
    const failed = await cli(['send', ...common(['--api-url', `${api.url}/backups`])]);
    assertError(failed, 1, /DEPENDENCY_UNAVAILABLE: the backup API answered 503: .*retry after 5 s/);
    assert.equal(api.requests[1]?.url, '/backups');
  });

  it('usage errors exit 2 with one line, never echoing a value', async () => {
    const cases: [string[], RegExp, Record<string, undefined>?][] = [
      [[], /seal or send/],
      [['publish', ...common()], /seal or send/],
      [['seal', ...common(), `--client-api-key=${API_KEY}`], /unknown option --client-api-key/],
      [['seal', ...common(), API_KEY], /too many arguments/],
      [['seal', '--client-id', CLIENT], /--key-arn is required/],
      [['seal', ...common(['--queue-url', fifoUrl])], /send only/],
      [['send', ...common()], /exactly one of --queue-url, --function-name or --api-url/],
      [['send', ...common(['--queue-url', fifoUrl, '--api-url', 'https://a1.execute-api.us-east-1.amazonaws.com'])], /exactly one of/],
      [['seal', ...common(['--api-url', 'https://a1.execute-api.us-east-1.amazonaws.com'])], /send only/],
      [['seal', ...common()], /PORTAL_CLIENT_API_KEY/, { PORTAL_CLIENT_API_KEY: undefined }],
    ];
    const runs = await Promise.all(cases.map(([args, , env]) => cli(args, env ? { env } : {})));
    runs.forEach((run, i) => assertError(run, 2, cases[i]?.[1] as RegExp));
    const help = await cli(['--help']);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /Usage:/);
  });

  it('refusals exit 1 with one line naming the field, never the value', async () => {
    const notJson = join(dir, 'broken.json');
    await writeFile(notJson, `{"SECP256K1": {"share": "${SHARE_SECRET}"`);
    const cases: [string[], RegExp][] = [
      [['seal', ...common(['--idempotency-key', `x/${SHARE_SECRET}`])], /INVALID_INPUT: field `idempotencyKey`/],
      [['seal', ...common(['--backup-mode', SHARE_SECRET])], /field `backupMode`/],
      [['seal', ...swap(common(), responseFile, notJson)], /field `generateResponse` is not valid JSON/],
      [['seal', ...swap(common(), responseFile, join(dir, 'missing.json'))], /cannot read --generate-response-file \(ENOENT\)/],
      [['seal', ...swap(common(), CLIENT, 'someone-else')], /CLIENT_MISMATCH/],
      // Portal's generate response in the clear for another client: refused before KMS.
      [['send', ...swap(common(['--queue-url', fifoUrl]), CLIENT, 'someone-else')], /CLIENT_MISMATCH/],
    ];
    const runs = await Promise.all(cases.map(([args]) => cli(args)));
    runs.forEach((run, i) => assertError(run, 1, cases[i]?.[1] as RegExp));
  });

  it('refuses an alias or a bare key id with a clear error', async () => {
    const keys = ['alias/portal-backup', keyArn.replace(/key\/.*/, 'alias/portal-backup'), keyArn.split('/')[1] as string];
    const runs = await Promise.all(keys.map((key) => cli(['seal', ...swap(common(), keyArn, key)])));
    for (const run of runs) assertError(run, 1, /INVALID_CONFIG: `keyArn` is .*kms:DescribeKey/);
  });
});
