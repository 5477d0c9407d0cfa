import { MetricUnit, Metrics } from '@aws-lambda-powertools/metrics';
import { SCHEDULE_DIMENSION } from '../../src/private/scheduled-copy-contract';
import { METRIC_NAMESPACE } from '../../src/private/shared-values';

/**
 * CloudWatch metrics in the embedded metric format (written to the log, no PutMetricData call):
 * one instance for every scheduled operation of the function.
 */
export const metrics = new Metrics({ namespace: METRIC_NAMESPACE });
// Only the Schedule dimension, so that the constructs' metrics (and alarms) name exactly these.
metrics.clearDefaultDimensions();

/** One tick's counts, with the schedule as the only dimension. */
export function emitMetrics(schedule: string, counts: Record<string, number>): void {
  metrics.addDimension(SCHEDULE_DIMENSION, schedule);
  for (const [name, value] of Object.entries(counts)) metrics.addMetric(name, MetricUnit.Count, value);
  metrics.publishStoredMetrics();
}
