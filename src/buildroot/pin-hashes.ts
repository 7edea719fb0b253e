/** `appliance pin-hashes`: record the sha256 of our packages' downloaded source archives. */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ApplianceConfig } from '../config/index.js';
import { ApplianceError } from '../errors.js';
import { externalPackages, hashPinsPath, readHashPins } from '../render/index.js';

export interface PinResult {
  file: string;
  pinned: { package: string; archive: string; sha256: string }[];
}

/** Hash each external package's archive found in `dlDir/<package>/` and merge them into the pins file. */
export function pinHashes(config: ApplianceConfig, dlDir: string): PinResult {
  const missing: string[] = [];
  const pinned: PinResult['pinned'] = [];
  for (const pkg of externalPackages) {
    const path = join(dlDir, pkg.name, pkg.archive);
    if (!existsSync(path)) {
      missing.push(path);
      continue;
    }
    pinned.push({
      package: pkg.name,
      archive: pkg.archive,
      sha256: createHash('sha256').update(readFileSync(path)).digest('hex'),
    });
  }
  if (missing.length > 0) {
    throw new ApplianceError(`no downloaded archive at ${missing.join(', ')}`, {
      hint: `download them first on a networked machine: make -C <buildroot> O=<out> ${externalPackages.map((p) => `${p.name}-source`).join(' ')} (with BR2_DL_DIR=${dlDir})`,
    });
  }
  const file = hashPinsPath(config);
  const pins = { ...readHashPins(config) };
  for (const p of pinned) pins[p.archive] = p.sha256;
  const sorted = Object.fromEntries(Object.entries(pins).sort(([a], [b]) => (a < b ? -1 : 1)));
  writeFileSync(`${file}.tmp`, `${JSON.stringify(sorted, null, 2)}\n`);
  renameSync(`${file}.tmp`, file);
  return { file, pinned };
}
