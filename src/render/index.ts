/** The render stage: appliance config → br2-external tree on disk. */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { ApplianceConfig } from '../config/index.js';
import { ApplianceError } from '../errors.js';
import { readInputFile } from '../fsguard.js';
import { type Tree, type WriteResult, writeTree } from '../tree.js';
import { buildTree, type HashPins } from './files.js';

export { diffTree, manifestName, type Tree, type WriteResult, writeTree } from '../tree.js';
export {
  buildTree,
  defconfigSymbols,
  type HashPins,
  kernelFragment,
  overlayDir,
  overlayFolders,
} from './files.js';
export { type ExternalPackage, externalPackages, packageSymbol } from './packages.js';

/** The pinned source hashes live next to appliance.yaml, like a lock file. */
export function hashPinsPath(config: ApplianceConfig): string {
  return join(dirname(config.source), 'appliance.hashes.json');
}

export function readHashPins(config: ApplianceConfig): HashPins {
  const path = hashPinsPath(config);
  if (!existsSync(path)) return {};
  const text = readInputFile('hash pins', path, "remove it or run 'appliance pin-hashes' again").toString(
    'utf8',
  );
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (e) {
    throw new ApplianceError(`${path} is not valid JSON (${(e as Error).message})`, {
      hint: "fix it or run 'appliance pin-hashes' again",
    });
  }
  if (!data || typeof data !== 'object' || Array.isArray(data))
    throw new ApplianceError(`${path}: expected an object of archive → sha256`);
  for (const [file, sha] of Object.entries(data)) {
    if (typeof sha !== 'string' || !/^[0-9a-f]{64}$/.test(sha)) {
      throw new ApplianceError(
        `${path}: ${file}: expected a sha256 of 64 hex digits, got ${JSON.stringify(sha)}`,
      );
    }
  }
  return data as HashPins;
}

export function renderTree(config: ApplianceConfig): Tree {
  return buildTree(config, readHashPins(config));
}

export function renderToDisk(
  config: ApplianceConfig,
  outDir: string,
  options: { force?: boolean } = {},
): WriteResult {
  return writeTree(outDir, renderTree(config), options);
}
