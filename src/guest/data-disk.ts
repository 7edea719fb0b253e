/**
 * The data disk: a sparse raw image holding an ext4 filesystem with the appliance's label, made
 * without root mounts or loop devices. No path through this module overwrites an existing file
 * or device: the image is built under a temporary name and linked into place, which fails if
 * anything appeared at the path meanwhile.
 */
import {
  closeSync,
  existsSync,
  ftruncateSync,
  linkSync,
  lstatSync,
  openSync,
  statSync,
  unlinkSync,
} from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { formatSize } from '../config/index.js';
import { ApplianceError, ExitCode } from '../errors.js';
import { runCommand } from '../run/index.js';

export interface DiskInfo {
  path: string;
  label: string;
  uuid: string;
  filesystem: 'ext4';
  /** Size of the image file as seen by ls (apparent). */
  imageBytes: number;
  /** Space the image really takes on the host (sparse). */
  allocatedBytes: number;
  filesystemBytes: number;
  usedBytes: number;
  freeBytes: number;
}

function describeExisting(path: string): string {
  const st = lstatSync(path);
  if (st.isSymbolicLink()) return 'a symbolic link';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isDirectory()) return 'a folder';
  return `a file of ${formatSize(st.size)}`;
}

function exists(path: string): boolean {
  try {
    lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

export async function createDataDisk(
  path: string,
  options: { sizeBytes: number; label: string },
): Promise<DiskInfo> {
  const target = resolve(path);
  if (exists(target)) {
    throw new ApplianceError(
      `${target} already exists (${describeExisting(target)}); appliance never overwrites a data disk`,
      {
        hint: 'choose a new path, or remove the old disk yourself if you really mean to',
      },
    );
  }
  const dir = dirname(target);
  if (!existsSync(dir) || !statSync(dir).isDirectory()) {
    throw new ApplianceError(`folder ${dir} does not exist`, { hint: 'create it first' });
  }
  if (!/^[A-Za-z0-9][A-Za-z0-9_-]{0,15}$/.test(options.label)) {
    throw new ApplianceError(
      `--label ${JSON.stringify(options.label)} is not an ext4 label of 1-16 letters, digits, "_" or "-"`,
    );
  }
  const partial = join(dir, `.${basename(target)}.partial-${process.pid}`);
  let fd: number;
  try {
    fd = openSync(partial, 'wx', 0o600);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new ApplianceError(
      `cannot create a file in ${dir} (${code === 'EACCES' || code === 'EROFS' ? 'not writable' : code})`,
      {
        hint: 'choose a writable folder',
      },
    );
  }
  try {
    try {
      ftruncateSync(fd, options.sizeBytes);
    } finally {
      closeSync(fd);
    }
    await runCommand(
      'mkfs.ext4',
      [
        '-q',
        '-L',
        options.label,
        '-m',
        '1',
        '-E',
        'lazy_itable_init=1,lazy_journal_init=1,root_owner=0:0',
        partial,
      ],
      {
        purpose: `mkfs.ext4 on ${partial}`,
        timeoutMs: 5 * 60_000,
      },
    );
    try {
      linkSync(partial, target);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      throw new ApplianceError(
        code === 'EEXIST'
          ? `${target} appeared while the disk was being made; it was left alone`
          : `cannot create ${target} (${code})`,
        { hint: 'choose another path' },
      );
    }
  } finally {
    if (exists(partial)) unlinkSync(partial);
  }
  return inspectDataDisk(target);
}

function field(text: string, name: string): string | undefined {
  return new RegExp(`^${name}:\\s*(.*)$`, 'm').exec(text)?.[1]?.trim();
}

export async function inspectDataDisk(path: string): Promise<DiskInfo> {
  const target = resolve(path);
  if (!exists(target))
    throw new ApplianceError(`${target} does not exist`, { hint: "create one with 'appliance disk create'" });
  const r = await runCommand('dumpe2fs', ['-h', target], { allowFailure: true, timeoutMs: 60_000 });
  if (r.exitCode !== 0) {
    throw new ApplianceError(`${target} holds no ext4 filesystem`, {
      hint: "make a data disk with 'appliance disk create'",
      exitCode: ExitCode.checkFailed,
    });
  }
  const blockSize = Number(field(r.stdout, 'Block size'));
  const blocks = Number(field(r.stdout, 'Block count'));
  const free = Number(field(r.stdout, 'Free blocks'));
  const features = field(r.stdout, 'Filesystem features') ?? '';
  if (!features.includes('extent')) {
    throw new ApplianceError(`${target} holds an ext2/ext3 filesystem, not ext4`, {
      exitCode: ExitCode.checkFailed,
    });
  }
  const label = field(r.stdout, 'Filesystem volume name') ?? '';
  const st = statSync(target);
  return {
    path: target,
    label: label === '<none>' ? '' : label,
    uuid: field(r.stdout, 'Filesystem UUID') ?? '',
    filesystem: 'ext4',
    imageBytes: st.size,
    allocatedBytes: st.blocks * 512,
    filesystemBytes: blocks * blockSize,
    usedBytes: (blocks - free) * blockSize,
    freeBytes: free * blockSize,
  };
}

export function formatDiskInfo(d: DiskInfo): string {
  const gib = (n: number) => `${(n / 1024 ** 3).toFixed(2)} GiB`;
  return [
    `path:       ${d.path}`,
    `label:      ${d.label || '(none)'}`,
    `filesystem: ext4 ${d.uuid}`,
    `size:       ${gib(d.filesystemBytes)} (image ${gib(d.imageBytes)}, ${gib(d.allocatedBytes)} allocated on the host)`,
    `used:       ${gib(d.usedBytes)} (${((100 * d.usedBytes) / Math.max(1, d.filesystemBytes)).toFixed(1)}%), free ${gib(d.freeBytes)}`,
  ].join('\n');
}

/**
 * The one rule of growing a data disk, for `disk grow` (an image) and `vm grow` (a volume):
 * never smaller (refused, naming both sizes), and the same size is nothing to do (false).
 */
export function growthNeeded(what: string, currentBytes: number, wantedBytes: number): boolean {
  if (wantedBytes < currentBytes)
    throw new ApplianceError(
      `${what} is ${formatSize(currentBytes)}; ${formatSize(wantedBytes)} would shrink it, and a data disk never shrinks`,
      { hint: `pass a --size larger than ${formatSize(currentBytes)}` },
    );
  return wantedBytes > currentBytes;
}
