/** `appliance source`: download every source for an air-gapped build; report each package that failed. */
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { ApplianceConfig } from '../config/index.js';
import { info } from '../log.js';
import { runCommand } from '../run/index.js';
import type { Tree } from '../tree.js';
import { type ConfigureOptions, downloadDir, makeEnv, withScratchConfig } from './configure.js';
import { parseProgressLine } from './progress.js';
import { readShowInfo, type ShowInfoEntry } from './sbom.js';

export interface SourceResult {
  failed: { pkg: string; version: string }[];
  /**
   * Packages whose download make never tried because one of their download dependencies failed
   * (Go packages need host-go built to vendor, Cargo packages host-rustc): their sources are
   * missing too, though make named no error for them.
   */
  notTried: { pkg: string; version: string }[];
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
    const notTried =
      r.exitCode === 0 ? [] : missingSources(await readShowInfo(make, out, dlDir), dlDir, failed);
    return { failed, notTried, dlDir, log };
  });
}

/** Packages (of show-info) with a source file not in dlDir that no failed package shares. */
export function missingSources(
  showInfo: Record<string, ShowInfoEntry>,
  dlDir: string,
  failed: readonly { pkg: string }[],
): { pkg: string; version: string }[] {
  const files = (e: ShowInfoEntry) => (e.downloads ?? []).map((d) => join(dlDir, e.dl_dir ?? '', d.source));
  const failedKeys = new Set(failed.map((f) => f.pkg));
  const failedFiles = new Set(
    Object.entries(showInfo).flatMap(([key, e]) => (failedKeys.has(key) ? files(e) : [])),
  );
  return Object.entries(showInfo)
    .filter(([key, e]) => !failedKeys.has(key) && e.virtual !== true)
    .filter(([, e]) => files(e).some((f) => !existsSync(f) && !failedFiles.has(f)))
    .map(([key, e]) => ({ pkg: key, version: e.version ?? '' }))
    .sort((a, b) => (a.pkg < b.pkg ? -1 : a.pkg > b.pkg ? 1 : 0));
}
