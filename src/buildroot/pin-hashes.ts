/**
 * `appliance pin-hashes`: the sha256 of our packages' source archives, read from a Buildroot
 * download folder. The caller names the packages and records the pins where they belong.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { sha256File } from '../digest.js';
import { ApplianceError } from '../errors.js';

/** A br2-external package and the archive Buildroot downloads for it. */
export interface PinnedArchive {
  name: string;
  archive: string;
}

export interface ArchiveHash {
  package: string;
  archive: string;
  sha256: string;
}

/**
 * Hash each package's archive where Buildroot puts it (`dlDir/<package>/<archive>`). Refuses
 * with every missing path, and how to download them, when any archive is not there.
 */
export async function hashArchives(
  dlDir: string,
  packages: readonly PinnedArchive[],
): Promise<ArchiveHash[]> {
  const missing = packages.map((p) => join(dlDir, p.name, p.archive)).filter((path) => !existsSync(path));
  if (missing.length > 0) {
    throw new ApplianceError(`no downloaded archive at ${missing.join(', ')}`, {
      hint: `download them first on a networked machine: make -C <buildroot> O=<out> ${packages.map((p) => `${p.name}-source`).join(' ')} (with BR2_DL_DIR=${dlDir})`,
    });
  }
  const hashes: ArchiveHash[] = [];
  for (const p of packages)
    hashes.push({
      package: p.name,
      archive: p.archive,
      sha256: await sha256File(join(dlDir, p.name, p.archive)),
    });
  return hashes;
}
