/** What the handlers use of the Lambda context (tests and the simulator pass none). */
export interface InvocationContext {
  /** Unique per invocation: the EBS handler's delivery id (in the claim, and the tag of what it creates). */
  readonly awsRequestId?: string;
  getRemainingTimeInMillis(): number;
}
