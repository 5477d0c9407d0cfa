export * from './handler-options';
export * from './snapshot-options';
export * from './openzfs-snapshot';
export * from './fsx-backup-schedule';
export * from './ebs-snapshot-source';
export * from './ebs-snapshot-on-deploy';
