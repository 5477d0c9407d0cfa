/*
 * Values that constructs and handlers of more than one type both use, defined once. Like the other
 * contract modules it imports nothing: the handlers' bundles copy it.
 */
import type { MetricNamespace } from './fsx-backup-contract';

/** The CloudWatch namespace of every metric the library emits. */
export const METRIC_NAMESPACE: MetricNamespace = 'CdkStorageSnapshots';

/**
 * FSx's tag characters (its API model's `TagKey`/`TagValue` pattern): letters, numbers, spaces
 * and `_ . : / = + - @`. The constructs validate user tags with it; the schedule handler leaves
 * out copied tags that do not match.
 */
export const FSX_TAG_PATTERN = /^([\p{L}\p{Z}\p{N}_.:/=+\-@]*)$/u;
