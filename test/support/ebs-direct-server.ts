import { createHash } from 'crypto';
import * as http from 'http';
import { AddressInfo } from 'net';

/*
 * A loopback HTTP server that speaks enough of the EBS direct REST API (StartSnapshot,
 * PutSnapshotBlock, CompleteSnapshot, ListSnapshotBlocks) and of S3 (path-style GetObject with
 * Range and If-Match, HeadObject) for the real `@aws-sdk/client-ebs` and `@aws-sdk/client-s3`
 * pointed at it with `endpoint`. Each request waits `latencyMs` before it is answered, as a real
 * endpoint's round trip does; errors can be injected per request. Used by the HTTP-level tests and
 * by the benchmark (which turns checksum verification off: it measures the client).
 */

export const BLOCK = 524_288;

/** A disk image served by the fake S3, produced on demand so that a large one needs no memory. */
export interface ServedImage {
  readonly sizeBytes: number;
  readonly etag: string;
  /** Bytes [start, end] inclusive. */
  read(start: number, end: number): Buffer;
}

/** An error the server answers with instead of acting. */
export interface InjectedError {
  readonly status: number;
  readonly code: string;
  readonly message?: string;
  readonly reason?: string;
}

export type Operation = 'StartSnapshot' | 'PutSnapshotBlock' | 'CompleteSnapshot' | 'ListSnapshotBlocks' | 'GetObject' | 'HeadObject';

export interface EbsDirectServerOptions {
  /** Added to every request before it is answered (ms). @default 0 */
  readonly latencyMs?: number;
  /** Hash every block received and refuse a wrong checksum, as EBS does. @default true */
  readonly verifyChecksums?: boolean;
  /** Called for every request with its operation and that operation's running count (1-based). */
  readonly inject?: (op: Operation, n: number, detail: { blockIndex?: number }) => InjectedError | undefined;
  /** After StartSnapshot, writes to the snapshot answer "does not exist" for this long (ms). @default 0 */
  readonly notFoundForMs?: number;
  /**
   * After StartSnapshot, the first this many writes to the snapshot answer "does not exist" (the
   * same as `notFoundForMs`, by count: a test that needs some refused writes gets them however slow
   * the machine is). @default 0
   */
  readonly notFoundForWrites?: number;
}

export interface ServedSnapshot {
  readonly id: string;
  readonly volumeSize: number;
  readonly startedAt: number;
  readonly params: unknown;
  status: 'pending' | 'completed' | 'error';
  readonly blocks: Map<number, string>;
  /** How many times each block was written. */
  readonly writes: Map<number, number>;
  completion?: { changedBlocksCount: number; checksum?: string };
}

export class EbsDirectServer {
  public readonly snapshots = new Map<string, ServedSnapshot>();
  public readonly images = new Map<string, ServedImage>();
  /** Requests received per operation (SDK retries included). */
  public readonly requests: Record<string, number> = {};
  /** Writes each snapshot has been sent (for `notFoundForWrites`). */
  private readonly writesSeen = new Map<string, number>();
  /** Errors answered per operation and code. */
  public readonly errors: Record<string, number> = {};
  public readonly headers: Array<Record<string, string | string[] | undefined>> = [];
  private readonly server: http.Server;
  private readonly tokens = new Map<string, string>();
  private counter = 0;

  constructor(private readonly options: EbsDirectServerOptions = {}) {
    this.server = http.createServer((req, res) => {
      this.handle(req, res).catch((err) => {
        res.writeHead(500, { 'content-type': 'application/json', 'x-amzn-ErrorType': 'InternalServerException' });
        res.end(JSON.stringify({ message: String(err) }));
      });
    });
    this.server.keepAliveTimeout = 60_000;
  }

  public async listen(): Promise<string> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  public async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://x');
    const parts = url.pathname.split('/').filter(Boolean).map(decodeURIComponent);
    const body = await readBody(req);
    const op = operationOf(req.method ?? 'GET', parts);
    const n = (this.requests[op] = (this.requests[op] ?? 0) + 1);
    if (op === 'PutSnapshotBlock' && this.headers.length < 5) this.headers.push({ ...req.headers });
    if (this.options.latencyMs) await new Promise((r) => setTimeout(r, this.options.latencyMs));
    const blockIndex = op === 'PutSnapshotBlock' ? Number(parts[3]) : undefined;
    const injected = this.options.inject?.(op, n, { blockIndex });
    if (injected) return this.fail(res, op, injected);
    try {
      switch (op) {
        case 'StartSnapshot':
          return this.json(res, 201, this.start(JSON.parse(body.toString() || '{}')));
        case 'PutSnapshotBlock':
          return this.put(res, parts[1], Number(parts[3]), req.headers, body);
        case 'CompleteSnapshot':
          return this.json(res, 202, this.complete(parts[2], req.headers));
        case 'ListSnapshotBlocks':
          return this.json(res, 200, this.list(parts[1], url.searchParams));
        case 'GetObject':
        case 'HeadObject':
          return this.object(res, op, parts.slice(1).join('/'), req.headers);
      }
    } catch (err) {
      if (err instanceof Refusal) return this.fail(res, op, err.error);
      throw err;
    }
  }

  private start(input: any) {
    const params = JSON.stringify({ ...input, ClientToken: undefined });
    if (input.ClientToken && this.tokens.has(input.ClientToken)) {
      const existing = this.snapshots.get(this.tokens.get(input.ClientToken)!)!;
      if (JSON.stringify(existing.params) !== params) refuse(409, 'ConflictException', 'The request uses the same client token as a previous, but non-identical request.');
      return this.describe(existing);
    }
    if (!Number.isInteger(input.VolumeSize) || input.VolumeSize < 1 || input.VolumeSize > 65_536) {
      refuse(400, 'ValidationException', 'Invalid volume size', 'INVALID_VOLUME_SIZE');
    }
    if (input.Encrypted && input.ParentSnapshotId) refuse(400, 'ValidationException', 'Encrypted and ParentSnapshotId', 'INVALID_PARAMETER_VALUE');
    const id = `snap-${(++this.counter).toString(16).padStart(17, '0')}`;
    const s: ServedSnapshot = { id, volumeSize: input.VolumeSize, startedAt: Date.now(), params: JSON.parse(params), status: 'pending', blocks: new Map(), writes: new Map() };
    this.snapshots.set(id, s);
    if (input.ClientToken) this.tokens.set(input.ClientToken, id);
    return this.describe(s);
  }

  private describe(s: ServedSnapshot) {
    return { SnapshotId: s.id, OwnerId: '111111111111', Status: s.status, StartTime: s.startedAt / 1000, VolumeSize: s.volumeSize, BlockSize: BLOCK };
  }

  private writable(id: string): ServedSnapshot {
    const s = this.snapshots.get(id);
    const writes = (this.writesSeen.get(id) ?? 0) + 1;
    this.writesSeen.set(id, writes);
    if (!s || Date.now() - s.startedAt < (this.options.notFoundForMs ?? 0) || writes <= (this.options.notFoundForWrites ?? 0)) refuse(404, 'ResourceNotFoundException', `The snapshot ${id} does not exist`, 'SNAPSHOT_NOT_FOUND');
    if (s!.status !== 'pending' || s!.completion) refuse(400, 'ValidationException', `The snapshot ${id} is ${s!.status} and cannot be written`, 'INVALID_SNAPSHOT_ID');
    return s!;
  }

  private put(res: http.ServerResponse, id: string, index: number, headers: http.IncomingHttpHeaders, body: Buffer): void {
    const s = this.writable(id);
    const length = Number(headers['x-amz-data-length']);
    if (length !== BLOCK || body.length !== BLOCK) refuse(400, 'ValidationException', `A block must be ${BLOCK} bytes, got ${body.length}`, 'INVALID_BLOCK');
    if (!Number.isInteger(index) || index < 0 || index >= (s.volumeSize * 1024 ** 3) / BLOCK) refuse(400, 'ValidationException', `BlockIndex ${index} is outside the volume`, 'INVALID_BLOCK');
    const claimed = String(headers['x-amz-checksum'] ?? '');
    if (headers['x-amz-checksum-algorithm'] !== 'SHA256') refuse(400, 'ValidationException', 'ChecksumAlgorithm must be SHA256', 'INVALID_PARAMETER_VALUE');
    if (this.options.verifyChecksums !== false && createHash('sha256').update(body).digest('base64') !== claimed) {
      refuse(400, 'ValidationException', 'The checksum of the block does not match its data', 'INVALID_BLOCK');
    }
    s.blocks.set(index, claimed);
    s.writes.set(index, (s.writes.get(index) ?? 0) + 1);
    res.writeHead(201, { 'x-amz-Checksum': claimed, 'x-amz-Checksum-Algorithm': 'SHA256', 'content-type': 'application/json' });
    res.end();
  }

  private complete(id: string, headers: http.IncomingHttpHeaders) {
    const s = this.writable(id);
    const count = Number(headers['x-amz-changedblockscount']);
    const checksum = headers['x-amz-checksum'] as string | undefined;
    s.completion = { changedBlocksCount: count, checksum };
    const written = [...s.blocks.entries()].sort(([a], [b]) => a - b);
    let ok = count === written.length;
    if (checksum !== undefined) {
      const h = createHash('sha256');
      for (const [, c] of written) h.update(Buffer.from(c, 'base64'));
      ok = ok && headers['x-amz-checksum-aggregation-method'] === 'LINEAR' && h.digest('base64') === checksum;
    }
    s.status = ok ? 'completed' : 'error';
    return { Status: 'pending' };
  }

  private list(id: string, query: URLSearchParams) {
    const s = this.snapshots.get(id);
    if (!s) refuse(404, 'ResourceNotFoundException', `The snapshot ${id} does not exist`, 'SNAPSHOT_NOT_FOUND');
    if (s!.status !== 'completed') refuse(400, 'ValidationException', `The snapshot ${id} is ${s!.status}`, 'INVALID_SNAPSHOT_ID');
    const from = Number(query.get('pageToken') ?? query.get('startingBlockIndex') ?? 0);
    const max = Math.min(10_000, Number(query.get('maxResults') ?? 10_000));
    const indexes = [...s!.blocks.keys()].sort((a, b) => a - b).filter((i) => i >= from);
    const page = indexes.slice(0, max);
    return {
      Blocks: page.map((i) => ({ BlockIndex: i, BlockToken: `t-${i}` })),
      BlockSize: BLOCK,
      VolumeSize: s!.volumeSize,
      NextToken: indexes.length > max ? String(indexes[max]) : undefined,
    };
  }

  private object(res: http.ServerResponse, op: Operation, key: string, headers: http.IncomingHttpHeaders): void {
    const image = this.images.get(key);
    if (!image) {
      res.writeHead(404, { 'content-type': 'application/xml' });
      res.end(op === 'HeadObject' ? undefined : '<Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message></Error>');
      return;
    }
    if (headers['if-match'] && headers['if-match'] !== image.etag) {
      res.writeHead(412, { 'content-type': 'application/xml' });
      res.end('<Error><Code>PreconditionFailed</Code><Message>At least one of the pre-conditions you specified did not hold</Message></Error>');
      return;
    }
    if (op === 'HeadObject') {
      res.writeHead(200, { 'content-length': image.sizeBytes, 'etag': image.etag });
      res.end();
      return;
    }
    const m = String(headers.range ?? '').match(/^bytes=(\d+)-(\d+)$/);
    const start = m ? Number(m[1]) : 0;
    const end = m ? Math.min(Number(m[2]), image.sizeBytes - 1) : image.sizeBytes - 1;
    const data = image.read(start, end);
    res.writeHead(m ? 206 : 200, {
      'content-length': data.length,
      'etag': image.etag,
      ...(m ? { 'content-range': `bytes ${start}-${end}/${image.sizeBytes}` } : {}),
    });
    res.end(data);
  }

  private fail(res: http.ServerResponse, op: string, e: InjectedError): void {
    const key = `${op}:${e.code}`;
    this.errors[key] = (this.errors[key] ?? 0) + 1;
    if (op === 'GetObject' || op === 'HeadObject') {
      res.writeHead(e.status, { 'content-type': 'application/xml' });
      res.end(`<Error><Code>${e.code}</Code><Message>${e.message ?? e.code}</Message></Error>`);
      return;
    }
    res.writeHead(e.status, { 'content-type': 'application/json', 'x-amzn-ErrorType': e.code });
    res.end(JSON.stringify({ message: e.message ?? e.code, Reason: e.reason }));
  }

  private json(res: http.ServerResponse, status: number, value: unknown): void {
    const text = JSON.stringify(value);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  }
}

class Refusal extends Error {
  constructor(public readonly error: InjectedError) {
    super(error.message);
  }
}

function refuse(status: number, code: string, message: string, reason?: string): never {
  throw new Refusal({ status, code, message, reason });
}

function operationOf(method: string, parts: string[]): Operation {
  if (parts[0] === 'snapshots') {
    if (method === 'POST' && parts.length === 1) return 'StartSnapshot';
    if (method === 'POST' && parts[1] === 'completion') return 'CompleteSnapshot';
    if (method === 'PUT' && parts[2] === 'blocks') return 'PutSnapshotBlock';
    if (method === 'GET' && parts[2] === 'blocks' && parts.length === 3) return 'ListSnapshotBlocks';
  }
  return method === 'HEAD' ? 'HeadObject' : 'GetObject';
}

async function readBody(req: http.IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

/**
 * A deterministic image of `blocks` blocks: about `zeroShare` of them all zeros (in runs, as
 * unused space on a real disk is), the others distinct pseudo-random data made from one random
 * buffer and the block index, so that every block hashes differently.
 */
/* eslint-disable no-bitwise -- a PRNG is bit arithmetic */
export function syntheticImage(
  blocks: number,
  zeroShare: number,
  seed = 1,
  tailBytes = 0,
): ServedImage & { isZero(i: number): boolean; block(i: number): Buffer } {
  const base = Buffer.alloc(BLOCK);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < BLOCK; i += 4) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    base.writeUInt32LE(x, i);
  }
  // Zero runs of 4 blocks (2 MiB), chosen by a hash of the run number.
  const zero = (i: number) => {
    const run = Math.floor(i / 4);
    const h = createHash('sha256').update(`${seed}:${run}`).digest();
    return h.readUInt32LE(0) / 2 ** 32 < zeroShare;
  };
  const sizeBytes = tailBytes > 0 ? (blocks - 1) * BLOCK + tailBytes : blocks * BLOCK;
  const block = (i: number): Buffer => {
    const b = Buffer.alloc(BLOCK);
    if (i >= blocks || zero(i)) return b;
    base.copy(b);
    b.writeUInt32LE(i, 0);
    b.writeUInt32LE((i ^ 0x9e3779b9) >>> 0, BLOCK - 4);
    if (tailBytes > 0 && i === blocks - 1) b.fill(0, tailBytes);
    return b;
  };
  return {
    sizeBytes,
    etag: `"${createHash('md5').update(`${seed}:${blocks}:${zeroShare}:${tailBytes}`).digest('hex')}"`,
    isZero: (i) => block(i).every((v) => v === 0),
    block,
    read(start: number, end: number): Buffer {
      const out = Buffer.alloc(end - start + 1);
      for (let pos = start; pos <= end;) {
        const i = Math.floor(pos / BLOCK);
        const off = pos - i * BLOCK;
        const n = Math.min(BLOCK - off, end - pos + 1);
        block(i).copy(out, pos - start, off, off + n);
        pos += n;
      }
      return out;
    },
  };
}
/* eslint-enable no-bitwise */
