#!/usr/bin/env node
/**
 * `portal-backup-send seal|send`: seal a `/v1/generate` answer for the backup function, and print
 * the body (`seal`) or send it (`send`). The client API key comes from `PORTAL_CLIENT_API_KEY`
 * only. Errors are one line on stderr, never a value: exit 1, or 2 for usage.
 */

import { readFile } from 'node:fs/promises';

import { KMSClient } from '@aws-sdk/client-kms';
import { LambdaClient } from '@aws-sdk/client-lambda';
import { SQSClient } from '@aws-sdk/client-sqs';

import { BackupClient, type BackupClientOptions } from './client';
import { BackupClientError, describeAwsError } from './errors';
import { checkKeyArn, regionOfKeyArn } from './seal';
import type { BackupMode, BackupRequest } from './validate';

// The SDK's multi-line notice about future Node versions would break "one line on stderr"; set the
// variable to false to see it.
process.env['AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED'] ??= 'true';

const NAME = 'portal-backup-send';
const API_KEY_ENV = 'PORTAL_CLIENT_API_KEY';

const USAGE = `Usage:
  ${NAME} seal --key-arn ARN --client-id ID --generate-response-file PATH|- [options]
  ${NAME} send --key-arn ARN --client-id ID --generate-response-file PATH|-
               (--queue-url URL | --function-name NAME | --api-url URL) [options]

seal prints the backup request body: {"clientId", "sealedGenerateResponse", ...}.
send seals and sends it, and prints {"idempotencyKey", "messageId"} (and the function's
"outcome" when it invoked the function or posted to its API).

Options:
  --key-arn ARN                  the backup key's ARN (stack output KeyArn; no alias or key id)
  --client-id ID                 the Portal client id
  --generate-response-file PATH  Portal's /v1/generate answer (JSON); - reads stdin
  --idempotency-key KEY          1-128 of letters, digits, - and _ (send: generated if omitted)
  --backup-mode MODE             SELF_MANAGED or PORTAL_MANAGED (default: the function's)
  --queue-url URL                send: SendMessage to the backup queue
  --function-name NAME           send: invoke the backup function and wait for its outcome
  --api-url URL                  send: POST {URL}/backups, SigV4-signed (stack output ApiUrl)
  --region REGION                AWS region of every call (default: the key ARN's region;
                                 --api-url signs for the API URL's region, else the key ARN's)
  --endpoint-url URL             endpoint for every AWS SDK call (a local stack; not --api-url)
  -h, --help                     this text

Environment:
  ${API_KEY_ENV}          the client's API key (required; never taken as a flag)
  AWS credentials come from the SDK's default chain (for --api-url too).
`;

const FLAGS = [
  'key-arn',
  'client-id',
  'generate-response-file',
  'idempotency-key',
  'backup-mode',
  'queue-url',
  'function-name',
  'api-url',
  'region',
  'endpoint-url',
] as const;
type Flag = (typeof FLAGS)[number];

class UsageError extends Error {}

interface Parsed {
  command: 'seal' | 'send';
  flags: Partial<Record<Flag, string>>;
}

/** Reads the arguments; an error names an option, never an argument's value. */
function parse(argv: string[]): Parsed | 'help' {
  const flags: Partial<Record<Flag, string>> = {};
  const positionals: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === '-h' || arg === '--help') return 'help';
    if (arg === '-') {
      positionals.push(arg);
      continue;
    }
    if (!arg.startsWith('-')) {
      positionals.push(arg);
      continue;
    }
    const eq = arg.indexOf('=');
    const name = (eq === -1 ? arg : arg.slice(0, eq)).replace(/^--?/, '');
    if (!(FLAGS as readonly string[]).includes(name) || !arg.startsWith('--')) {
      const shown = /^[A-Za-z0-9-]{1,40}$/.test(name) ? `--${name}` : 'an option';
      throw new UsageError(`unknown option ${shown}`);
    }
    const flag = name as Flag;
    if (flags[flag] !== undefined) throw new UsageError(`--${flag} is given twice`);
    let value: string | undefined;
    if (eq !== -1) {
      value = arg.slice(eq + 1);
    } else {
      value = argv[i + 1];
      if (value === undefined || (value.startsWith('--') && value.length > 2)) {
        throw new UsageError(`--${flag} needs a value`);
      }
      i++;
    }
    if (value.length === 0) throw new UsageError(`--${flag} needs a value`);
    flags[flag] = value;
  }
  if (positionals.length === 0) throw new UsageError('give a command: seal or send');
  if (positionals.length > 1) throw new UsageError('too many arguments: give one command, seal or send');
  const command = positionals[0];
  if (command !== 'seal' && command !== 'send') throw new UsageError('the command must be seal or send');
  for (const required of ['key-arn', 'client-id', 'generate-response-file'] as const) {
    if (flags[required] === undefined) throw new UsageError(`--${required} is required`);
  }
  const destinations = (['queue-url', 'function-name', 'api-url'] as const).filter((f) => flags[f] !== undefined);
  if (command === 'seal' && destinations.length > 0) {
    throw new UsageError('--queue-url, --function-name and --api-url are for send only');
  }
  if (command === 'send' && destinations.length !== 1) {
    throw new UsageError('send needs exactly one of --queue-url, --function-name or --api-url');
  }
  return { command, flags };
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(Buffer.from(chunk as Buffer));
  return Buffer.concat(chunks).toString('utf8');
}

/** The generate response from a file or stdin: its JSON, never quoted in an error. */
async function readGenerateResponse(path: string): Promise<unknown> {
  let text: string;
  try {
    text = path === '-' ? await readStdin() : await readFile(path, 'utf8');
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    throw new BackupClientError('INVALID_INPUT', `cannot read --generate-response-file (${typeof code === 'string' ? code : 'read error'})`, {
      field: 'generateResponse',
    });
  }
  try {
    return JSON.parse(text);
  } catch {
    throw new BackupClientError('INVALID_INPUT', 'field `generateResponse` is not valid JSON (--generate-response-file)', {
      field: 'generateResponse',
    });
  }
}

async function run(argv: string[]): Promise<number> {
  let parsed: Parsed | 'help';
  try {
    parsed = parse(argv);
  } catch (err) {
    if (err instanceof UsageError) return usage(err.message);
    throw err;
  }
  if (parsed === 'help') {
    process.stdout.write(USAGE);
    return 0;
  }
  const { command, flags } = parsed;
  const apiKey = process.env[API_KEY_ENV];
  if (!apiKey) return usage(`set ${API_KEY_ENV} to the client's API key (it is never taken as a flag)`);
  const keyArn = checkKeyArn(flags['key-arn']);
  const region = flags['region'] ?? regionOfKeyArn(keyArn);
  const aws = { region, ...(flags['endpoint-url'] ? { endpoint: flags['endpoint-url'] } : {}) };
  const generateResponse = await readGenerateResponse(flags['generate-response-file'] as string);
  const request: BackupRequest = {
    clientId: flags['client-id'] as string,
    clientApiKey: apiKey,
    generateResponse: generateResponse as BackupRequest['generateResponse'],
    ...(flags['idempotency-key'] !== undefined ? { idempotencyKey: flags['idempotency-key'] } : {}),
    ...(flags['backup-mode'] !== undefined ? { backupMode: flags['backup-mode'] as BackupMode } : {}),
  };
  const kms = new KMSClient(aws);
  const clients: { destroy(): void }[] = [kms];
  try {
    const options: BackupClientOptions = { kms, keyArn };
    if (flags['queue-url'] !== undefined) {
      const sqs = new SQSClient(aws);
      clients.push(sqs);
      Object.assign(options, { sqs, queueUrl: flags['queue-url'] });
    } else if (flags['function-name'] !== undefined) {
      const lambda = new LambdaClient(aws);
      clients.push(lambda);
      Object.assign(options, { lambda, functionName: flags['function-name'] });
    } else if (flags['api-url'] !== undefined) {
      // Signed for --region if given, else the API URL's region, else the key ARN's; with the
      // SDK's default credential chain.
      Object.assign(options, { apiUrl: flags['api-url'], ...(flags['region'] ? { region: flags['region'] } : {}) });
    }
    const client = new BackupClient(options);
    if (command === 'seal') {
      process.stdout.write(`${await client.seal(request)}\n`);
    } else {
      const sent = await client.backUp(request);
      process.stdout.write(`${JSON.stringify(sent)}\n`);
    }
    return 0;
  } finally {
    for (const c of clients) c.destroy();
  }
}

function oneLine(text: string): string {
  return text.replace(/\s+/g, ' ').trim();
}

function usage(message: string): number {
  process.stderr.write(`${NAME}: ${oneLine(message)} (see ${NAME} --help)\n`);
  return 2;
}

function report(err: unknown): number {
  const message =
    err instanceof BackupClientError ? `${err.code}: ${err.message}` : `unexpected error: ${describeAwsError(err)}`;
  process.stderr.write(`${NAME}: ${oneLine(message)}\n`);
  return 1;
}

run(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.exitCode = report(err);
  },
);
