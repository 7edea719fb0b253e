import { ApplianceError, ExitCode, isApplianceError } from '../errors.js';
import { inputFile } from '../fsguard.js';
import { type DiskInfo, growthNeeded, inspectDataDisk } from '../guest/index.js';
import { runCommand } from '../run/index.js';

export interface GrowResult {
  before: DiskInfo;
  after: DiskInfo;
  /** False when the image already had the asked size. */
  changed: boolean;
}

export async function growDataDisk(path: string, sizeBytes: number): Promise<GrowResult> {
  const abs = inputFile('data disk', path, 'pass a data disk image made by appliance disk create');
  let before: DiskInfo;
  try {
    before = await inspectDataDisk(abs);
  } catch (e) {
    if (!isApplianceError(e)) throw e;
    throw new ApplianceError(`data disk ${path}: ${e.message.replace(`${abs} `, '')}`, {
      hint: 'disk grow enlarges data disks made by appliance disk create',
    });
  }
  if (sizeBytes % 512 !== 0)
    throw new ApplianceError(`--size ${sizeBytes} bytes is not a whole number of 512-byte sectors`, {
      hint: 'pass a size such as 30G',
    });
  if (!growthNeeded(`data disk ${path}`, before.imageBytes, sizeBytes))
    return { before, after: before, changed: false };
  // qemu-img takes QEMU's image lock: a disk a running QEMU holds is refused, not grown under it.
  // On a raw image a resize is a sparse truncate, and it refuses to shrink by itself too.
  const r = await runCommand('qemu-img', ['resize', '-q', '-f', 'raw', abs, String(sizeBytes)], {
    allowFailure: true,
    purpose: `growing ${abs}`,
    timeoutMs: 60_000,
  });
  if (r.exitCode !== 0) {
    if (/lock/i.test(r.stderr))
      throw new ApplianceError(`data disk ${path} is in use by a running QEMU`, {
        hint: "grow a libvirt VM's disk with 'appliance vm grow', or stop the VM first",
        exitCode: ExitCode.hostProblem,
      });
    throw new ApplianceError(`could not grow ${path}: ${r.stderr.trim().split('\n')[0]}`, {
      exitCode: ExitCode.hostProblem,
    });
  }
  return { before, after: await inspectDataDisk(abs), changed: true };
}
