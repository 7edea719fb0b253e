/**
 * globalSetup of the `vm` lane: when the aarch64 tier is among the files to run, start building
 * the arm64 stand-in (test/fixtures/standin/build-standin.sh --arch aarch64) in the background at
 * idle priority (nice 19). On a cold machine that build (a cross-built kernel, a root installed under
 * the emulator) then runs on the CPU the lanes leave idle — the TCG guests' waits, the host
 * lane's end — instead of all at once in the tier's beforeAll. The tier calls the same script,
 * which waits for this one (the cache lock) and then finds the image. On a warm machine the
 * script finds its cache and exits within seconds. A build still running when the run ends is
 * stopped with its whole process group (make, gcc, mmdebstrap, dpkg), so nothing is left behind.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, openSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import { commandExists, processRunning, repoRoot } from './helpers.js';

/** Why the background build is not started, or undefined. */
function notStarted(): string | undefined {
  if (process.env.APPLIANCE_SKIP_SMOKE_TIER) return 'APPLIANCE_SKIP_SMOKE_TIER is set';
  if (process.getuid?.() !== 0 || process.arch !== 'x64') return 'not root on x86_64';
  const absent = [
    'aarch64-linux-gnu-gcc',
    'qemu-aarch64-static',
    'mmdebstrap',
    'arch-test',
    'mksquashfs',
  ].filter((t) => !commandExists(t));
  return absent.length ? `missing ${absent.join(', ')}` : undefined;
}

export default async function setup(project: TestProject): Promise<(() => void) | undefined> {
  // The file filters of this run (`vitest run test/smoke/`): vitest 3.2 keeps them in an internal
  // field; without it every file of the lane counts, and the build starts.
  const filters = (project.vitest as unknown as { filenamePattern?: string[] }).filenamePattern;
  const { testFiles } = await project.globTestFiles(filters ?? []);
  if (!testFiles.some((f) => f.endsWith('/aarch64-tier.test.ts'))) return undefined;
  const why = notStarted();
  if (why) return undefined; // the tier itself says why it skips
  const dir = join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'runner-appliance', 'standin');
  mkdirSync(dir, { recursive: true });
  const log = join(dir, 'prebuild-aarch64.log');
  const fd = openSync(log, 'w');
  const child: ChildProcess = spawn(
    'nice',
    ['-n', '19', 'bash', join(repoRoot, 'test/fixtures/standin/build-standin.sh'), '--arch', 'aarch64'],
    { detached: true, stdio: ['ignore', fd, fd] },
  );
  const pid = child.pid;
  if (pid === undefined) return undefined;
  // A detached child gets a session of its own, and with the kernel's autogroup scheduling (on in
  // Debian's kernels) a session is a scheduling group of its own: its nice 19 then orders it only
  // against itself, and the build took half the CPU from the lanes (seen in a cold run: the x86_64
  // stand-in's kernel, which the vm lane waits for, built beside it at an equal share). The
  // group gets nice 19 too.
  try {
    writeFileSync(`/proc/${pid}/autogroup`, '19');
  } catch {
    // a kernel without autogroup scheduling: nice alone does it
  }
  process.stderr.write(
    `\n[prebuild] aarch64 stand-in: build-standin.sh --arch aarch64 started in the background at nice 19, its autogroup too (pid ${pid}; log ${log})\n`,
  );
  let done = false;
  child.on('exit', (code) => {
    done = true;
    process.stderr.write(`\n[prebuild] aarch64 stand-in: build-standin.sh exited ${code ?? 'by a signal'}\n`);
  });
  const stop = () => {
    if (done || !processRunning(pid)) return;
    try {
      process.kill(-pid, 'SIGTERM'); // its process group: bash, make, gcc, mmdebstrap, dpkg
    } catch {
      // already gone
    }
  };
  process.once('exit', stop);
  return stop;
}
