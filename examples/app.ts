import { App } from 'aws-cdk-lib';
import { ExampleStack } from './stack';

/**
 * A small app that uses every construct of the library. `npx projen synth:example` synthesizes it
 * into cdk.out; nothing is deployed.
 */
const app = new App();
new ExampleStack(app, 'CdkStorageSnapshotsExample', {
  env: { account: process.env.CDK_DEFAULT_ACCOUNT ?? '111111111111', region: process.env.CDK_DEFAULT_REGION ?? 'us-east-1' },
});
app.synth();
