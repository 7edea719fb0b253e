/** `appliance source`: download every source for an air-gapped build; report each package that failed. */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { ApplianceConfig } from '../config/index.js';
import { info } from '../log.js';
import { runCommand } from '../run/index.js';
import type { Tree } from '../tree.js';
import { type ConfigureOptions, downloadDir, makeEnv, withScratchConfig } from './configure.js';
import { parseProgressLine } from './progress.js';

export interface SourceResult {
  failed: { pkg: string; version: string }[];
  dlDir: string;
  log: string;
}

/** `make -k source` for the rendered `tree` in a scratch O=, into the shared download folder. */
export async function downloadSources(
  config: ApplianceConfig,
  tree: Tree,
  o: ConfigureOptions & { dlDir?: string } = {},
): Promise<SourceResult> {
  const dlDir = downloadDir(o);
  const log = join(dlDir, 'appliance-source.log');
  return withScratchConfig(config, tree, o, 'nothing was downloaded', async ({ make, out }) => {
    mkdirSync(dlDir, { recursive: true });
    const r = await runCommand(make, ['-k', '-C', out, 'source'], {
      env: makeEnv(dlDir),
      allowFailure: true,
      timeoutMs: 12 * 3600_000,
      logFile: log,
      onLine: (line) => {
        const p = parseProgressLine(line);
        if (p?.pkg && p.step === 'Downloading') info(`downloading ${p.pkg} ${p.version}`);
      },
    });
    // One `make: *** [...<O>/build/<pkg>-<version>/.stamp_downloaded] Error 1` per failed package.
    const failed = [
      ...`${r.stdout}\n${r.stderr}`.matchAll(/\/build\/([^/\s]+)\/\.stamp_downloaded\] Error/g),
    ].map((m) => {
      const split = /^(.*?)-(\d[^/]*)$/.exec(m[1] ?? '');
      return { pkg: split?.[1] ?? m[1] ?? '', version: split?.[2] ?? '' };
    });
    return { failed, dlDir, log };
  });
}
