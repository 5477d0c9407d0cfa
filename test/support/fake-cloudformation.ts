import { DescribeStackResourceCommand, DescribeStacksCommand } from '@aws-sdk/client-cloudformation';
import type { AwsStub } from 'aws-sdk-client-mock';
import { awsError } from './aws-errors';
import { SimCore, routeCommands } from './sim-core';

export interface StackRecord {
  readonly stackId: string;
  readonly stackName: string;
  status: string;
  readonly created: number;
  /** When its last update operation began (CloudFormation's LastUpdatedTime). */
  lastUpdated?: number;
}

/** CloudFormation's DescribeStacks, with the status the stack driver sets. */
export class FakeCloudFormation {
  public readonly stacks = new Map<string, StackRecord>();
  /** Each resource's status by stack id and logical id (DescribeStackResource), as the stack driver sets them. */
  public readonly resources = new Map<string, string>();

  constructor(private readonly core: SimCore) {}

  public setStatus(stackId: string, stackName: string, status: string): void {
    const s = this.stacks.get(stackId);
    if (s && status === 'UPDATE_IN_PROGRESS') s.lastUpdated = this.core.clock.now();
    if (s) s.status = status;
    else this.stacks.set(stackId, { stackId, stackName, status, created: this.core.clock.now() });
  }

  public setResourceStatus(stackId: string, logicalId: string, status: string): void {
    this.resources.set(`${stackId}|${logicalId}`, status);
  }

  public status(stackId: string): string | undefined {
    return this.stacks.get(stackId)?.status;
  }

  public install(mock: AwsStub<any, any, any>): void {
    routeCommands(mock, 'cloudformation', [[DescribeStackResourceCommand, (input: any) =>
      this.core.handle('cloudformation', 'DescribeStackResourceCommand', input, { mutating: false }, () => {
        const status = this.resources.get(`${input.StackName}|${input.LogicalResourceId}`);
        if (!status || !this.stacks.has(input.StackName)) {
          throw awsError('ValidationError', `Resource ${input.LogicalResourceId} does not exist for stack ${input.StackName}`, 400);
        }
        const at = new Date(this.core.clock.now());
        const detail = { StackId: input.StackName, LogicalResourceId: input.LogicalResourceId, ResourceStatus: status, LastUpdatedTimestamp: at };
        return { StackResourceDetail: detail };
      })], [DescribeStacksCommand, (input: any) =>
      this.core.handle('cloudformation', 'DescribeStacksCommand', input, { mutating: false }, () => {
        const wanted = input.StackName as string | undefined;
        const list = [...this.stacks.values()].filter(
          // By name, DescribeStacks shows only a stack that is not deleted; by id, any.
          (s) => !wanted || s.stackId === wanted || (s.stackName === wanted && s.status !== 'DELETE_COMPLETE'),
        );
        if (wanted && list.length === 0) throw awsError('ValidationError', `Stack with id ${wanted} does not exist`, 400);
        return {
          Stacks: list.map((s) => ({
            StackId: s.stackId,
            StackName: s.stackName,
            StackStatus: s.status,
            CreationTime: new Date(s.created),
            ...(s.lastUpdated !== undefined ? { LastUpdatedTime: new Date(s.lastUpdated) } : {}),
          })),
        };
      })]]);
  }
}
