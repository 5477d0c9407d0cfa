/*
 * EBS direct upload: the handler's upload engine (lambda/ebs-direct-snapshot/upload.ts) with the real
 * @aws-sdk/client-ebs and client-s3, against the loopback EBS direct + S3 server
 * (test/support/ebs-direct-server.ts) running in a worker thread with a per-request latency, as a
 * real endpoint has. The server does not re-hash what it receives: the client is measured.
 *
 * Reported from one run, side by side: the MiB/s achieved over the image, the requests sent, the
 * zero blocks skipped, and the two limits it is measured against: the same process's SHA-256 +
 * base64 rate over the same (non-zero) bytes, and concurrency × 512 KiB ÷ latency.
 *
 *   npx ts-node --project test/tsconfig.json bench/ebs-direct-upload.ts [--quick] [--json]
 */
import { createHash } from 'crypto';
import * as http from 'http';
import * as path from 'path';
import { performance } from 'perf_hooks';
import { Worker } from 'worker_threads';
import { EBSClient, StartSnapshotCommand } from '@aws-sdk/client-ebs';
import { S3Client } from '@aws-sdk/client-s3';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { initialCursor } from '../lambda/ebs-direct-snapshot/cursor';
import { CHUNK_BYTES, MAX_CONCURRENCY, READ_AHEAD_CHUNKS, uploadBlocks } from '../lambda/ebs-direct-snapshot/upload';
import { EBS_BLOCK_BYTES } from '../src/private/ebs-direct-contract';
import { syntheticImage } from '../test/support/ebs-direct-server';

const MIB = 1024 * 1024;

/** One figure of the EBS direct upload benchmark. */
export interface EbsDirectRow {
  readonly measure: string;
  readonly value: string;
  readonly note: string;
}

/** Runs the benchmark: a 1 GiB image (64 MiB with `quick`), 30 % zero blocks, 50 ms per request. */
export async function ebsDirectUploadBench(options: { quick?: boolean; latencyMs?: number; zeroShare?: number } = {}): Promise<EbsDirectRow[]> {
  const blocks = options.quick ? 128 : 2048;
  const latencyMs = options.latencyMs ?? 50;
  const zeroShare = options.zeroShare ?? 0.3;
  const seed = 42;
  const image = syntheticImage(blocks, zeroShare, seed);

  // Limit 1: this process's SHA-256 + base64 over the same non-zero bytes (block generation not timed).
  let hashMs = 0;
  let nonZero = 0;
  for (let i = 0; i < blocks; i++) {
    const b = image.block(i);
    if (b.every((v) => v === 0)) continue;
    nonZero++;
    const t = performance.now();
    createHash('sha256').update(b).digest('base64');
    hashMs += performance.now() - t;
  }
  const imageMib = image.sizeBytes / MIB;
  const hashRate = (nonZero * EBS_BLOCK_BYTES) / MIB / (hashMs / 1000);
  // Limit 2: the pool's concurrency × 512 KiB per round trip.
  const poolRate = (MAX_CONCURRENCY * EBS_BLOCK_BYTES) / MIB / (latencyMs / 1000);
  // The upload writes only the non-zero blocks: in image MiB/s, each limit is that much higher.
  const scale = blocks / nonZero;

  const worker = new Worker(
    `require('ts-node').register({ project: ${JSON.stringify(path.join(__dirname, '..', 'test', 'tsconfig.json'))}, transpileOnly: true });
     require(${JSON.stringify(path.join(__dirname, 'ebs-direct-server-worker.ts'))});`,
    { eval: true, workerData: { blocks, zeroShare, seed, latencyMs } },
  );
  try {
    const endpoint = await new Promise<string>((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', reject);
    });
    const credentials = { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'bench' };
    const agent = (n: number) => new NodeHttpHandler({ httpAgent: new http.Agent({ keepAlive: true, maxSockets: n }) });
    const ebs = new EBSClient({ endpoint, region: 'us-east-1', credentials, retryMode: 'standard', maxAttempts: 3, requestHandler: agent(MAX_CONCURRENCY + 8) });
    const s3 = new S3Client({ endpoint, region: 'us-east-1', credentials, forcePathStyle: true, maxAttempts: 3, requestHandler: agent(READ_AHEAD_CHUNKS + 4) });
    const started = await ebs.send(new StartSnapshotCommand({ VolumeSize: Math.ceil(image.sizeBytes / 1024 ** 3) }));
    let checkpoints = 0;
    const cpuBefore = process.cpuUsage();
    const t0 = performance.now();
    const result = await uploadBlocks({
      ebs,
      s3,
      snapshotId: started.SnapshotId!,
      image: { bucket: 'images', key: 'disk.raw', sizeBytes: image.sizeBytes, etag: image.etag },
      from: initialCursor(),
      snapshotStartedAt: Date.now(),
      stopReadingAt: Date.now() + 3_600_000,
      checkpoint: async () => {
        checkpoints++;
      },
      concurrency: { initial: MAX_CONCURRENCY },
    });
    const seconds = (performance.now() - t0) / 1000;
    const cpu = process.cpuUsage(cpuBefore);
    const requests = await new Promise<Record<string, number>>((resolve) => {
      worker.once('message', resolve);
      worker.postMessage('stats');
    });
    if (!result.done || result.cursor.changed !== nonZero) throw new Error(`the upload did not write every non-zero block (${result.cursor.changed} of ${nonZero})`);
    const rate = imageMib / seconds;
    const writeRate = (nonZero * EBS_BLOCK_BYTES) / MIB / seconds;
    const lower = Math.min(hashRate, poolRate);
    const f = (v: number, d = 1) => v.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d });
    return [
      { measure: 'image', value: `${f(imageMib, 0)} MiB`, note: `${blocks} blocks, ${blocks - nonZero} all-zero (${f((100 * (blocks - nonZero)) / blocks, 0)} %), ${latencyMs} ms per request` },
      { measure: 'upload time', value: `${f(seconds, 2)} s`, note: `CPU ${f((cpu.user + cpu.system) / 1e6, 2)} s of it in this process (${f((100 * (cpu.user + cpu.system)) / 1e6 / seconds, 0)} % of one core)` },
      { measure: 'achieved, image', value: `${f(rate)} MiB/s`, note: 'image bytes ÷ time (zero blocks cost a read, not a write)' },
      { measure: 'achieved, blocks written', value: `${f(writeRate)} MiB/s`, note: 'non-zero bytes written ÷ time: the figure the limits bound' },
      { measure: 'limit: SHA-256 + base64', value: `${f(hashRate)} MiB/s`, note: 'this process, same non-zero bytes, one core' },
      { measure: 'limit: concurrency × 512 KiB ÷ latency', value: `${f(poolRate)} MiB/s`, note: `${MAX_CONCURRENCY} × 512 KiB ÷ ${latencyMs} ms` },
      { measure: 'achieved ÷ lower limit', value: `${f((100 * writeRate) / lower, 0)} %`, note: `target ≥ 80 % of ${f(lower)} MiB/s` },
      { measure: 'PutSnapshotBlock requests', value: String(requests.PutSnapshotBlock ?? 0), note: `${result.stats.putRequests} sent by the engine; ${result.stats.throttled} throttled` },
      { measure: 'GetObject requests (ranged)', value: String(requests.GetObject ?? 0), note: `${CHUNK_BYTES / MIB} MiB each, ${READ_AHEAD_CHUNKS} ahead` },
      { measure: 'zero blocks skipped', value: String(result.stats.zeroBlocksSkipped), note: `${f(result.stats.zeroBlocksSkipped / 2)} MiB not sent` },
      { measure: 'image-equivalent rate at the limits', value: `${f(lower * scale)} MiB/s`, note: 'the lower limit × blocks ÷ non-zero blocks' },
      { measure: 'cursor checkpoints', value: String(checkpoints), note: 'every 15 s and at the end' },
    ];
  } finally {
    await worker.terminate();
  }
}

if (require.main === module) {
  const quick = process.argv.includes('--quick');
  ebsDirectUploadBench({ quick })
    .then((rows) => {
      if (process.argv.includes('--json')) {
        console.log(JSON.stringify(rows));
        return;
      }
      const w = [Math.max(...rows.map((r) => r.measure.length)), Math.max(...rows.map((r) => r.value.length))];
      for (const r of rows) console.log(`${r.measure.padEnd(w[0])}  ${r.value.padStart(w[1])}  ${r.note}`);
    })
    .catch((err) => {
      console.error(err);
      process.exitCode = 1;
    });
}
