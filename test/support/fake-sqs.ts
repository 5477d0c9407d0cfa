import { GetQueueAttributesCommand, SendMessageCommand } from '@aws-sdk/client-sqs';
import type { AwsStub } from 'aws-sdk-client-mock';
import { awsError } from './aws-errors';
import { FaultPlan, FaultRates } from './faults';
import { SimCore, routeCommands } from './sim-core';

/** One message on a simulated queue. */
export interface SimMessage {
  readonly messageId: string;
  readonly queueUrl: string;
  readonly body: string;
  readonly sentAt: number;
  /** From when the approximate counts include it. */
  readonly countedFrom: number;
  /** When SQS next delivers it (DelaySeconds, then the visibility timeout after a failed receive). */
  visibleAt: number;
  receives: number;
}

export interface FakeSqsOptions {
  /** The queue's visibility timeout: how long after a failed receive the message is delivered again (ms). @default 12 minutes, as this library's queue */
  readonly visibilityTimeoutMs?: number;
  /** Receives after which a message moves to the dead-letter queue. @default 5 */
  readonly maxReceiveCount?: number;
  /**
   * The longest a message is left out of the approximate counts (GetQueueAttributes) after it was
   * sent; each message draws its own lag up to this. SQS says the counts may not be consistent
   * until a minute after the producers stop. @default 60 s
   */
  readonly maxCountLagMs?: number;
}

/**
 * SQS SendMessage with DelaySeconds, and the delivery side of a Lambda event source: the driver
 * takes the messages that are due (`due`), runs the function, and reports each outcome
 * (`delivered`). A message SQS delivered and the function failed comes again after the visibility
 * timeout, and after `maxReceiveCount` receives goes to the dead-letter queue.
 *
 * Its own faults (FaultPlan.beforeCall: throttling, 5xx, network errors before the call acts) and
 * count lags come from a FaultPlan of its own,
 * so that its calls draw nothing from the other fakes' seeded faults (the sweeps' EC2 calls do, so
 * they change what comes after them); SendMessage is not a call the concurrent-delivery driver sees.
 */
export class FakeSqs {
  public readonly messages: SimMessage[] = [];
  public readonly deadLetters: SimMessage[] = [];
  /** Messages still on the queue when it was deleted (with its stack): sweeps that never ran. */
  public readonly lost: SimMessage[] = [];
  private readonly opts: Required<FakeSqsOptions>;
  private readonly faults: FaultPlan;
  private counter = 0;

  constructor(private readonly core: SimCore, seed: number, rates: FaultRates = {}, options: FakeSqsOptions = {}) {
    this.faults = new FaultPlan(seed + 0x5c5, rates);
    this.opts = { visibilityTimeoutMs: 12 * 60_000, maxReceiveCount: 5, maxCountLagMs: 60_000, ...options };
  }

  /** Messages due now, oldest first (delivered one at a time: batch size 1). */
  public due(now = this.core.clock.now()): SimMessage[] {
    return this.messages.filter((m) => m.visibleAt <= now).sort((a, b) => a.visibleAt - b.visibleAt || a.sentAt - b.sentAt);
  }

  /** When the next message becomes due, if any. */
  public nextDueAt(): number | undefined {
    return this.messages.length ? Math.min(...this.messages.map((m) => m.visibleAt)) : undefined;
  }

  /** The outcome of one delivery: deleted from the queue, or back after the visibility timeout (or to the dead letters). */
  public delivered(message: SimMessage, ok: boolean): void {
    message.receives++;
    const i = this.messages.indexOf(message);
    if (i < 0) return;
    if (ok) {
      this.messages.splice(i, 1);
    } else if (message.receives >= this.opts.maxReceiveCount) {
      this.messages.splice(i, 1);
      this.deadLetters.push(message);
    } else {
      message.visibleAt = this.core.clock.now() + this.opts.visibilityTimeoutMs;
    }
  }

  /** The queue is deleted with its stack (and made anew with the next one): what was on it is lost. */
  public deleteQueue(): void {
    this.lost.push(...this.messages.splice(0));
  }

  public install(mock: AwsStub<any, any, any>): void {
    routeCommands(mock, 'sqs', [[GetQueueAttributesCommand, async () => {
      this.beforeCall('GetQueueAttributesCommand');
      const now = this.core.clock.now();
      const counted = this.messages.filter((m) => m.countedFrom <= now);
      return {
        Attributes: {
          ApproximateNumberOfMessages: String(counted.filter((m) => m.visibleAt <= now).length),
          ApproximateNumberOfMessagesDelayed: String(counted.filter((m) => m.visibleAt > now && m.receives === 0).length),
          ApproximateNumberOfMessagesNotVisible: String(counted.filter((m) => m.visibleAt > now && m.receives > 0).length),
        },
      };
    }], [SendMessageCommand, async (input: any) => {
      this.beforeCall('SendMessageCommand');
      if (typeof input.QueueUrl !== 'string' || typeof input.MessageBody !== 'string') {
        throw awsError('InvalidParameterValue', 'QueueUrl and MessageBody are required', 400);
      }
      const delay = input.DelaySeconds ?? 0;
      if (!Number.isInteger(delay) || delay < 0 || delay > 900) throw awsError('InvalidParameterValue', `DelaySeconds ${delay} is not 0 to 900`, 400);
      const now = this.core.clock.now();
      const messageId = `msg-${++this.counter}`;
      const countedFrom = now + Math.floor(this.faults.next() * this.opts.maxCountLagMs);
      this.messages.push({
        messageId, queueUrl: input.QueueUrl, body: input.MessageBody, sentAt: now, countedFrom, visibleAt: now + delay * 1000, receives: 0,
      });
      return { MessageId: messageId };
    }]]);
  }

  /** What SimCore.handle does before a call acts (counted, refused if the invocation was killed, faults), with this fake's own plan. */
  private beforeCall(command: string): void {
    this.core.clock.checkAlive();
    this.core.callCounts[`sqs:${command}`] = (this.core.callCounts[`sqs:${command}`] ?? 0) + 1;
    const fault = this.faults.beforeCall('sqs', command);
    if (fault) throw fault;
  }
}
