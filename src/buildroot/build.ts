/**
 * `appliance build`: write the rendered tree (from the caller), configure Buildroot with O= and
 * BR2_DL_DIR, check the symbols, plan the least rebuild, run make with a progress display and a
 * full log, diagnose a failure, and gather the images into an artifacts folder with a manifest.
 * One small function a step: the scratch configure (configure.ts), the plan, the build folder's
 * housekeeping, make, the artifacts.
 */
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { join, resolve } from 'node:path';
import type { ApplianceConfig, Arch } from '../config/index.js';
import { sha256File, sha256Of } from '../digest.js';
import { ApplianceError, ExitCode } from '../errors.js';
import { info } from '../log.js';
import { noteOnInterrupt, runCommand } from '../run/index.js';
import type { Tree } from '../tree.js';
import { buildExtras, type ConfigureOptions, downloadDir, makeEnv, withScratchConfig } from './configure.js';
import { diagnoseBuildLog } from './diagnose.js';
import { type BuildPlan, type BuildSnapshot, packageSymbols, planBuild, snapshotConfig } from './planner.js';
import { formatProgress, type ProgressEvent, ProgressTracker } from './progress.js';
import { configSha256 } from './sbom.js';

export interface BuildOptions extends ConfigureOptions {
  jobs?: number;
  dlDir?: string;
  out?: string;
  /** Start from scratch whatever the planner says. */
  clean?: boolean;
  planOnly?: boolean;
  /** Progress as JSON lines on stdout. */
  json?: boolean;
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

/** `appliance build` of the rendered `tree` (the caller renders it from `config`). */
export async function build(config: ApplianceConfig, tree: Tree, o: BuildOptions = {}): Promise<BuildResult> {
  const arch = o.arch ?? config.arch;
  const layout = buildLayout(config, arch, o.out);
  const dlDir = downloadDir(o);
  if (o.jobs !== undefined && (!Number.isInteger(o.jobs) || o.jobs < 0 || o.jobs > 512)) {
    throw new ApplianceError(`--jobs ${o.jobs} is not a number of jobs`, {
      hint: 'pass 0 (auto) or a positive number',
    });
  }
  buildExtras(o); // refuses a bad --mirror before anything is written
  mkdirSync(layout.out, { recursive: true });
  mkdirSync(dlDir, { recursive: true });

  // 1-2. The tree (reused when identical) and the defconfig with build-time extras in the build
  // folder, configured in a scratch O= to check the symbols and plan without touching the build.
  const { make, buildroot, next } = await withScratchConfig(
    config,
    tree,
    o,
    'nothing was built',
    async (s) => {
      const next: BuildSnapshot = {
        arch,
        config: snapshotConfig(s.dotConfig),
        tree: Object.fromEntries([...tree].map(([path, f]) => [path, sha256Of(f.content)])),
      };
      return { make: s.make, buildroot: s.buildroot, next };
    },
    { external: layout.external, defconfig: layout.defconfig },
  );

  // 3. Plan.
  const previous = existsSync(layout.state)
    ? (JSON.parse(readFileSync(layout.state, 'utf8')) as BuildState)
    : undefined;
  const builtBefore = existsSync(join(layout.build, '.config'));
  const plan: BuildPlan = o.clean
    ? { kind: 'clean', dirclean: [], reasons: ['--clean'], warnings: [] }
    : planBuild(previous?.snapshot, next, builtBefore, knownPackages(buildroot, layout.external));
  if (o.planOnly) return { plan, layout };

  // 4. Carry the plan out: prepare the build folder, make, gather the images.
  writeFileSync(
    layout.state,
    `${JSON.stringify({ snapshot: previous?.snapshot ?? next, built: false }, null, 2)}\n`,
  );
  const env = makeEnv(dlDir);
  const total = await prepareBuildFolder(make, buildroot, layout, plan, env);
  const started = Date.now();
  await runMake(make, layout, dlDir, o, total);
  const manifest = await gatherArtifacts(config, arch, layout, next);
  writeFileSync(layout.state, `${JSON.stringify({ snapshot: next, built: true }, null, 2)}\n`);
  if (o.json)
    process.stdout.write(
      `${JSON.stringify({ type: 'done', seconds: Math.round((Date.now() - started) / 1000), manifest })}\n`,
    );
  return { plan, layout, manifest };
}

/**
 * The plan's housekeeping in the build folder: remove it for a clean build, configure it, run
 * each `<pkg>-dirclean`. Returns the number of packages make will build (show-build-order).
 */
async function prepareBuildFolder(
  make: string,
  buildroot: string,
  layout: BuildLayout,
  plan: BuildPlan,
  env: Record<string, string>,
): Promise<number> {
  if (plan.kind === 'clean' && existsSync(layout.build)) {
    info(`clean build: removing ${layout.build}`);
    rmSync(layout.build, { recursive: true, force: true });
  }
  const common = ['-C', buildroot, `O=${layout.build}`, `BR2_EXTERNAL=${layout.external}`];
  await runCommand(make, [...common, `BR2_DEFCONFIG=${layout.defconfig}`, 'defconfig'], {
    env,
    purpose: 'configuring Buildroot',
    timeoutMs: 5 * 60_000,
  });
  for (const pkg of plan.dirclean) {
    await runCommand(make, ['-C', layout.build, `${pkg}-dirclean`], {
      env,
      purpose: `make ${pkg}-dirclean`,
      timeoutMs: 10 * 60_000,
    });
  }
  const order = await runCommand(make, ['-s', '-C', layout.build, 'show-build-order'], {
    env,
    purpose: 'make show-build-order',
  });
  return order.stdout.split(/\s+/).filter(Boolean).length;
}

/** The build itself: make with the full log, progress as it goes, and a diagnosis if it fails. */
async function runMake(
  make: string,
  layout: BuildLayout,
  dlDir: string,
  o: BuildOptions,
  total: number,
): Promise<void> {
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
    const d = diagnoseBuildLog(readFileSync(layout.log, 'utf8'), {
      out: layout.build,
      dlDir,
    });
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
