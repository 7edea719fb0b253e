/**
 * `appliance build`: render the tree, configure Buildroot with O= and BR2_DL_DIR, check the
 * symbols, plan the least rebuild, run make with a progress display and a full log, diagnose a
 * failure, and gather the images into an artifacts folder with a manifest.
 */
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { type ApplianceConfig, type Arch, defconfigName } from '../config/index.js';
import { sha256File, sha256Of } from '../digest.js';
import { ApplianceError, ExitCode } from '../errors.js';
import { info } from '../log.js';
import { cacheDir } from '../paths.js';
import { renderTree, writeTree } from '../render/index.js';
import { noteOnInterrupt, runCommand } from '../run/index.js';
import { compareConfigs, explainProblems, type SymbolProblem } from './check.js';
import { diagnoseBuildLog } from './diagnose.js';
import { locateBuildroot } from './locate.js';
import { type BuildPlan, type BuildSnapshot, packageSymbols, planBuild, snapshotConfig } from './planner.js';
import { formatProgress, type ProgressEvent, ProgressTracker, parseProgressLine } from './progress.js';
import { configSha256, type ShowInfoEntry, sbomFromShowInfo } from './sbom.js';

export interface BuildOptions {
  arch?: Arch;
  jobs?: number;
  dlDir?: string;
  ccache?: boolean;
  out?: string;
  buildroot?: string;
  /** Download mirror tried before (or, with mirrorOnly, instead of) upstream sites. */
  mirror?: string;
  mirrorOnly?: boolean;
  /** Start from scratch whatever the planner says. */
  clean?: boolean;
  planOnly?: boolean;
  /** Progress as JSON lines on stdout. */
  json?: boolean;
  /** The make binary (tests use a scripted one). */
  make?: string;
}

export interface BuildLayout {
  out: string;
  external: string;
  build: string;
  artifacts: string;
  log: string;
  state: string;
  defconfig: string;
}

export function buildLayout(config: ApplianceConfig, arch: Arch, out?: string): BuildLayout {
  const dir = resolve(out ?? join('output', `${config.name}-${arch}`));
  return {
    out: dir,
    external: join(dir, 'external'),
    build: join(dir, 'build'),
    artifacts: join(dir, 'artifacts'),
    log: join(dir, 'build.log'),
    state: join(dir, 'state.json'),
    defconfig: join(dir, 'appliance_defconfig'),
  };
}

interface BuildState {
  snapshot: BuildSnapshot;
  built: boolean;
}

export interface BuildResult {
  plan: BuildPlan;
  layout: BuildLayout;
  manifest?: ArtifactManifest;
}

export interface ArtifactManifest {
  appliance: string;
  arch: Arch;
  configSha256: string;
  buildrootVersion: string;
  files: { name: string; bytes: number; sha256: string }[];
}

/** Extra defconfig lines for build-time choices that are not part of the appliance itself. */
function buildExtras(o: BuildOptions): string[] {
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

function makeEnv(dlDir: string): Record<string, string> {
  return { BR2_DL_DIR: dlDir, TERM: 'dumb', BR2_CCACHE_DIR: join(cacheDir(), 'ccache') };
}

export async function build(config: ApplianceConfig, o: BuildOptions = {}): Promise<BuildResult> {
  const arch = o.arch ?? config.arch;
  const make = o.make ?? process.env.APPLIANCE_MAKE ?? 'make';
  const buildroot = locateBuildroot(config.buildroot.version, o.buildroot);
  const layout = buildLayout(config, arch, o.out);
  const dlDir = resolve(o.dlDir ?? process.env.BR2_DL_DIR ?? join(cacheDir(), 'dl'));
  if (o.jobs !== undefined && (!Number.isInteger(o.jobs) || o.jobs < 0 || o.jobs > 512)) {
    throw new ApplianceError(`--jobs ${o.jobs} is not a number of jobs`, {
      hint: 'pass 0 (auto) or a positive number',
    });
  }
  mkdirSync(layout.out, { recursive: true });
  mkdirSync(dlDir, { recursive: true });

  // 1. The tree (reused when identical) and the defconfig with build-time extras.
  const tree = renderTree(config);
  writeTree(layout.external, tree);
  const treeDefconfig = readFileSync(join(layout.external, 'configs', defconfigName(config, arch)), 'utf8');
  const defconfigText = `${treeDefconfig}${buildExtras(o)
    .map((l) => `${l}\n`)
    .join('')}`;
  writeFileSync(layout.defconfig, defconfigText);

  // 2. Configure in a scratch O= to check the symbols and plan without touching the build.
  const scratch = mkdtempSync(join(tmpdir(), 'appliance-plan-'));
  let next: BuildSnapshot;
  try {
    await runCommand(
      make,
      [
        '-C',
        buildroot,
        `O=${scratch}`,
        `BR2_EXTERNAL=${layout.external}`,
        `BR2_DEFCONFIG=${layout.defconfig}`,
        'defconfig',
      ],
      {
        env: makeEnv(join(scratch, 'dl')),
        purpose: 'configuring Buildroot',
        timeoutMs: 5 * 60_000,
      },
    );
    const dotConfig = readFileSync(join(scratch, '.config'), 'utf8');
    const { mismatched } = compareConfigs(defconfigText, dotConfig);
    if (mismatched.length > 0) {
      const problems: SymbolProblem[] = mismatched.map(([symbol, wanted, got]) => ({
        symbol,
        wanted,
        got,
        reasons: [],
      }));
      await explainProblems(buildroot, scratch, problems);
      throw new ApplianceError(
        `Buildroot dropped or changed ${problems.length} requested symbol(s), so nothing was built`,
        {
          exitCode: ExitCode.checkFailed,
          hint: 'fix appliance.yaml',
          details: problems
            .map(
              (p) =>
                `  ${p.symbol}: wanted ${p.wanted}, got ${p.got ?? '(not set)'}: ${p.reasons.join('; ')}`,
            )
            .join('\n'),
        },
      );
    }
    next = {
      arch,
      config: snapshotConfig(dotConfig),
      tree: Object.fromEntries([...tree].map(([path, f]) => [path, sha256Of(f.content)])),
    };
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }

  // 3. Plan.
  const previous = existsSync(layout.state)
    ? (JSON.parse(readFileSync(layout.state, 'utf8')) as BuildState)
    : undefined;
  const builtBefore = existsSync(join(layout.build, '.config'));
  const plan: BuildPlan = o.clean
    ? { kind: 'clean', dirclean: [], reasons: ['--clean'], warnings: [] }
    : planBuild(previous?.snapshot, next, builtBefore, knownPackages(buildroot, layout.external));
  if (o.planOnly) return { plan, layout };

  // 4. Carry the plan out.
  if (plan.kind === 'clean' && existsSync(layout.build)) {
    info(`clean build: removing ${layout.build}`);
    rmSync(layout.build, { recursive: true, force: true });
  }
  writeFileSync(
    layout.state,
    `${JSON.stringify({ snapshot: previous?.snapshot ?? next, built: false }, null, 2)}\n`,
  );
  const common = ['-C', buildroot, `O=${layout.build}`, `BR2_EXTERNAL=${layout.external}`];
  await runCommand(make, [...common, `BR2_DEFCONFIG=${layout.defconfig}`, 'defconfig'], {
    env: makeEnv(dlDir),
    purpose: 'configuring Buildroot',
    timeoutMs: 5 * 60_000,
  });
  for (const pkg of plan.dirclean) {
    await runCommand(make, ['-C', layout.build, `${pkg}-dirclean`], {
      env: makeEnv(dlDir),
      purpose: `make ${pkg}-dirclean`,
      timeoutMs: 10 * 60_000,
    });
  }
  const order = await runCommand(make, ['-s', '-C', layout.build, 'show-build-order'], {
    env: makeEnv(dlDir),
    purpose: 'make show-build-order',
  });
  const total = order.stdout.split(/\s+/).filter(Boolean).length;
  if (existsSync(layout.log)) renameSync(layout.log, `${layout.log}.1`);
  const tracker = new ProgressTracker(total);
  const tty = process.stderr.isTTY && !o.json;
  let lastPkg = '';
  const show = (e: ProgressEvent) => {
    if (o.json) process.stdout.write(`${JSON.stringify(e)}\n`);
    else if (tty)
      process.stderr.write(`\r\u001b[K${formatProgress(e).slice(0, (process.stderr.columns ?? 120) - 1)}`);
    else if (e.pkg !== lastPkg || !e.pkg) process.stderr.write(`${formatProgress(e)}\n`);
    lastPkg = e.pkg;
  };
  const forget = noteOnInterrupt(
    `the build stopped; run the same 'appliance build' command to resume (the full log is ${layout.log})`,
  );
  const started = Date.now();
  const result = await runCommand(
    make,
    ['-C', layout.build, ...(o.jobs !== undefined ? [`BR2_JLEVEL=${o.jobs}`] : [])],
    {
      env: makeEnv(dlDir),
      logFile: layout.log,
      allowFailure: true,
      timeoutMs: 24 * 3600_000,
      onLine: (line) => {
        const e = tracker.feed(line);
        if (e) show(e);
      },
    },
  );
  forget();
  if (tty) process.stderr.write('\n');
  if (result.exitCode !== 0) {
    const d = diagnoseBuildLog(readFileSync(layout.log, 'utf8'), { out: layout.build, dlDir });
    const where = d.pkg
      ? `${d.pkg}${d.version ? ` ${d.version}` : ''} failed at the ${d.step} step`
      : `make failed (exit ${result.exitCode})`;
    if (o.json) process.stdout.write(`${JSON.stringify({ type: 'failed', ...d, log: layout.log })}\n`);
    throw new ApplianceError(`build failed: ${where}`, {
      exitCode: ExitCode.checkFailed,
      hint: `${d.nextStep}; full log: ${layout.log}`,
      details: [
        d.urls.length > 0 ? `URLs tried:\n${d.urls.map((u) => `  ${u}`).join('\n')}` : '',
        `log excerpt:\n${d.excerpt}`,
      ]
        .filter(Boolean)
        .join('\n'),
    });
  }
  tracker.finish();
  const manifest = await gatherArtifacts(config, arch, layout, next);
  writeFileSync(layout.state, `${JSON.stringify({ snapshot: next, built: true }, null, 2)}\n`);
  if (o.json)
    process.stdout.write(
      `${JSON.stringify({ type: 'done', seconds: Math.round((Date.now() - started) / 1000), manifest })}\n`,
    );
  return { plan, layout, manifest };
}

async function gatherArtifacts(
  config: ApplianceConfig,
  arch: Arch,
  layout: BuildLayout,
  snapshot: BuildSnapshot,
): Promise<ArtifactManifest> {
  const images = join(layout.build, 'images');
  const wanted = [arch === 'x86_64' ? 'bzImage' : 'Image', 'rootfs.squashfs'];
  const missing = wanted.filter((f) => !existsSync(join(images, f)));
  if (missing.length > 0) {
    throw new ApplianceError(`the build finished but ${missing.join(', ')} is missing in ${images}`, {
      exitCode: ExitCode.checkFailed,
      hint: 'check the defconfig (BR2_TARGET_ROOTFS_SQUASHFS, BR2_LINUX_KERNEL)',
    });
  }
  const staging = `${layout.artifacts}.partial`;
  rmSync(staging, { recursive: true, force: true });
  mkdirSync(staging, { recursive: true });
  const files: ArtifactManifest['files'] = [];
  for (const name of wanted) {
    copyFileSync(join(images, name), join(staging, name));
    files.push({
      name,
      bytes: statSync(join(staging, name)).size,
      sha256: await sha256File(join(staging, name)),
    });
  }
  const manifest: ArtifactManifest = {
    appliance: config.name,
    arch,
    configSha256: configSha256(snapshot.config),
    buildrootVersion: config.buildroot.version,
    files,
  };
  writeFileSync(join(staging, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`);
  rmSync(layout.artifacts, { recursive: true, force: true });
  renameSync(staging, layout.artifacts);
  return manifest;
}

/** Package symbols of the Buildroot tree and the external tree, from their package folders. */
function knownPackages(buildroot: string, external: string): Set<string> {
  const names: string[] = ['linux'];
  for (const root of [join(buildroot, 'package'), join(external, 'package')]) {
    if (existsSync(root))
      names.push(
        ...readdirSync(root, { withFileTypes: true })
          .filter((d) => d.isDirectory())
          .map((d) => d.name),
      );
  }
  return packageSymbols(names);
}

export function formatPlan(plan: BuildPlan): string {
  const what: Record<BuildPlan['kind'], string> = {
    first: 'first build: everything is built',
    'up-to-date': 'nothing changed: make only re-checks',
    incremental: 'incremental: make rebuilds what changed and re-packs the root filesystem',
    dirclean: `rebuild ${plan.dirclean.join(', ')} (make <pkg>-dirclean), then make`,
    clean: 'clean build: the build folder is removed and everything is rebuilt',
  };
  return [
    `plan: ${what[plan.kind]}`,
    ...plan.reasons.map((r) => `  because ${r}`),
    ...plan.warnings.map((w) => `  warning: ${w}`),
  ].join('\n');
}

/** Render the tree and configure Buildroot in a temporary O=, then hand both to `use`. */
async function withScratchConfig<T>(
  config: ApplianceConfig,
  o: BuildOptions,
  dlDir: string,
  use: (scratch: { make: string; out: string; external: string; buildroot: string }) => Promise<T>,
): Promise<T> {
  const arch = o.arch ?? config.arch;
  const make = o.make ?? process.env.APPLIANCE_MAKE ?? 'make';
  const buildroot = locateBuildroot(config.buildroot.version, o.buildroot);
  const work = mkdtempSync(join(tmpdir(), 'appliance-scratch-'));
  try {
    const external = join(work, 'external');
    writeTree(external, renderTree(config));
    const defconfig = join(work, 'defconfig');
    const extras = buildExtras(o).map((l) => `${l}\n`);
    writeFileSync(
      defconfig,
      `${readFileSync(join(external, 'configs', defconfigName(config, arch)), 'utf8')}${extras.join('')}`,
    );
    const out = join(work, 'o');
    await runCommand(
      make,
      ['-C', buildroot, `O=${out}`, `BR2_EXTERNAL=${external}`, `BR2_DEFCONFIG=${defconfig}`, 'defconfig'],
      {
        env: makeEnv(dlDir),
        purpose: 'configuring Buildroot',
      },
    );
    return await use({ make, out, external, buildroot });
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/** `appliance sbom`: a CycloneDX document from Buildroot's show-info; needs no build. */
export async function generateSbom(
  config: ApplianceConfig,
  o: BuildOptions & { includeHost?: boolean } = {},
): Promise<Record<string, unknown>> {
  const arch = o.arch ?? config.arch;
  const scratchDl = mkdtempSync(join(tmpdir(), 'appliance-sbom-dl-'));
  try {
    return await withScratchConfig(config, o, scratchDl, async ({ make, out }) => {
      const r = await runCommand(make, ['-s', '-C', out, 'show-info'], {
        env: makeEnv(scratchDl),
        purpose: 'make show-info',
        timeoutMs: 5 * 60_000,
      });
      let info: Record<string, ShowInfoEntry>;
      try {
        info = JSON.parse(r.stdout) as Record<string, ShowInfoEntry>;
      } catch {
        throw new ApplianceError("Buildroot's show-info did not print JSON", {
          exitCode: ExitCode.hostProblem,
          details: r.stdout.slice(0, 2000),
        });
      }
      const dotConfig = readFileSync(join(out, '.config'), 'utf8');
      return sbomFromShowInfo(
        info,
        {
          applianceName: config.name,
          arch,
          buildrootVersion: config.buildroot.version,
          configSha256: configSha256(dotConfig),
        },
        { includeHost: o.includeHost },
      );
    });
  } finally {
    rmSync(scratchDl, { recursive: true, force: true });
  }
}

/** `appliance source`: download every source for an air-gapped build; report each package that failed. */
export async function downloadSources(
  config: ApplianceConfig,
  o: BuildOptions = {},
): Promise<{ failed: { pkg: string; version: string }[]; dlDir: string }> {
  const dlDir = resolve(o.dlDir ?? process.env.BR2_DL_DIR ?? join(cacheDir(), 'dl'));
  mkdirSync(dlDir, { recursive: true });
  return withScratchConfig(config, o, dlDir, async ({ make, out }) => {
    const r = await runCommand(make, ['-k', '-C', out, 'source'], {
      env: makeEnv(dlDir),
      allowFailure: true,
      timeoutMs: 12 * 3600_000,
      logFile: join(dlDir, 'appliance-source.log'),
      onLine: (line) => {
        const p = parseProgressLine(line);
        if (p?.pkg && p.step === 'Downloading') info(`downloading ${p.pkg} ${p.version}`);
      },
    });
    const failed = [
      ...`${r.stdout}\n${r.stderr}`.matchAll(/\/build\/([^/\s]+)\/\.stamp_downloaded\] Error/g),
    ].map((m) => {
      const split = /^(.*?)-(\d[^/]*)$/.exec(m[1] ?? '');
      return { pkg: split?.[1] ?? m[1] ?? '', version: split?.[2] ?? '' };
    });
    return { failed, dlDir };
  });
}
