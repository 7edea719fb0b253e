/**
 * The one scratch-configure step of `build`, `sbom` and `source`: write the rendered tree and the
 * defconfig (with the build-time extras), run `make BR2_DEFCONFIG=… defconfig` in a temporary
 * O= with BR2_DL_DIR set, hand the result to the caller, then remove the temporary folder. The
 * tree comes from the caller: this stage does not render.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { type ApplianceConfig, type Arch, defconfigName } from '../config/index.js';
import { ApplianceError, ExitCode } from '../errors.js';
import { cacheDir } from '../paths.js';
import { runCommand } from '../run/index.js';
import { type Tree, writeTree } from '../tree.js';
import { compareConfigs, explainProblems, type SymbolProblem } from './check.js';
import { locateBuildroot } from './locate.js';

/** What every command that configures Buildroot accepts. */
export interface ConfigureOptions {
  arch?: Arch;
  buildroot?: string;
  ccache?: boolean;
  /** Download mirror tried before (or, with mirrorOnly, instead of) upstream sites. */
  mirror?: string;
  mirrorOnly?: boolean;
  /** The make binary (tests use a scripted one). */
  make?: string;
}

/** Where the tree and the defconfig go when they must outlive the scratch folder (a build's own). */
export interface ConfigurePlace {
  external: string;
  defconfig: string;
}

/** A configured scratch O=, valid only inside the callback of {@link withScratchConfig}. */
export interface ScratchConfig {
  arch: Arch;
  make: string;
  buildroot: string;
  external: string;
  defconfig: string;
  /** The defconfig as written: the tree's plus the build-time extras. */
  defconfigText: string;
  /** The scratch O= folder, holding `.config`. */
  out: string;
  /** The resolved `.config`. */
  dotConfig: string;
  /** A download folder inside the scratch folder, for make calls that must not touch a real one. */
  scratchDl: string;
}

/** The environment of every make call: downloads in dlDir, no terminal escapes, the shared ccache. */
export function makeEnv(dlDir: string): Record<string, string> {
  return { BR2_DL_DIR: dlDir, TERM: 'dumb', BR2_CCACHE_DIR: join(cacheDir(), 'ccache') };
}

/** The shared download folder: --dl-dir, then $BR2_DL_DIR, then the cache. */
export function downloadDir(o: { dlDir?: string }): string {
  return resolve(o.dlDir ?? process.env.BR2_DL_DIR ?? join(cacheDir(), 'dl'));
}

export function makeCommand(o: Pick<ConfigureOptions, 'make'>): string {
  return o.make ?? process.env.APPLIANCE_MAKE ?? 'make';
}

/** Extra defconfig lines for build-time choices that are not part of the appliance itself. */
export function buildExtras(o: ConfigureOptions): string[] {
  const lines: string[] = [];
  if (o.ccache) lines.push('BR2_CCACHE=y', `BR2_CCACHE_DIR="${join(cacheDir(), 'ccache')}"`);
  if (o.mirror) {
    if (/["\s\\]/.test(o.mirror) || !/^(https?|ftp|file|scp):\/\//.test(o.mirror)) {
      throw new ApplianceError(`--mirror ${JSON.stringify(o.mirror)} is not a URL`, {
        hint: 'e.g. --mirror http://mirror.lan/buildroot',
      });
    }
    lines.push(`BR2_PRIMARY_SITE="${o.mirror}"`);
    if (o.mirrorOnly) lines.push('BR2_PRIMARY_SITE_ONLY=y');
  } else if (o.mirrorOnly) {
    throw new ApplianceError('--mirror-only needs --mirror', { hint: 'pass --mirror URL' });
  }
  return lines;
}

/** Refuse a configuration in which Buildroot dropped or changed a requested symbol, with the reasons. */
async function requireSymbolsKept(
  buildroot: string,
  out: string,
  defconfigText: string,
  dotConfig: string,
  refused: string,
): Promise<void> {
  const { mismatched } = compareConfigs(defconfigText, dotConfig);
  if (mismatched.length === 0) return;
  const problems: SymbolProblem[] = mismatched.map(([symbol, wanted, got]) => ({
    symbol,
    wanted,
    got,
    reasons: [],
  }));
  await explainProblems(buildroot, out, problems);
  throw new ApplianceError(
    `Buildroot dropped or changed ${problems.length} requested symbol(s), so ${refused}`,
    {
      exitCode: ExitCode.checkFailed,
      hint: 'fix appliance.yaml',
      details: problems
        .map((p) => `  ${p.symbol}: wanted ${p.wanted}, got ${p.got ?? '(not set)'}: ${p.reasons.join('; ')}`)
        .join('\n'),
    },
  );
}

/**
 * Write `tree` and its defconfig for `o.arch` (default: the config's) plus {@link buildExtras}
 * to `place` (default: the scratch folder), configure Buildroot in a scratch O=, refuse the
 * configuration if Buildroot dropped or changed a requested symbol (`refused` says what was
 * therefore not done, e.g. "nothing was built"), and run `use`. Bad options are refused before
 * anything is written.
 */
export async function withScratchConfig<T>(
  config: ApplianceConfig,
  tree: Tree,
  o: ConfigureOptions,
  refused: string,
  use: (scratch: ScratchConfig) => Promise<T>,
  place?: ConfigurePlace,
): Promise<T> {
  const arch = o.arch ?? config.arch;
  const make = makeCommand(o);
  const buildroot = locateBuildroot(config.buildroot.version, o.buildroot);
  const extras = buildExtras(o).map((l) => `${l}\n`);
  const defconfigPath = join('configs', defconfigName(config, arch));
  const treeDefconfig = tree.get(defconfigPath);
  if (!treeDefconfig) {
    throw new ApplianceError(`the rendered tree has no ${defconfigPath}`, {
      hint: 'render the tree of the same appliance.yaml',
    });
  }
  const work = mkdtempSync(join(tmpdir(), 'appliance-scratch-'));
  try {
    const external = place?.external ?? join(work, 'external');
    const defconfig = place?.defconfig ?? join(work, 'defconfig');
    writeTree(external, tree);
    const defconfigText = `${treeDefconfig.content.toString('utf8')}${extras.join('')}`;
    writeFileSync(defconfig, defconfigText);
    const out = join(work, 'o');
    const scratchDl = join(work, 'dl');
    mkdirSync(scratchDl);
    await runCommand(
      make,
      ['-C', buildroot, `O=${out}`, `BR2_EXTERNAL=${external}`, `BR2_DEFCONFIG=${defconfig}`, 'defconfig'],
      { env: makeEnv(scratchDl), purpose: 'configuring Buildroot', timeoutMs: 5 * 60_000 },
    );
    const dotConfig = readFileSync(join(out, '.config'), 'utf8');
    await requireSymbolsKept(buildroot, out, defconfigText, dotConfig, refused);
    return await use({
      arch,
      make,
      buildroot,
      external,
      defconfig,
      defconfigText,
      out,
      dotConfig,
      scratchDl,
    });
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}
