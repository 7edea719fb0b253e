import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildrootVersionOf, cachedBuildrootDir } from '../src/buildroot/index.js';

export const repoRoot = fileURLToPath(new URL('..', import.meta.url));
export const cliPath = join(repoRoot, 'dist', 'bin.js');

export function tempDir(prefix = 'appliance-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export interface CliResult {
  status: number;
  stdout: string;
  stderr: string;
}

/** Run the built CLI (npm test compiles it first). */
export function runCli(
  args: string[],
  options: { cwd?: string; env?: Record<string, string> } = {},
): CliResult {
  if (!existsSync(cliPath)) throw new Error(`${cliPath} is missing: run 'npm run build' (npm test does it)`);
  const r = spawnSync(process.execPath, [cliPath, ...args], {
    cwd: options.cwd ?? repoRoot,
    env: { ...process.env, ...options.env },
    encoding: 'utf8',
    timeout: 300_000,
  });
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** Print why a heavy tier is skipped, so a skip is never silent. */
export function skipReason(tier: string, reason: string | undefined): boolean {
  if (reason) process.stderr.write(`\n[skip] ${tier}: ${reason}\n`);
  return reason !== undefined;
}

export function commandExists(cmd: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/**
 * Run a command and collect its output without blocking the event loop. With `seconds`, a command
 * still running then is killed (SIGKILL) and resolves with status -1, so a hang fails a test
 * instead of stalling the run.
 */
export function spawnCollect(
  file: string,
  args: string[],
  options: { env?: NodeJS.ProcessEnv; cwd?: string; input?: string; seconds?: number } = {},
): Promise<CliResult> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(file, args, {
      cwd: options.cwd,
      env: options.env ?? process.env,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => {
      stdout += String(d);
    });
    child.stderr.on('data', (d) => {
      stderr += String(d);
      if (process.env.APPLIANCE_TEST_VERBOSE) process.stderr.write(d);
    });
    const timer =
      options.seconds === undefined
        ? undefined
        : setTimeout(() => child.kill('SIGKILL'), options.seconds * 1000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolvePromise({ status: code ?? -1, stdout, stderr });
    });
    // A command that exits before reading its input closes the pipe: EPIPE here is not a failure
    // of the test (its exit status says what happened), and unhandled it would fail the whole run.
    child.stdin.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code !== 'EPIPE') reject(e);
    });
    child.stdin.end(options.input ?? '');
  });
}

/** Like runCli, without blocking the event loop (for commands that take minutes). */
export function runCliAsync(
  args: string[],
  options: { env?: Record<string, string> } = {},
): Promise<CliResult> {
  return spawnCollect(process.execPath, [cliPath, ...args], {
    cwd: repoRoot,
    env: { ...process.env, ...options.env },
  });
}

/** The Buildroot 2026.02.3 tree the heavy tiers use, and why a tier must skip without it. */
export function testBuildroot(tier: string): { dir: string; skip: boolean } {
  const dir = process.env.APPLIANCE_BUILDROOT ?? cachedBuildrootDir('2026.02.3');
  const skip = skipReason(
    tier,
    buildrootVersionOf(dir) === '2026.02.3'
      ? undefined
      : `no Buildroot 2026.02.3 at ${dir} (run 'appliance buildroot fetch' or set APPLIANCE_BUILDROOT)`,
  );
  return { dir, skip };
}

/** A snapshot of a folder's top level (names and modification times), to prove it was not written. */
/** `<PREFIX>_VERSION = x` from Buildroot's own package/<pkg>/<pkg>.mk: the version it builds. */
export function buildrootPackageVersion(buildroot: string, pkg: string): string {
  const mk = readFileSync(join(buildroot, 'package', pkg, `${pkg}.mk`), 'utf8');
  const prefix = pkg.toUpperCase().replaceAll('-', '_');
  const version = new RegExp(`^${prefix}_VERSION\\s*=\\s*(\\S+)\\s*$`, 'm').exec(mk)?.[1];
  if (!version) throw new Error(`no ${prefix}_VERSION in package/${pkg}/${pkg}.mk`);
  return version;
}

export function topLevel(dir: string): string {
  return readdirSync(dir)
    .sort()
    .map((f) => `${f}:${statSync(join(dir, f)).mtimeMs}`)
    .join(',');
}

/** Whether a process is still running (a zombie waiting for its reaper counts as gone). */
export function processRunning(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

/**
 * Run a command without blocking the event loop (vitest's worker must keep answering its
 * runner; a synchronous call of a minute makes it report an error). Rejects on a non-zero exit.
 */
export async function execAsync(
  file: string,
  args: string[],
  options: { env?: NodeJS.ProcessEnv; input?: string } = {},
): Promise<string> {
  const r = await spawnCollect(file, args, options);
  if (r.status !== 0)
    throw new Error(`${file} ${args.join(' ')} exited ${r.status}: ${r.stderr.slice(-2000)}`);
  return r.stdout;
}

/** QEMU processes whose command line mentions `marker` (a run's output folder): what a run left behind. */
export function qemuWith(marker: string): string {
  return spawnSync('sh', ['-c', `pgrep -a qemu-system | grep -F -- '${marker}' || true`], {
    encoding: 'utf8',
  }).stdout.trim();
}
