export * from './handler-options';
export * from './snapshot-options';
export * from './openzfs-snapshot';
export * from './fsx-backup-schedule';
