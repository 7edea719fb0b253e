/**
 * `npm run bench`: wall times of the main commands on the default appliance.yaml, printed as
 * figures (median of a few runs). Steps that need a Buildroot tree are skipped, with the reason,
 * when none is found. `npm run bench -- --smoke-only` runs only the stand-in smoke;
 * `--arch aarch64` smokes the arm64 stand-in (under qemu-system-aarch64) instead of the x86_64 one.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildrootVersionOf, cachedBuildrootDir } from './buildroot/index.js';
import { packageRoot } from './paths.js';

const cli = join(packageRoot(), 'dist', 'bin.js');

function time(args: string[], runs: number): { median: number; runs: number[] } {
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = process.hrtime.bigint();
    const r = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8' });
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    if (r.status !== 0) throw new Error(`appliance ${args.join(' ')} failed: ${r.stderr}`);
    times.push(seconds);
  }
  const sorted = [...times].sort((a, b) => a - b);
  return { median: sorted[Math.floor(sorted.length / 2)] ?? 0, runs: times };
}

function report(name: string, t: { median: number; runs: number[] }): void {
  process.stdout.write(
    `${name.padEnd(34)} median ${t.median.toFixed(2)} s  (runs: ${t.runs.map((r) => r.toFixed(2)).join(', ')})\n`,
  );
}

/** `--arch A` (or `--arch=A`): which stand-in to smoke. */
function standinArch(argv: readonly string[]): 'x86_64' | 'aarch64' {
  const i = argv.findIndex((a) => a === '--arch' || a.startsWith('--arch='));
  if (i < 0) return 'x86_64';
  const value = argv[i]?.startsWith('--arch=') ? argv[i]?.slice('--arch='.length) : argv[i + 1];
  if (value === 'x86_64' || value === 'aarch64') return value;
  process.stderr.write(
    `error: --arch ${value ?? '(nothing)'} is not an architecture: pass x86_64 or aarch64\n`,
  );
  process.exit(2);
}

const arch = standinArch(process.argv.slice(2));
const work = mkdtempSync(join(tmpdir(), 'appliance-bench-'));
try {
  process.stdout.write(
    `runner-appliance benchmarks (default appliance.yaml, ${process.arch}, node ${process.version})\n`,
  );
  // `npm run bench -- --smoke-only`: just the stand-in smoke.
  if (!process.argv.includes('--smoke-only')) benchCommands(work);
  benchStandin(work, arch);
} finally {
  rmSync(work, { recursive: true, force: true });
}

/** render, check and sbom on the default appliance.yaml. */
function benchCommands(work: string): void {
  report('render (fresh folder)', time(['render', '--out', join(work, 'a')], 1));
  report('render (up to date)', time(['render', '--out', join(work, 'a')], 5));
  const br = process.env.APPLIANCE_BUILDROOT ?? cachedBuildrootDir('2026.02.3');
  if (buildrootVersionOf(br) === '2026.02.3') {
    report('check (both arches)', time(['check', '--buildroot', br], 3));
    report('sbom', time(['sbom', '--buildroot', br, '--out', join(work, 'bom.json')], 3));
  } else {
    process.stdout.write(
      `check, sbom: skipped (no Buildroot 2026.02.3 at ${br}; run 'appliance buildroot fetch')\n`,
    );
  }
}

/** The stand-in image (a test fixture from Debian packages, not the Buildroot product) under TCG. */
function benchStandin(dir: string, arch: 'x86_64' | 'aarch64'): void {
  const script = join(packageRoot(), 'test', 'fixtures', 'standin', 'build-standin.sh');
  if (process.getuid?.() !== 0) {
    process.stdout.write('stand-in boot: skipped (building the stand-in image needs root)\n');
    return;
  }
  const built = spawnSync('bash', [script, '--arch', arch], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  if (built.status !== 0) {
    process.stdout.write('stand-in boot: skipped (the stand-in image could not be built; see above)\n');
    return;
  }
  const image = JSON.parse(built.stdout.trim().split('\n').pop() ?? '{}') as {
    kernel: string;
    rootfs: string;
  };
  const out = join(dir, 'smoke');
  const hold = 60;
  const smoke = ['smoke', '--kernel', image.kernel, '--rootfs', image.rootfs, '--accel', 'tcg', '--out', out];
  const t = time([...smoke, '--hold', String(hold)], 1);
  const timeline = JSON.parse(readFileSync(join(out, 'timeline.json'), 'utf8')) as {
    milestones: Record<string, number>;
    dockerActiveSource?: string;
    qemuRssKiB?: number;
    guestMemoryKiB?: number;
    idleSeconds?: number;
    qemuStartedAfter?: number;
    checks?: Record<string, [number, number]>;
    criticalChain?: string;
  };
  // The bare boot: QEMU start to docker.service active in the same boot, from the guest's clock.
  const dockerReady = timeline.milestones['docker-active'] ?? Number.NaN;
  // The whole command as a user waits for it (node start to exit), without the idle hold.
  const smokeWall = t.median - (timeline.idleSeconds ?? hold);
  const line = (label: string, value: string) =>
    process.stdout.write(`stand-in ${arch} (TCG): ${label.padEnd(50)} ${value}\n`);
  line('bare boot: QEMU start to docker.service active', `${dockerReady.toFixed(1)} s`);
  line('whole appliance smoke (wall, without --hold)', `${smokeWall.toFixed(1)} s`);
  line('smoke wall / bare Docker ready (target <= 1.15)', (smokeWall / dockerReady).toFixed(2));
  process.stdout.write(`  (Docker ready: ${timeline.dockerActiveSource ?? 'not measured'})\n`);
  // Where the rest went: preparation before QEMU, and when each check answered (from QEMU start).
  const answered = Object.entries(timeline.checks ?? {})
    .sort((a, b) => a[1][1] - b[1][1])
    .map(([name, [, end]]) => `${name} ${end.toFixed(1)}`);
  process.stdout.write(
    `  (QEMU started ${timeline.qemuStartedAfter?.toFixed(1)} s after the command; milestones ${Object.entries(
      timeline.milestones,
    )
      .map(([k, v]) => `${k} ${v.toFixed(1)}`)
      .join(', ')}; checks answered at ${answered.join(', ')})\n`,
  );
  // Gathered during the hold; the lines after systemd-analyze's two-line legend.
  const chain = (timeline.criticalChain ?? '').split('\n').slice(3).join('\n    ');
  if (chain) process.stdout.write(`stand-in ${arch} (TCG): boot critical chain\n    ${chain}\n`);
  if (timeline.qemuRssKiB && timeline.guestMemoryKiB) {
    process.stdout.write(
      `stand-in ${arch} (TCG): QEMU resident memory after ${hold} s idle ${(timeline.qemuRssKiB / 1024).toFixed(0)} MiB of ${(timeline.guestMemoryKiB / 1024).toFixed(0)} MiB guest memory (${((100 * timeline.qemuRssKiB) / timeline.guestMemoryKiB).toFixed(0)}%)\n`,
    );
  }
}
