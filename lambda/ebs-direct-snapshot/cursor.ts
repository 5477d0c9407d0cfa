import { ResumableSha256 } from './linear-checksum';

/**
 * How far an upload is, durably: every block below `next` is written (or all-zero, so not
 * written), `changed` of them were written, and `aggregate` is the LINEAR checksum's running state
 * over their checksums. The three always describe the same prefix of the image, so a cursor read
 * back stale (EC2 tags are eventually consistent) or left by a killed invocation only means some
 * blocks are written again, which is harmless.
 */
export interface UploadCursor {
  /** The first block not known to be written. */
  readonly next: number;
  /** Blocks written below `next`. */
  readonly changed: number;
  /** `ResumableSha256.save()` over the checksums of the written blocks below `next`, in order. */
  readonly aggregate: string;
  /** `completing`: every block is written and CompleteSnapshot was (or is about to be) sent. */
  readonly phase: 'uploading' | 'completing';
}

export function initialCursor(): UploadCursor {
  return { next: 0, changed: 0, aggregate: new ResumableSha256().save(), phase: 'uploading' };
}

/** `v1.<next>.<changed>.<u|c>.<state>`: at most about 120 characters of what EC2 tag values allow. */
export function encodeCursor(c: UploadCursor): string {
  return `v1.${c.next}.${c.changed}.${c.phase === 'completing' ? 'c' : 'u'}.${c.aggregate}`;
}

/** The cursor in a tag value, or undefined for anything that is not one (then the upload starts over). */
export function decodeCursor(value: string | undefined): UploadCursor | undefined {
  const m = value?.match(/^v1\.(\d+)\.(\d+)\.([uc])\.([A-Za-z0-9+/=]+)$/);
  if (!m) return undefined;
  const next = Number(m[1]);
  const changed = Number(m[2]);
  if (changed > next) return undefined;
  try {
    ResumableSha256.restore(m[4]);
  } catch {
    return undefined;
  }
  return { next, changed, phase: m[3] === 'c' ? 'completing' : 'uploading', aggregate: m[4] };
}
