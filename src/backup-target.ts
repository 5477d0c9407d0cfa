import { Stack, Token } from 'aws-cdk-lib';
import * as fsx from 'aws-cdk-lib/aws-fsx';
import { Construct } from 'constructs';
import type { FsxBackupTargetInput } from './private/fsx-backup-contract';
import { invalid } from './private/validation';

/** What `CreateBackup` is called with: a file system or an ONTAP volume. */
export enum BackupTargetType {
  /** A Windows, Lustre or OpenZFS file system (`CreateBackup` `FileSystemId`). */
  FILE_SYSTEM = 'FILE_SYSTEM',
  /** An ONTAP volume (`CreateBackup` `VolumeId`). */
  VOLUME = 'VOLUME',
}

const FILE_SYSTEM_ID = /^fs-[0-9a-f]{8,}$/;
const VOLUME_ID = /^fsvol-[0-9a-f]{17}$/;

/**
 * Something FSx `CreateBackup` can back up: a Windows, Lustre or OpenZFS file system, or an ONTAP
 * volume. ONTAP backups are per volume and OpenZFS backups per file system: where the type is
 * known at synth (an L1 or L2 construct), a pairing the API cannot back up is refused there.
 *
 * @see https://docs.aws.amazon.com/fsx/latest/APIReference/API_CreateBackup.html
 */
export class BackupTarget {
  /** A Windows, Lustre or OpenZFS file system by id (`fs-…`), or a token. */
  public static fileSystemId(fileSystemId: string): BackupTarget {
    return new BackupTarget(BackupTargetType.FILE_SYSTEM, fileSystemId, 'fileSystemId');
  }

  /** An ONTAP volume by id (`fsvol-…`), or a token. */
  public static volumeId(volumeId: string): BackupTarget {
    return new BackupTarget(BackupTargetType.VOLUME, volumeId, 'volumeId');
  }

  /**
   * An L2 file system, such as a `LustreFileSystem`. When it is defined in the app, its
   * deployment type and data repository are checked as for `cfnFileSystem`.
   */
  public static fileSystem(fileSystem: fsx.IFileSystem): BackupTarget {
    const child = Construct.isConstruct(fileSystem) ? fileSystem.node.defaultChild : undefined;
    if (child instanceof fsx.CfnFileSystem) return BackupTarget.cfnFileSystem(child);
    return new BackupTarget(BackupTargetType.FILE_SYSTEM, fileSystem.fileSystemId, 'fileSystem');
  }

  /**
   * An L1 file system. ONTAP file systems are refused (back up their volumes), and so are Lustre
   * file systems that FSx cannot back up: scratch deployments (including one without a
   * `deploymentType`, which defaults to `SCRATCH_1`) and those linked to a data repository.
   */
  public static cfnFileSystem(fileSystem: fsx.CfnFileSystem): BackupTarget {
    return new BackupTarget(BackupTargetType.FILE_SYSTEM, fileSystem.ref, `file system ${fileSystem.node.path}`, cannotBackUpFileSystem(fileSystem));
  }

  /** An L1 ONTAP volume. OpenZFS volumes are refused (back up their file system). */
  public static ontapVolume(volume: fsx.CfnVolume): BackupTarget {
    const refusal = !Token.isUnresolved(volume.volumeType) && volume.volumeType !== 'ONTAP'
      ? `${volume.node.path} is an ${volume.volumeType} volume: FSx backs up OpenZFS file systems, not their volumes; give the file system`
      : undefined;
    return new BackupTarget(BackupTargetType.VOLUME, volume.attrVolumeId, `volume ${volume.node.path}`, refusal);
  }

  private constructor(
    /** Whether this is a file system or a volume. */
    public readonly type: BackupTargetType,
    /** The file system or volume id (or a token). */
    public readonly id: string,
    private readonly source: string,
    private readonly refusal?: string,
  ) {}

  /** @internal */
  public _validate(scope: Construct, prop: string): void {
    if (this.refusal) invalid(scope, prop, this.refusal);
    if (Token.isUnresolved(this.id)) return;
    if (this.type === BackupTargetType.FILE_SYSTEM) {
      if (!FILE_SYSTEM_ID.test(this.id) || this.id.length > 21) {
        invalid(scope, prop, `${this.source} must be "fs-" followed by 8 to 18 lowercase hex digits`, this.id);
      }
    } else if (!VOLUME_ID.test(this.id)) {
      invalid(scope, prop, `${this.source} must be "fsvol-" followed by 17 lowercase hex digits`, this.id);
    }
  }

  /** @internal */
  public _input(): FsxBackupTargetInput {
    return { Kind: this.type === BackupTargetType.FILE_SYSTEM ? 'file-system' : 'volume', Id: this.id };
  }

  /** @internal */
  public _arn(stack: Stack): string {
    return this.type === BackupTargetType.FILE_SYSTEM
      ? stack.formatArn({ service: 'fsx', resource: 'file-system', resourceName: this.id })
      // A volume ARN names its file system (volume/<fs id>/<volume id>), which the id does not tell.
      : stack.formatArn({ service: 'fsx', resource: 'volume', resourceName: `*/${this.id}` });
  }
}

function cannotBackUpFileSystem(fs: fsx.CfnFileSystem): string | undefined {
  const type = fs.fileSystemType;
  if (Token.isUnresolved(type)) return undefined;
  if (type === 'ONTAP') {
    return `${fs.node.path} is an ONTAP file system: FSx backs up ONTAP volumes, not whole file systems; give its volumes (BackupTarget.ontapVolume)`;
  }
  if (type !== 'LUSTRE') return undefined;
  const lustre = fs.lustreConfiguration as fsx.CfnFileSystem.LustreConfigurationProperty | undefined;
  if (lustre !== undefined && Token.isUnresolved(lustre)) return undefined;
  const deployment = lustre?.deploymentType;
  if (deployment === undefined) {
    return `${fs.node.path} is a Lustre file system without lustreConfiguration.deploymentType, which defaults to SCRATCH_1: ` +
      'FSx backs up persistent Lustre file systems only (set PERSISTENT_1 or PERSISTENT_2)';
  }
  if (typeof deployment === 'string' && !Token.isUnresolved(deployment) && deployment.startsWith('SCRATCH')) {
    return `${fs.node.path} is a ${deployment} Lustre file system: FSx backs up persistent Lustre file systems only`;
  }
  if (lustre?.importPath || lustre?.exportPath) {
    return `${fs.node.path} is linked to a data repository (importPath/exportPath): FSx cannot back up such a Lustre file system`;
  }
  return undefined;
}
