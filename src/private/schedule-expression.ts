import { Token } from 'aws-cdk-lib';
import * as events from 'aws-cdk-lib/aws-events';
import { IConstruct } from 'constructs';
import { invalid } from './validation';

/**
 * At most once an hour: a `rate` of at least 60 minutes, or a `cron` whose minute field is a
 * single number (any hour field then fires at most once an hour). EventBridge rules take nothing
 * else: `at(...)` is EventBridge Scheduler's, and a rule refuses it at deploy.
 */
export function validateSchedule(scope: IConstruct, schedule: events.Schedule): void {
  const expression = schedule.expressionString;
  if (Token.isUnresolved(expression)) return;
  const rule = 'must fire at most once an hour (FSx backups take a while and each one is kept): use a rate of at least 1 hour, ' +
    'or a cron expression whose minute field is one number, such as cron(0 2 * * ? *)';
  const rate = /^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$/.exec(expression);
  if (rate) {
    if (rate[2].startsWith('minute') && Number(rate[1]) < 60) invalid(scope, 'schedule', rule, expression);
    return;
  }
  const cron = /^cron\((.*)\)$/.exec(expression);
  if (cron) {
    const minute = cron[1].trim().split(/\s+/)[0];
    if (!/^\d{1,2}$/.test(minute) || Number(minute) > 59) invalid(scope, 'schedule', rule, expression);
    return;
  }
  if (/^at\(.*\)$/.test(expression)) {
    invalid(scope, 'schedule', 'EventBridge rules take only rate(...) and cron(...) expressions; at(...) is EventBridge Scheduler\'s', expression);
  }
  invalid(scope, 'schedule', 'is not a rate(...) or cron(...) expression EventBridge rules understand', expression);
}
