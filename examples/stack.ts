import { RemovalPolicy, Stack, StackProps } from 'aws-cdk-lib';
import * as fsx from 'aws-cdk-lib/aws-fsx';
import { Construct } from 'constructs';
import { OpenZfsSnapshot } from '../src';

/** A stack that uses every construct of the library (the tests check it with cdk-nag too). */
export class ExampleStack extends Stack {
  constructor(scope: Construct, id: string, props?: StackProps) {
    super(scope, id, props);

    // An OpenZFS volume changed by this stack: the snapshot is taken before any change to it.
    const volume = new fsx.CfnVolume(this, 'DataVolume', {
      name: 'data',
      volumeType: 'OPENZFS',
      openZfsConfiguration: {
        parentVolumeId: 'fsvol-0123456789abcdef0',
        storageCapacityQuotaGiB: 100,
      },
    });

    new OpenZfsSnapshot(this, 'BeforeRelease', {
      volumeId: 'fsvol-0123456789abcdef0',
      snapshotName: 'before-release',
      tags: { team: 'data' },
      snapshotBefore: [volume],
      trigger: '2026-11-release',
      removalPolicy: RemovalPolicy.RETAIN,
    });
  }
}

