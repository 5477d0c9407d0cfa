import { MetricUnit, Metrics } from '@aws-lambda-powertools/metrics';
import {
  Backup,
  CreateBackupCommand,
  DeleteBackupCommand,
  DescribeBackupsCommand,
  DescribeFileSystemsCommand,
  DescribeVolumesCommand,
  FileSystem,
  ListTagsForResourceCommand,
  Volume,
} from '@aws-sdk/client-fsx';
import type {
  FsxBackupMetricNames,
  FsxBackupTargetInput,
  FsxBackupTickInput,
  MetricNamespace,
  ScheduleDimension,
} from '../../src/private/fsx-backup-contract';
import { fsx } from '../shared/clients/fsx';
import { clock } from '../shared/clock';
import { HandlerError, describeError, errorCode, isTransient, withRetries } from '../shared/errors';
import { logger } from '../shared/logger';
import { KeyValue, OWNERSHIP_TAG_KEYS, Owner, Tag, isOwnedBy, ownershipTags, tagValue } from '../shared/ownership';
import { stableHash, tickToken } from '../shared/token';

const NAMESPACE: MetricNamespace = 'CdkStorageSnapshots';
const DIMENSION: ScheduleDimension = 'Schedule';
export const METRICS: FsxBackupMetricNames = {
  started: 'BackupsStarted',
  failed: 'BackupsFailed',
  pruned: 'BackupsPruned',
  pruneFailed: 'PruneFailures',
  tagsDropped: 'CopiedTagsDropped',
};

/** CloudWatch metrics in the embedded metric format: written to the log, no PutMetricData call. */
export const metrics = new Metrics({ namespace: NAMESPACE });
// Only the Schedule dimension, so that the construct's metrics (and alarm) name exactly these.
metrics.clearDefaultDimensions();

/** AWS allows 50 tags per resource. */
const MAX_TAGS = 50;
/** FSx tag keys and values: letters, numbers, spaces and `_ . : / = + - @` (the API model's pattern). */
const FSX_TAG_CHARACTERS = /^([\p{L}\p{Z}\p{N}_.:/=+\-@]*)$/u;
/** How many targets are worked on at once (FSx request rates are not published: stay modest). */
export const CONCURRENCY = 5;
/** How long one call keeps retrying throttling, 5xx and BackupInProgress. */
const CALL_BUDGET_MS = 5 * 60_000;
/** Work stops this long before the function's timeout, so that the summary and metrics still go out. */
const SAFETY_MARGIN_MS = 90_000;
/** FSx filters take at most 20 values. */
const FILTER_VALUES = 20;
/** Describe calls take at most 50 ids. */
const DESCRIBE_IDS = 50;

/** What one target's tick came to. */
export interface TargetResult {
  readonly target: string;
  readonly backupId?: string;
  /** The reason the backup could not be requested. */
  readonly error?: string;
  /** When FSx says the backup was created (from CreateBackup): orders it among the target's backups. */
  readonly created?: number;
  readonly pruned: string[];
  readonly pruneError?: string;
  readonly tagsDropped: number;
  /** The target's previous backup by this schedule, found FAILED when this one was made. */
  readonly previousFailed?: string;
}

/** What the handler returns when every target succeeded. */
export interface TickSummary {
  readonly schedule: string;
  readonly time: string;
  readonly started: number;
  readonly failed: number;
  /** Earlier ticks' backups found FAILED (counted in the BackupsFailed metric, not failing this tick). */
  readonly failedEarlier: number;
  readonly pruned: number;
  readonly results: TargetResult[];
}

interface TargetInfo {
  readonly copyTags: boolean;
  readonly tags: Tag[];
}

type Lookup = { readonly info: TargetInfo } | { readonly error: string };

export async function handler(event: FsxBackupTickInput): Promise<TickSummary> {
  const started = clock.now();
  const deadline = started + Number(process.env.TIMEOUT_MS ?? 15 * 60_000) - SAFETY_MARGIN_MS;
  // The metric dimension even for an input that is refused, so that the schedule's alarm sees it.
  const schedule = typeof event?.Schedule === 'string' && event.Schedule ? event.Schedule : 'unknown';
  let targets: FsxBackupTargetInput[] = [];
  let results: TargetResult[] = [];
  let completed = false;
  try {
    checkInput(event);
    logger.appendKeys({ schedule: event.Schedule, tick: event.Time });
    // A target given twice (a token and a literal of the same id, say) is backed up once.
    targets = uniqueById(event.Targets);
    logger.info('tick', { eventId: event.EventId, targets: targets.length, keepLast: event.KeepLast, maxAgeSeconds: event.MaxAgeSeconds });
    const owner: Owner = { stackId: event.StackId, owner: event.Schedule };
    const lookups = await describeTargets(targets, deadline);
    results = await mapLimit(targets, CONCURRENCY, (t) => backUp(event, owner, t, lookups.get(t.Id)!, deadline));
    results = await afterBackups(event, owner, targets, results, deadline);
    completed = true;
  } finally {
    // An invocation that did not complete (bad input, or an unexpected error) counts at least one
    // failure, and every target it did not get to.
    emitMetrics(schedule, results, completed ? 0 : Math.max(1, targets.length - results.length));
  }

  const failed = results.filter((r) => r.error);
  const pruneFailed = results.filter((r) => r.pruneError);
  const summary: TickSummary = {
    schedule: event.Schedule,
    time: event.Time,
    started: results.length - failed.length,
    failed: failed.length,
    failedEarlier: results.filter((r) => r.previousFailed).length,
    pruned: results.reduce((n, r) => n + r.pruned.length, 0),
    results,
  };
  logger.info('tick done', {
    started: summary.started, failed: summary.failed, failedEarlier: summary.failedEarlier, pruned: summary.pruned, ms: clock.now() - started,
  });
  if (failed.length > 0 || pruneFailed.length > 0) {
    // Failing the invocation lets Lambda retry it (the same tokens find the backups already made)
    // and, after the retries, sends it to the dead-letter queue.
    const reasons = [...failed.map((r) => r.error!), ...pruneFailed.map((r) => r.pruneError!)];
    throw new HandlerError(
      `${failed.length} of ${results.length} backups failed${pruneFailed.length ? `, pruning failed for ${pruneFailed.length} target(s)` : ''}: ` +
        reasons.slice(0, 5).join('; ') + (reasons.length > 5 ? `; and ${reasons.length - 5} more (see the log)` : ''),
    );
  }
  return summary;
}

function checkInput(event: FsxBackupTickInput): void {
  const problems: string[] = [];
  if (!event || typeof event !== 'object') throw new HandlerError('the input is not an object: was the rule\'s input changed by hand?');
  if (!event.Time || Number.isNaN(Date.parse(event.Time))) problems.push(`Time ${JSON.stringify(event.Time)} is not a time`);
  if (!event.StackId) problems.push('StackId is missing');
  if (!event.Schedule) problems.push('Schedule is missing');
  if (!Array.isArray(event.Targets) || event.Targets.length === 0) problems.push('Targets is empty');
  if (problems.length) throw new HandlerError(`invalid schedule input (was the rule's input changed by hand?): ${problems.join('; ')}`);
}

function uniqueById(targets: FsxBackupTargetInput[]): FsxBackupTargetInput[] {
  const seen = new Set<string>();
  return targets.filter((t) => !seen.has(t.Id) && !!seen.add(t.Id));
}

/**
 * The scheduled time, rounded down to the minute: what the token is derived from and retention
 * ages are measured from. Deliveries of one tick whose `time` differs in its seconds share it,
 * and ticks (at least an hour apart) never do.
 */
export function scheduledMinute(time: string): string {
  const minute = Math.floor(Date.parse(time) / 60_000) * 60_000;
  return new Date(minute).toISOString().replace(/:00\.000Z$/, 'Z');
}

/** The tag that says which target a backup is of (the props-hash tag of the contract). */
export function targetHash(target: string): string {
  return stableHash({ target });
}

// ---- tag copying ----

/**
 * Whether each target copies its tags to backups, and its tags: one Describe call per 50 ids;
 * when one id of a batch does not exist (the call fails as a whole), each id is read alone.
 */
async function describeTargets(targets: FsxBackupTargetInput[], deadline: number): Promise<Map<string, Lookup>> {
  const out = new Map<string, Lookup>();
  const byKind = (kind: FsxBackupTargetInput['Kind']) => targets.filter((t) => t.Kind === kind).map((t) => t.Id);
  for (const kind of ['file-system', 'volume'] as const) {
    for (const ids of chunks(byKind(kind), DESCRIBE_IDS)) {
      try {
        const found = await describeBatch(kind, ids, deadline);
        for (const id of ids) out.set(id, found.get(id) ?? { error: `${id} was not found` });
      } catch (err) {
        if (ids.length > 1 && isNotFound(err)) {
          for (const id of ids) {
            const one = await describeBatch(kind, [id], deadline).catch((e) => e);
            out.set(id, one instanceof Map ? one.get(id) ?? { error: `${id} was not found` } : { error: describeError(`Reading ${id}`, one) });
          }
        } else {
          for (const id of ids) out.set(id, { error: describeError(`Reading ${id} (its tags)`, err) });
        }
      }
    }
  }
  return out;
}

async function describeBatch(kind: FsxBackupTargetInput['Kind'], ids: string[], deadline: number): Promise<Map<string, Lookup>> {
  const out = new Map<string, Lookup>();
  if (kind === 'file-system') {
    const list: FileSystem[] = [];
    let next: string | undefined;
    do {
      const page = await retrying('DescribeFileSystems', () => fsx().send(new DescribeFileSystemsCommand({ FileSystemIds: ids, NextToken: next })), deadline);
      list.push(...(page.FileSystems ?? []));
      next = page.NextToken;
    } while (next);
    for (const fs of list) {
      const copyTags = !!(fs.WindowsConfiguration?.CopyTagsToBackups || fs.LustreConfiguration?.CopyTagsToBackups ||
        fs.OpenZFSConfiguration?.CopyTagsToBackups);
      out.set(fs.FileSystemId!, { info: { copyTags, tags: await tagsOf(fs.Tags, fs.ResourceARN, copyTags, deadline) } });
    }
  } else {
    const list: Volume[] = [];
    let next: string | undefined;
    do {
      const page = await retrying('DescribeVolumes', () => fsx().send(new DescribeVolumesCommand({ VolumeIds: ids, NextToken: next })), deadline);
      list.push(...(page.Volumes ?? []));
      next = page.NextToken;
    } while (next);
    for (const v of list) {
      const copyTags = !!v.OntapConfiguration?.CopyTagsToBackups;
      out.set(v.VolumeId!, { info: { copyTags, tags: await tagsOf(v.Tags, v.ResourceARN, copyTags, deadline) } });
    }
  }
  return out;
}

/** The tags to copy: as described, or (when the description leaves them out) listed. */
async function tagsOf(described: Tag[] | undefined, arn: string | undefined, copyTags: boolean, deadline: number): Promise<Tag[]> {
  if (!copyTags) return [];
  if (described || !arn) return described ?? [];
  const tags: Tag[] = [];
  let next: string | undefined;
  do {
    const page = await retrying('ListTagsForResource', () => fsx().send(new ListTagsForResourceCommand({ ResourceARN: arn, NextToken: next })), deadline);
    tags.push(...(page.Tags ?? []));
    next = page.NextToken;
  } while (next);
  return tags;
}

/**
 * The backup's tags: the target's own (when it copies tags to backups, since tags in the request
 * turn that off), then the user's, then ours; later ones win. Sorted by key, so that a retry sends
 * exactly the same request. Copied tags that FSx would refuse (characters outside its tag
 * pattern) or that do not fit in AWS's 50 are left out (and reported).
 */
export function backupTags(copied: Tag[], user: Record<string, string>, ours: KeyValue[]): { tags: KeyValue[]; dropped: string[] } {
  const fixed = new Map<string, string>([...Object.entries(user), ...ours.map((t) => [t.Key, t.Value] as const)]);
  const byKey = (a: KeyValue, b: KeyValue) => (a.Key < b.Key ? -1 : a.Key > b.Key ? 1 : 0);
  const copyable = copied
    .filter((t): t is KeyValue => !!t.Key && t.Value !== undefined && !t.Key.startsWith('aws:') && !fixed.has(t.Key))
    .sort(byKey);
  const valid = (t: KeyValue) => FSX_TAG_CHARACTERS.test(t.Key) && t.Key.length <= 128 && FSX_TAG_CHARACTERS.test(t.Value) && t.Value.length <= 256;
  const candidates = copyable.filter(valid);
  const room = Math.max(0, MAX_TAGS - fixed.size);
  const kept = candidates.slice(0, room);
  const tags = [...kept, ...[...fixed].map(([Key, Value]) => ({ Key, Value }))].sort(byKey);
  return { tags, dropped: [...copyable.filter((t) => !valid(t)), ...candidates.slice(room)].map((t) => t.Key) };
}

// ---- backups ----

async function backUp(
  event: FsxBackupTickInput,
  owner: Owner,
  target: FsxBackupTargetInput,
  lookup: Lookup,
  deadline: number,
): Promise<TargetResult> {
  const id = target.Id;
  const base = { target: id, pruned: [] as string[], tagsDropped: 0 };
  if (clock.now() >= deadline) return { ...base, error: `${id}: not attempted, the invocation ran out of time` };
  if ('error' in lookup) {
    logger.error('cannot back up', { target: id, reason: lookup.error });
    return { ...base, error: lookup.error };
  }
  const token = tickToken({ scheduleId: `${event.StackId}|${event.Schedule}`, target: id, scheduledTime: scheduledMinute(event.Time) });
  const { tags, dropped } = backupTags(lookup.info.tags, event.Tags ?? {}, ownershipTags(owner, targetHash(id), token));
  if (dropped.length > 0) {
    logger.warn('tags of the target were not copied: FSx refuses their characters, or they did not fit in the backup\'s 50 tags', { target: id, dropped });
  }
  const input = {
    ...(target.Kind === 'volume' ? { VolumeId: id } : { FileSystemId: id }),
    Tags: tags,
    ClientRequestToken: token,
  };
  try {
    const out = await retrying('CreateBackup', () => fsx().send(new CreateBackupCommand(input)), deadline, isRetryableCreate);
    const backupId = out.Backup?.BackupId;
    if (!backupId) throw new HandlerError(`FSx CreateBackup of ${id} returned no backup id`);
    // A later delivery of the tick gets the tick's backup back, in whatever state it is now.
    if (out.Backup?.Lifecycle === 'FAILED') return { ...base, backupId, error: failedBackup(id, out.Backup), tagsDropped: dropped.length };
    logger.info('backup requested', { target: id, backupId, lifecycle: out.Backup?.Lifecycle, token });
    return { ...base, backupId, created: out.Backup?.CreationTime?.getTime(), tagsDropped: dropped.length };
  } catch (err) {
    if (errorCode(err) === 'IncompatibleParameterError') {
      // The token was used with other parameters: an earlier delivery of this tick sent other
      // tags (the target's tags changed in between). Its backup is this tick's backup.
      const earlier = await findByToken(target, owner, token, deadline).catch(() => undefined);
      if (earlier?.Lifecycle === 'FAILED') {
        return { ...base, backupId: earlier.BackupId, error: failedBackup(id, earlier), tagsDropped: dropped.length };
      }
      if (earlier) {
        logger.info('backup already requested by an earlier delivery of this tick', { target: id, backupId: earlier.BackupId });
        return { ...base, backupId: earlier.BackupId, created: earlier.CreationTime?.getTime(), tagsDropped: dropped.length };
      }
    }
    const reason = explainCreateError(id, err);
    logger.error('backup failed', { target: id, reason, error: err as Error });
    return { ...base, error: reason, tagsDropped: dropped.length };
  }
}

/** The reason of this tick's backup that FSx reports FAILED. */
function failedBackup(id: string, b: Backup): string {
  const reason = `Backing up ${id}: this tick's backup ${b.BackupId} FAILED${b.FailureDetails?.Message ? `: ${b.FailureDetails.Message}` : ''}`;
  logger.error('backup failed', { target: id, backupId: b.BackupId, reason });
  return reason;
}

function isRetryableCreate(err: unknown): boolean {
  return isTransient(err) || errorCode(err) === 'BackupInProgress';
}

function explainCreateError(id: string, err: unknown): string {
  const code = errorCode(err);
  const hint: Record<string, string> = {
    BackupInProgress: 'another backup of it was still in progress after retrying',
    FileSystemNotFound: 'the file system does not exist',
    VolumeNotFound: 'the volume does not exist',
    UnsupportedOperation: 'FSx cannot back it up (a scratch Lustre file system, or one linked to a data repository?)',
    ServiceLimitExceeded: 'the account\'s backup quota is reached (delete backups or raise the quota)',
    BadRequest: 'FSx refused the request (an ONTAP file system or an OpenZFS volume? back up ONTAP volumes and OpenZFS file systems)',
  };
  return describeError(`Backing up ${id}${hint[code] ? ` (${hint[code]})` : ''}`, err);
}

/** The backup of this tick, found by its token tag. */
async function findByToken(target: FsxBackupTargetInput, owner: Owner, token: string, deadline: number): Promise<Backup | undefined> {
  const backups = await listBackups(target.Kind, [target.Id], deadline);
  return ourBackupsOf(backups, owner, target.Id).find((b) => tagValue(b.Tags, OWNERSHIP_TAG_KEYS.token) === token);
}

/**
 * The backups of `target` this schedule made, newest first: user-initiated, tagged as this
 * schedule's backups of this target, and not copies. `CopyBackup` can copy a backup's tags,
 * ownership tags included, so a copy someone made of one of ours (`SourceBackupId`) looks like
 * ours: it is never pruned, adopted or counted. Backups FSx (`AUTOMATIC`) or AWS Backup
 * (`AWS_BACKUP`) made are left out here as well as by the listing's filter.
 */
export function ourBackupsOf(backups: readonly Backup[], owner: Owner, target: string): Backup[] {
  return backups
    .filter((b) => b.Type === 'USER_INITIATED' && !b.SourceBackupId && !b.SourceBackupRegion)
    .filter((b) => isOwnedBy(b.Tags, owner) && tagValue(b.Tags, OWNERSHIP_TAG_KEYS.propsHash) === targetHash(target))
    .filter((b) => (target.startsWith('fsvol-') ? b.Volume?.VolumeId : b.FileSystem?.FileSystemId) === target)
    .sort((a, b) => (b.CreationTime?.getTime() ?? 0) - (a.CreationTime?.getTime() ?? 0));
}

/**
 * The target's previous backup by this schedule, when FSx reports it FAILED: the newest of ours
 * made before this tick's. FSx makes one backup of a file system or volume at a time, so it had
 * finished when this tick's was made; and each backup is the previous one of exactly one later
 * backup, so it is counted once (once per delivery of that later tick).
 */
export function previousFailed(
  backups: readonly Backup[],
  owner: Owner,
  target: string,
  thisBackupId: string,
  thisCreatedMs: number,
): Backup | undefined {
  const previous = ourBackupsOf(backups, owner, target)
    .find((b) => b.BackupId !== thisBackupId && (b.CreationTime?.getTime() ?? 0) <= thisCreatedMs);
  return previous?.Lifecycle === 'FAILED' ? previous : undefined;
}

// ---- retention ----

/** What retention deletes of one target's backups: only ours, only AVAILABLE, never the newest. */
export function backupsToPrune(
  backups: readonly Backup[],
  owner: Owner,
  target: string,
  retention: { readonly keepLast?: number; readonly maxAgeSeconds?: number },
  tickMs: number,
): Backup[] {
  if (retention.keepLast === undefined && retention.maxAgeSeconds === undefined) return [];
  const ours = ourBackupsOf(backups, owner, target).filter((b) => b.Lifecycle === 'AVAILABLE');
  return ours.filter((b, i) => {
    if (i === 0) return false; // the newest available backup stays, whatever the limits say
    if (retention.keepLast !== undefined && i >= retention.keepLast) return true;
    const created = b.CreationTime?.getTime();
    return retention.maxAgeSeconds !== undefined && created !== undefined && tickMs - created > retention.maxAgeSeconds * 1000;
  });
}

/**
 * After the backups are requested, one listing of the targets whose backup was: the previous
 * backup of each that FSx reports FAILED is counted (a backup that fails after CreateBackup
 * returned is seen nowhere else), and retention prunes.
 */
async function afterBackups(
  event: FsxBackupTickInput,
  owner: Owner,
  targets: FsxBackupTargetInput[],
  results: TargetResult[],
  deadline: number,
): Promise<TargetResult[]> {
  const retention = event.KeepLast !== undefined || event.MaxAgeSeconds !== undefined;
  const byId = new Map(results.map((r) => [r.target, r]));
  const tickMs = Date.parse(scheduledMinute(event.Time));
  for (const kind of ['file-system', 'volume'] as const) {
    // A target whose backup failed in this tick keeps every backup it has (and its previous one
    // is looked at when its next backup is made).
    const ids = targets.filter((t) => t.Kind === kind && !byId.get(t.Id)?.error).map((t) => t.Id);
    for (const batch of chunks(ids, FILTER_VALUES)) {
      if (clock.now() >= deadline) {
        if (!retention) continue;
        for (const id of batch) byId.set(id, { ...byId.get(id)!, pruneError: `${id}: pruning not attempted, the invocation ran out of time` });
        continue;
      }
      let backups: Backup[];
      try {
        backups = await listBackups(kind, batch, deadline);
      } catch (err) {
        const reason = describeError(`Listing the backups of ${batch.join(', ')}${retention ? ' to prune them' : ''}`, err);
        // Without retention only the check of the previous backups is lost: said in the log, and
        // made at the next tick (which looks at its own previous backup only).
        if (!retention) {
          logger.warn('cannot check the previous backups', { targets: batch, reason });
          continue;
        }
        logger.error('cannot prune', { targets: batch, reason });
        for (const id of batch) byId.set(id, { ...byId.get(id)!, pruneError: reason });
        continue;
      }
      for (const id of batch) {
        const r = byId.get(id)!;
        const listed = backups.find((b) => b.BackupId === r.backupId);
        const earlier = previousFailed(backups, owner, id, r.backupId!, listed?.CreationTime?.getTime() ?? r.created ?? clock.now());
        if (earlier) {
          logger.error('an earlier backup failed', { target: id, backupId: earlier.BackupId, created: earlier.CreationTime, reason: earlier.FailureDetails?.Message });
          byId.set(id, { ...r, previousFailed: earlier.BackupId });
        }
      }
      if (!retention) continue;
      await mapLimit(batch, CONCURRENCY, async (id) => {
        const doomed = backupsToPrune(backups, owner, id, { keepLast: event.KeepLast, maxAgeSeconds: event.MaxAgeSeconds }, tickMs);
        const pruned: string[] = [];
        let pruneError: string | undefined;
        for (const b of doomed) {
          // Checked again right before deleting: IAM cannot keep others from tagging a backup as ours,
          // but this list came from the service a moment ago with the backup's own tags.
          if (!isOwnedBy(b.Tags, owner)) continue;
          if (clock.now() >= deadline) {
            pruneError = `${id}: pruning stopped, the invocation ran out of time`;
            break;
          }
          try {
            await retrying('DeleteBackup', () => fsx().send(new DeleteBackupCommand({ BackupId: b.BackupId })), deadline);
            pruned.push(b.BackupId!);
            logger.info('backup pruned', { target: id, backupId: b.BackupId, created: b.CreationTime });
          } catch (err) {
            if (errorCode(err) === 'BackupNotFound') continue; // already gone: what we wanted
            pruneError = describeError(`Deleting backup ${b.BackupId} of ${id}`, err);
            logger.error('prune failed', { target: id, backupId: b.BackupId, reason: pruneError });
          }
        }
        byId.set(id, { ...byId.get(id)!, pruned, ...(pruneError ? { pruneError } : {}) });
      });
    }
  }
  return results.map((r) => byId.get(r.target) ?? r);
}

/**
 * User-initiated backups of the targets (at most 20), every page. Without retention this grows
 * with the schedule's backups, up to the account's backup quota.
 */
async function listBackups(kind: FsxBackupTargetInput['Kind'], ids: string[], deadline: number): Promise<Backup[]> {
  const filters = [
    { Name: kind === 'volume' ? ('volume-id' as const) : ('file-system-id' as const), Values: ids },
    { Name: 'backup-type' as const, Values: ['USER_INITIATED'] },
  ];
  const out: Backup[] = [];
  let next: string | undefined;
  do {
    const page = await retrying('DescribeBackups', () => fsx().send(new DescribeBackupsCommand({ Filters: filters, NextToken: next })), deadline);
    out.push(...(page.Backups ?? []));
    next = page.NextToken;
  } while (next);
  return out;
}

// ---- plumbing ----

function retrying<T>(what: string, fn: () => Promise<T>, deadline: number, retryable: (err: unknown) => boolean = isTransient): Promise<T> {
  return withRetries(fn, {
    budgetMs: Math.max(0, Math.min(CALL_BUDGET_MS, deadline - clock.now())),
    retryable,
    onRetry: (err, attempt, delayMs) => logger.debug(`retrying ${what}`, { attempt, delayMs, error: errorCode(err) }),
  });
}

function isNotFound(err: unknown): boolean {
  return ['FileSystemNotFound', 'VolumeNotFound'].includes(errorCode(err));
}

/** `notReached`: targets an invocation that did not complete counts as failed besides `results`' errors. */
function emitMetrics(schedule: string, results: TargetResult[], notReached: number): void {
  const failed = results.filter((r) => r.error).length + results.filter((r) => r.previousFailed).length + Math.max(0, notReached);
  metrics.addDimension(DIMENSION, schedule);
  metrics.addMetric(METRICS.started, MetricUnit.Count, results.length - results.filter((r) => r.error).length);
  metrics.addMetric(METRICS.failed, MetricUnit.Count, failed);
  metrics.addMetric(METRICS.pruned, MetricUnit.Count, results.reduce((n, r) => n + r.pruned.length, 0));
  metrics.addMetric(METRICS.pruneFailed, MetricUnit.Count, results.filter((r) => r.pruneError).length);
  metrics.addMetric(METRICS.tagsDropped, MetricUnit.Count, results.reduce((n, r) => n + r.tagsDropped, 0));
  metrics.publishStoredMetrics();
}

function chunks<T>(items: T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

/** `fn` over `items`, at most `limit` at a time, results in the order of `items`. */
async function mapLimit<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}
