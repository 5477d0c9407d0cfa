/* The loopback EBS direct + S3 server of bench/ebs-direct-upload.ts, in its own thread. */
import { parentPort, workerData } from 'worker_threads';
import { EbsDirectServer, syntheticImage } from '../test/support/ebs-direct-server';

const { blocks, zeroShare, seed, latencyMs } = workerData as { blocks: number; zeroShare: number; seed: number; latencyMs: number };
const server = new EbsDirectServer({ latencyMs, verifyChecksums: false });
server.images.set('disk.raw', syntheticImage(blocks, zeroShare, seed));
void server.listen().then((endpoint) => parentPort!.postMessage(endpoint));
parentPort!.on('message', () => parentPort!.postMessage({ ...server.requests }));
