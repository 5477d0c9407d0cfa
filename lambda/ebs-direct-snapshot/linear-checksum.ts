/* eslint-disable no-bitwise -- SHA-256 is bit arithmetic */
/*
 * The LINEAR aggregate checksum of an EBS direct upload is SHA-256 over the block checksums (32
 * bytes each) in block-index order. An upload that spans several Lambda invocations must carry that
 * hash from one invocation to the next, and Node's `crypto` cannot export a hash's state. So this is
 * a small SHA-256 whose state (8 words, the unprocessed tail and the length) serializes to a few
 * dozen bytes: it fits, with the cursor, in one tag value. It hashes 32 bytes per 512 KiB block, so
 * its speed does not matter; the block checksums themselves use Node's `crypto`.
 */

const K = new Uint32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);

const INITIAL = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];

const rotr = (x: number, n: number) => (x >>> n) | (x << (32 - n));

/** SHA-256 whose running state can be saved with `save()` and restored with `ResumableSha256.restore`. */
export class ResumableSha256 {
  /** Restores a state saved by `save()`; throws on anything else. */
  public static restore(saved: string): ResumableSha256 {
    const bytes = Buffer.from(saved, 'base64');
    if (bytes.length < 40 || bytes.length >= 40 + 64) throw new Error('not a saved SHA-256 state');
    const h = new ResumableSha256();
    for (let i = 0; i < 8; i++) h.state[i] = bytes.readUInt32BE(i * 4);
    h.length = Number(bytes.readBigUInt64BE(32));
    const tail = bytes.subarray(40);
    if (tail.length !== h.length % 64) throw new Error('not a saved SHA-256 state');
    tail.copy(h.buffer);
    h.buffered = tail.length;
    return h;
  }

  private readonly state = new Uint32Array(INITIAL);
  private readonly buffer = Buffer.alloc(64);
  private buffered = 0;
  /** Bytes hashed so far. */
  private length = 0;
  private readonly w = new Uint32Array(64);

  public update(data: Uint8Array): this {
    for (let i = 0; i < data.length; i++) {
      this.buffer[this.buffered++] = data[i];
      if (this.buffered === 64) {
        this.compress(this.buffer);
        this.buffered = 0;
      }
    }
    this.length += data.length;
    return this;
  }

  /** The state as base64: 8 words, the length (8 bytes) and the unprocessed tail (< 64 bytes). */
  public save(): string {
    const out = Buffer.alloc(40 + this.buffered);
    for (let i = 0; i < 8; i++) out.writeUInt32BE(this.state[i], i * 4);
    out.writeBigUInt64BE(BigInt(this.length), 32);
    this.buffer.copy(out, 40, 0, this.buffered);
    return out.toString('base64');
  }

  /** The digest of what was hashed so far (the running state is not changed). */
  public digest(): Buffer {
    const copy = ResumableSha256.restore(this.save());
    const bitLength = BigInt(copy.length) * 8n;
    const padLength = copy.buffered < 56 ? 56 - copy.buffered : 120 - copy.buffered;
    const pad = Buffer.alloc(padLength + 8);
    pad[0] = 0x80;
    pad.writeBigUInt64BE(bitLength, padLength);
    copy.update(pad);
    const out = Buffer.alloc(32);
    for (let i = 0; i < 8; i++) out.writeUInt32BE(copy.state[i], i * 4);
    return out;
  }

  private compress(block: Buffer): void {
    const w = this.w;
    for (let i = 0; i < 16; i++) w[i] = block.readUInt32BE(i * 4);
    for (let i = 16; i < 64; i++) {
      const s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >>> 3);
      const s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >>> 10);
      w[i] = (w[i - 16] + s0 + w[i - 7] + s1) >>> 0;
    }
    let [a, b, c, d, e, f, g, h] = this.state;
    for (let i = 0; i < 64; i++) {
      const S1 = rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25);
      const ch = (e & f) ^ (~e & g);
      const t1 = (h + S1 + ch + K[i] + w[i]) >>> 0;
      const S0 = rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22);
      const maj = (a & b) ^ (a & c) ^ (b & c);
      const t2 = (S0 + maj) >>> 0;
      h = g;
      g = f;
      f = e;
      e = (d + t1) >>> 0;
      d = c;
      c = b;
      b = a;
      a = (t1 + t2) >>> 0;
    }
    const s = this.state;
    s[0] += a; s[1] += b; s[2] += c; s[3] += d; s[4] += e; s[5] += f; s[6] += g; s[7] += h;
  }
}
