/**
 * `appliance smoke`: boot an image under QEMU (boot.ts), run the check table and the config's
 * `smoke.checks` over one SSH connection (checks.ts, runner.ts), and write the JUnit report, the
 * boot timeline and a summary (report.ts).
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { type ApplianceConfig, type Arch, emulatedPlatforms, nativePlatform } from '../config/index.js';
import { ApplianceError, ExitCode } from '../errors.js';
import { inputFile } from '../fsguard.js';
import {
  type AccelChoice,
  accelTimeoutScale,
  guestMachine,
  kernelImageArch,
  memoryMiB,
  requireKernelArch,
} from '../guest/index.js';
import { hasTool } from '../run/index.js';
import { type Booted, boot, prepare } from './boot.js';
import { builtinChecks, configChecks, diagnostics, platformChecks } from './checks.js';
import type { TestCase } from './junit.js';
import { type ReportFiles, reportFiles, writeReports, writeTimeline } from './report.js';
import { type CheckRun, runChecks } from './runner.js';
import { exec } from './ssh.js';

export interface SmokeOptions {
  kernel: string;
  rootfs: string;
  initrd?: string;
  dataDisk?: string;
  accel: AccelChoice;
  /** Seconds for boot and checks together (default: 180 with KVM, 600 with TCG). */
  timeoutSeconds?: number;
  junit?: string;
  /** Where the report files go. */
  outDir: string;
  /** A rootfs tarball to import as the test image (default: one made from a static busybox). */
  imageTar?: string;
  /** Docker platform → rootfs tarball of a static busybox of it, for the multiarch checks. */
  platformImages?: Record<string, string>;
  arch?: Arch;
  extraCmdline?: string[];
  /** Keep the VM idle this many seconds after the checks, then record QEMU's resident memory. */
  holdSeconds?: number;
}

export interface SmokeReport {
  accel: 'kvm' | 'tcg';
  passed: boolean;
  cases: TestCase[];
  milestones: Record<string, number>;
  files: ReportFiles;
}

/** What `milestones['docker-active']` means; `npm run bench` and the README quote it. */
export const dockerActiveSource =
  "QEMU start to docker.service's ActiveEnterTimestampMonotonic, mapped to host time by the guest's /proc/uptime read in the same SSH command";

/** Seconds from QEMU start to docker.service becoming active, from the guest's monotonic clock. */
function dockerActiveSeconds(run: CheckRun | undefined, bootedAt: number): number | undefined {
  if (run?.case.status !== 'passed' || !run.result || !run.endedAt) return undefined;
  const activeUs = Number(/^ActiveEnterTimestampMonotonic=(\d+)/m.exec(run.result.stdout)?.[1]);
  const uptime = Number(run.result.stdout.trim().split('\n').pop()?.split(/\s+/)[0]);
  if (!(uptime > 0 && activeUs > 0)) return undefined;
  // The clock is read last, right before the command ends: its answer's trip back is the error.
  return (run.endedAt - (uptime - activeUs / 1e6) * 1000 - bootedAt) / 1000;
}

export async function runSmoke(config: ApplianceConfig, o: SmokeOptions): Promise<SmokeReport> {
  const started = Date.now();
  const kernel = inputFile('--kernel', o.kernel);
  // The kernel image says what it is: without --arch that decides, and with it a mismatch is
  // refused at once (the other architecture's QEMU would print nothing until the timeout).
  const arch = o.arch ?? kernelImageArch(kernel) ?? config.arch;
  if (o.arch) requireKernelArch(kernel, o.arch, '--arch');
  const rootfs = inputFile('--rootfs', o.rootfs);
  const initrd = o.initrd ? inputFile('--initrd', o.initrd) : undefined;
  const dataDisk = o.dataDisk ? inputFile('--data-disk', o.dataDisk) : undefined;
  const imageTar = o.imageTar ? inputFile('--image-tar', o.imageTar) : undefined;
  const platformImages = Object.fromEntries(
    Object.entries(o.platformImages ?? {}).map(([p, path]) => [p, inputFile(`--platform-image ${p}`, path)]),
  );
  const { qemuBinary: qemu, qemuPackage } = guestMachine(arch);
  if (!(await hasTool(qemu))) {
    throw new ApplianceError(`host tool '${qemu}' not found`, {
      hint: `apt-get install ${qemuPackage}`,
      exitCode: ExitCode.hostProblem,
    });
  }
  mkdirSync(resolve(o.outDir), { recursive: true });
  const files = reportFiles(o.outDir, o.junit);
  rmSync(files.serial, { force: true });
  const work = mkdtempSync(join(tmpdir(), 'appliance-smoke-'));
  const input = {
    arch,
    kernel,
    rootfs,
    initrd,
    dataDisk,
    imageTar,
    platformImages,
    accel: o.accel,
    extraCmdline: o.extraCmdline,
    work,
  };
  const milestones: Record<string, number> = {};
  let accel: 'kvm' | 'tcg' = o.accel === 'kvm' ? 'kvm' : 'tcg';
  let booted: Booted | undefined;
  let cases: TestCase[] = [];
  let holdMs = 0;
  try {
    const prepared = await prepare(config, input);
    accel = prepared.accel;
    const timeoutSeconds = o.timeoutSeconds ?? (accel === 'kvm' ? 180 : 600);
    const deadline = Date.now() + timeoutSeconds * 1000;
    booted = await boot(config, input, prepared, {
      serial: files.serial,
      deadline,
      timeoutSeconds,
      milestones,
    });
    const { client, bootedAt } = booted;
    const execute = (command: string, timeoutMs: number, stdin?: Buffer) =>
      exec(client, command, timeoutMs, stdin);
    const context = {
      config,
      imageTar: prepared.imageTar,
      noImageReason: prepared.noImageReason,
      platformImages: prepared.platformImages,
      buildContext: prepared.buildContext,
    };
    const timeoutScale = accelTimeoutScale(accel);
    const multiarch = platformChecks(emulatedPlatforms(config, arch), nativePlatform[arch]);
    const runs = await runChecks(
      [...builtinChecks, ...multiarch, ...configChecks(config)],
      execute,
      context,
      { deadline, timeoutScale },
    );
    const named = (name: string) => runs.find((r) => r.check.name === name);
    const ended = (name: string) => named(name)?.endedAt;
    for (const [milestone, check] of [
      ['multi-user', 'boot.multi-user'],
      ['docker', 'docker.info'],
    ] as const) {
      const at = ended(check);
      if (at && named(check)?.case.status === 'passed') milestones[milestone] = (at - bootedAt) / 1000;
    }
    const dockerActive = dockerActiveSeconds(named('docker.active'), bootedAt);
    if (dockerActive !== undefined) milestones['docker-active'] = dockerActive;
    cases = runs.filter((r) => !r.check.informational).map((r) => r.case);
    const held = Date.now();
    const extra =
      o.holdSeconds || cases.some((c) => c.status === 'failed')
        ? await runChecks(diagnostics, execute, context, { deadline: Date.now() + 180_000, timeoutScale })
        : [];
    const diagnosed = (name: string) => extra.find((r) => r.check.name === name)?.result?.stdout.trim();
    let memory: { qemuRssKiB: number; guestMemoryKiB: number; idleSeconds: number } | undefined;
    if (o.holdSeconds && booted.vm.pid) {
      // The diagnostics ran during the hold (the VM is kept anyway); idle for what is left of it.
      await new Promise((r) => setTimeout(r, Math.max(0, held + (o.holdSeconds ?? 0) * 1000 - Date.now())));
      const status = readFileSync(`/proc/${booted.vm.pid}/status`, 'utf8');
      holdMs = Date.now() - held;
      memory = {
        qemuRssKiB: Number(/VmRSS:\s+(\d+)/.exec(status)?.[1]),
        guestMemoryKiB: memoryMiB(config) * 1024,
        idleSeconds: holdMs / 1000,
      };
    }
    // The given data disk is never written (an overlay or a throwaway disk takes the writes), so
    // nothing needs a clean shutdown: stop QEMU at once.
    client.end();
    await booted.vm.stop();
    writeTimeline(files.timeline, {
      accel,
      milestones,
      dockerActiveSource,
      wallSeconds: (Date.now() - started - holdMs) / 1000,
      ...memory,
      systemdAnalyze: named('systemd-analyze')?.result?.stdout.trim(),
      blame: diagnosed('systemd-analyze.blame'),
      criticalChain: diagnosed('systemd-analyze.critical-chain'),
      qemuStartedAfter: (bootedAt - started) / 1000,
      checks: Object.fromEntries(
        [...runs, ...extra]
          .filter((r) => r.startedAt && r.endedAt)
          .map((r) => [
            r.check.name,
            [((r.startedAt ?? 0) - bootedAt) / 1000, ((r.endedAt ?? 0) - bootedAt) / 1000],
          ]),
      ),
    });
  } catch (e) {
    if (e instanceof ApplianceError && e.exitCode === ExitCode.hostProblem && cases.length === 0)
      writeTimeline(files.timeline, { accel, milestones, error: e.message });
    throw e;
  } finally {
    if (booted) await booted.vm.stop();
    rmSync(work, { recursive: true, force: true });
  }
  const passed = cases.every((c) => c.status !== 'failed');
  writeReports(files, {
    accel,
    passed,
    cases,
    milestones,
    properties: { arch, kernel, rootfs },
    startedAt: started,
    seconds: (Date.now() - started - holdMs) / 1000,
  });
  return { accel, passed, cases, milestones, files };
}
