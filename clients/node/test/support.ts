/**
 * Test support: a moto server of our own on a free port, fixtures, a KMS command recorder, a
 * reader of an AWS Encryption SDK message header written after the function's
 * (`src/domain/esdk_message.rs`, `read_header`), and a fake of the HTTP API with a SigV4 check.
 */

import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createServer as createHttpServer, get } from 'node:http';
import { createServer } from 'node:net';
import { resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import type { KMSClient } from '@aws-sdk/client-kms';
import { Sha256 } from '@smithy/core/checksum';
import { SignatureV4 } from '@smithy/signature-v4';
import type { HttpRequest, RequestSigningArguments } from '@smithy/types';

process.env['AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED'] ??= 'true';

/** `clients/node`, from the built test's place (`clients/node/dist-test/`). */
export const PACKAGE_DIR = resolve(__dirname, '..');
/** The repository. */
export const ROOT = resolve(PACKAGE_DIR, '..', '..');
/** The built CLI. */
export const CLI = resolve(PACKAGE_DIR, 'dist', 'cli.js');

export const REGION = 'us-east-1';
export const CREDENTIALS = { accessKeyId: 'testing', secretAccessKey: 'testing' };

/** Markers that must never appear in an error or an output. */
export const API_KEY = 'sk-test-API-KEY-MARKER-7f3a';
export const SHARE_SECRET = 'SHARE-SECRET-MARKER-91c2';

/** A signing share as Portal sends it: base64 of JSON naming the client. */
export function share(clientId: string, curve: string): string {
  return Buffer.from(JSON.stringify({ clientId, curve, secret: `${SHARE_SECRET}-${curve}` })).toString('base64');
}

/** A `/v1/generate` answer for `clientId`. */
export function generateResponse(clientId: string) {
  return {
    SECP256K1: { share: share(clientId, 'SECP256K1'), id: 'cmsecp0000000000000000001' },
    ED25519: { share: share(clientId, 'ED25519'), id: 'cmed000000000000000000001' },
  };
}

async function freePort(): Promise<number> {
  return new Promise((done, fail) => {
    const server = createServer();
    server.once('error', fail);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => done(port));
    });
  });
}

/** Whether `url` answers 200 (no kept-alive connection: it would hold the test process open). */
function answers(url: string): Promise<boolean> {
  return new Promise((done) => {
    const request = get(url, { agent: false, timeout: 1000 }, (response) => {
      response.resume();
      done(response.statusCode === 200);
    });
    request.once('timeout', () => request.destroy());
    request.once('error', () => done(false));
  });
}

export interface Moto {
  endpoint: string;
  /** Client settings for moto. */
  aws: { region: string; endpoint: string; credentials: typeof CREDENTIALS };
  stop(): Promise<void>;
}

/** Starts `moto_server` (env `MOTO_SERVER`, or the repository's `.venv`) on a free port. */
export async function startMoto(): Promise<Moto> {
  const bin = process.env['MOTO_SERVER'] ?? resolve(ROOT, '.venv', 'bin', 'moto_server');
  if (!existsSync(bin)) {
    throw new Error(`moto_server not found at ${bin}: create the repository's .venv or set MOTO_SERVER`);
  }
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    const child: ChildProcess = spawn(bin, ['-H', '127.0.0.1', '-p', String(port)], {
      env: { ...process.env, MOTO_PORT: String(port) },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let log = '';
    child.stderr?.on('data', (d: Buffer) => {
      log = (log + d.toString()).slice(-2000);
    });
    const exited = new Promise<void>((done) => child.once('exit', () => done()));
    const endpoint = `http://127.0.0.1:${port}`;
    const stop = async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        await Promise.race([exited, sleep(3000, undefined, { ref: false })]);
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      }
    };
    const deadline = Date.now() + 20_000;
    while (Date.now() < deadline && child.exitCode === null) {
      if (await answers(`${endpoint}/moto-api/`)) {
        return { endpoint, aws: { region: REGION, endpoint, credentials: CREDENTIALS }, stop };
      }
      await sleep(50);
    }
    await stop();
    if (attempt === 2) throw new Error(`moto_server did not start: ${log}`);
  }
  throw new Error('moto_server did not start');
}

/** Records the name of every command a KMS client sends (from now on; replaces an earlier recorder). */
export function recordCommands(client: Pick<KMSClient, 'middlewareStack'>): string[] {
  const names: string[] = [];
  client.middlewareStack.add(
    (next, context) => async (args) => {
      names.push(String(context.commandName));
      return next(args);
    },
    { step: 'initialize', name: 'recordCommands', override: true },
  );
  return names;
}

export interface Header {
  version: number;
  suite: number;
  storedContext: [string, string][];
  dataKeys: { providerId: string; providerInfo: string; ciphertext: Buffer }[];
}

/** Reads a v2 message header up to its data keys, as the function does. */
export function readHeader(message: Buffer): Header {
  let at = 0;
  const take = (n: number) => {
    if (at + n > message.length) throw new Error('header cut short');
    const out = message.subarray(at, at + n);
    at += n;
    return out;
  };
  const u16 = () => take(2).readUInt16BE(0);
  const text = () => take(u16()).toString('utf8');
  const version = take(1)[0] as number;
  if (version !== 0x02) throw new Error('not a version 2 message');
  const suite = u16();
  take(32);
  const aadLen = u16();
  const aadEnd = at + aadLen;
  const storedContext: [string, string][] = [];
  if (aadLen > 0) {
    const pairs = u16();
    for (let i = 0; i < pairs; i++) storedContext.push([text(), text()]);
    if (at !== aadEnd) throw new Error('context longer than its pairs');
  }
  const count = u16();
  const dataKeys = [];
  for (let i = 0; i < count; i++) {
    const providerId = text();
    const providerInfo = text();
    const ciphertext = Buffer.from(take(u16()));
    dataKeys.push({ providerId, providerInfo, ciphertext });
  }
  return { version, suite, storedContext, dataKeys };
}

/** Static test credentials for signing (never real ones). */
export const SIGNING_CREDENTIALS = {
  accessKeyId: 'AKIDTESTONLY00000000',
  secretAccessKey: 'test-secret-access-key-not-a-real-one',
  sessionToken: 'test-session-token',
};

/** A request the fake API received. */
export interface Captured {
  method: string;
  /** The path and query, as sent. */
  url: string;
  /** The headers, lower-case names. */
  headers: Record<string, string>;
  body: string;
}

/** What the fake API answers. */
export interface Answer {
  status: number;
  body: unknown;
  headers?: Record<string, string>;
}

export interface FakeApi {
  /** `http://127.0.0.1:<port>`. */
  url: string;
  requests: Captured[];
  /** The answer to the next requests. */
  answer: Answer;
  stop(): Promise<void>;
}

/** A local HTTP server on 127.0.0.1 that records each request and answers like the function. */
export async function startFakeApi(answer: Answer): Promise<FakeApi> {
  const requests: Captured[] = [];
  const api = { requests, answer } as FakeApi;
  const server = createHttpServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const headers: Record<string, string> = {};
      for (const [name, value] of Object.entries(request.headers)) {
        if (value !== undefined) headers[name.toLowerCase()] = Array.isArray(value) ? value.join(',') : value;
      }
      requests.push({ method: request.method ?? '', url: request.url ?? '', headers, body: Buffer.concat(chunks).toString('utf8') });
      const text = JSON.stringify(api.answer.body);
      response.writeHead(api.answer.status, {
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(text),
        ...api.answer.headers,
      });
      response.end(text);
    });
  });
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', () => done()));
  const address = server.address();
  api.url = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
  api.stop = () =>
    new Promise<void>((done) => {
      server.closeAllConnections();
      server.close(() => done());
    });
  return api;
}

/** The parts of an `AWS4-HMAC-SHA256` Authorization header. */
export interface Authorization {
  accessKeyId: string;
  date: string;
  region: string;
  service: string;
  signedHeaders: string[];
  signature: string;
}

const AUTHORIZATION =
  /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([a-z0-9-]+)\/([a-z0-9-]+)\/aws4_request, SignedHeaders=([a-z0-9;-]+), Signature=([0-9a-f]{64})$/;

export function parseAuthorization(value: string | undefined): Authorization {
  const m = AUTHORIZATION.exec(value ?? '');
  if (!m) throw new Error('not an AWS4-HMAC-SHA256 Authorization header');
  return {
    accessKeyId: m[1] as string,
    date: m[2] as string,
    region: m[3] as string,
    service: m[4] as string,
    signedHeaders: (m[5] as string).split(';'),
    signature: m[6] as string,
  };
}

/**
 * The signature a captured request should carry, recomputed with `@smithy/signature-v4` from its
 * method, path, signed headers and body, with `credentials`, for its scope and `x-amz-date`.
 */
export async function expectedSignature(captured: Captured, credentials: { accessKeyId: string; secretAccessKey: string; sessionToken?: string }): Promise<string> {
  const auth = parseAuthorization(captured.headers['authorization']);
  const amzDate = captured.headers['x-amz-date'] ?? '';
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(amzDate);
  if (!m) throw new Error('no x-amz-date');
  const signingDate = new Date(Date.UTC(+m[1]!, +m[2]! - 1, +m[3]!, +m[4]!, +m[5]!, +m[6]!));
  const headers: Record<string, string> = {};
  for (const name of auth.signedHeaders) {
    const value = captured.headers[name];
    if (value === undefined) throw new Error(`signed header ${name} is missing`);
    headers[name] = value;
  }
  const [path, query = ''] = captured.url.split('?');
  const host = captured.headers['host'] ?? '';
  const signer = new SignatureV4({ service: auth.service, region: auth.region, credentials, sha256: Sha256 });
  const request: HttpRequest = {
    method: captured.method,
    protocol: 'http:',
    hostname: host.replace(/:\d+$/, ''),
    path: path as string,
    query: Object.fromEntries(new URLSearchParams(query)),
    headers,
    body: captured.body,
  };
  const signed = (await signer.sign(request, { signingDate } as RequestSigningArguments)) as HttpRequest;
  return parseAuthorization(signed.headers['authorization']).signature;
}
