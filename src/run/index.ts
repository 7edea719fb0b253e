/**
 * The one door to external processes. Every stage runs host tools through `runCommand`, which
 * logs the command under --verbose, applies a timeout, runs the tool in its own process group
 * (so Ctrl-C and timeouts reach make's and qemu's children), and turns failures into
 * ApplianceErrors that name the command, its exit status and the next step.
 */
import { createWriteStream, type WriteStream } from 'node:fs';
import { createInterface } from 'node:readline';
import { execa, type ResultPromise } from 'execa';
import { ApplianceError, ExitCode } from '../errors.js';
import { debug } from '../log.js';

export interface RunOptions {
  cwd?: string;
  /** Extra environment variables, merged over the current environment. */
  env?: Record<string, string | undefined>;
  /** Kill the whole process group after this many milliseconds (default: 10 minutes). */
  timeoutMs?: number;
  input?: string;
  /** Resolve with the exit code instead of throwing on a non-zero exit. */
  allowFailure?: boolean;
  /** Append stdout and stderr to this file as they arrive. */
  logFile?: string;
  /** Called for each output line as it arrives. */
  onLine?: (line: string, stream: 'stdout' | 'stderr') => void;
  /** What the failure means to the user, e.g. "make defconfig failed". */
  purpose?: string;
  /** The fix to suggest when the command fails. */
  hint?: string;
}

export interface RunResult {
  command: string;
  exitCode: number;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

/**
 * Debian package that provides each host tool we call, for "not found" errors
 * (test/install/host-tools.test.ts checks it against the calls, dpkg and .ci/run).
 */
export const providers: Record<string, string> = {
  // Buildroot's host requirements (doctor checks them)
  make: 'make',
  gcc: 'gcc',
  'g++': 'g++',
  patch: 'patch',
  perl: 'perl',
  bzip2: 'bzip2',
  unzip: 'unzip',
  rsync: 'rsync',
  bc: 'bc',
  file: 'file',
  which: 'debianutils',
  awk: 'gawk',
  wget: 'wget',
  git: 'git',
  tar: 'tar',
  gzip: 'gzip',
  cpio: 'cpio',
  cmp: 'diffutils',
  find: 'findutils',
  xargs: 'findutils',
  bash: 'bash',
  sh: 'dash',
  cp: 'coreutils',
  timeout: 'coreutils',
  xz: 'xz-utils',
  python3: 'python3',
  shellcheck: 'shellcheck',
  'qemu-system-x86_64': 'qemu-system-x86',
  'qemu-system-aarch64': 'qemu-system-arm',
  'qemu-img': 'qemu-utils',
  virsh: 'libvirt-clients',
  'virt-xml-validate': 'libvirt-clients',
  xmllint: 'libxml2-utils',
  mksquashfs: 'squashfs-tools',
  'mkfs.ext4': 'e2fsprogs',
  dumpe2fs: 'e2fsprogs',
  'systemd-analyze': 'systemd',
  debootstrap: 'debootstrap',
};

export function quoteArg(arg: string): string {
  return /^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replaceAll("'", `'\\''`)}'`;
}

export function formatCommand(file: string, args: readonly string[]): string {
  return [file, ...args].map(quoteArg).join(' ');
}

const active = new Set<ResultPromise>();
let signalsInstalled = false;
let interrupted = false;
const interruptNotes = new Set<string>();

/** Whether Ctrl-C or SIGTERM arrived; the handler then exits the process itself. */
export function wasInterrupted(): boolean {
  return interrupted;
}

/** A line to print if the user interrupts while it is registered (e.g. how to resume). */
export function noteOnInterrupt(note: string): () => void {
  interruptNotes.add(note);
  return () => {
    if (!interrupted) interruptNotes.delete(note);
  };
}

function killGroup(child: ResultPromise, signal: NodeJS.Signals): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    // The group is already gone.
  }
}

/** Terminate every running child's process group: SIGTERM, then SIGKILL after `graceMs`. */
export async function terminateAll(graceMs = 5000): Promise<void> {
  const children = [...active];
  for (const child of children) killGroup(child, 'SIGTERM');
  const deadline = Date.now() + graceMs;
  while (Date.now() < deadline && [...active].some((c) => c.exitCode === null && c.pid !== undefined)) {
    await new Promise((r) => setTimeout(r, 100));
  }
  for (const child of children) killGroup(child, 'SIGKILL');
}

/** Called once by the CLI: Ctrl-C or SIGTERM stops every running command's process group, then exits 130. */
export function installSignalHandlers(): void {
  if (signalsInstalled) return;
  signalsInstalled = true;
  const onSignal = (signal: NodeJS.Signals) => {
    if (interrupted) return;
    interrupted = true;
    process.stderr.write(`\ninterrupted (${signal}): stopping ${active.size} running command(s)…\n`);
    void terminateAll().finally(() => {
      for (const note of interruptNotes) process.stderr.write(`${note}\n`);
      process.exit(ExitCode.interrupted);
    });
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
}

export async function runCommand(
  file: string,
  args: readonly string[],
  options: RunOptions = {},
): Promise<RunResult> {
  const command = formatCommand(file, args);
  debug(`$ ${command}${options.cwd ? `   (in ${options.cwd})` : ''}`);
  const timeoutMs = options.timeoutMs ?? 10 * 60_000;
  let log: WriteStream | undefined;
  if (options.logFile) {
    log = createWriteStream(options.logFile, { flags: 'a' });
    log.write(`$ ${command}\n`);
  }
  const child = execa(file, args, {
    cwd: options.cwd,
    env: options.env,
    extendEnv: true,
    input: options.input,
    stdin: options.input === undefined ? 'ignore' : 'pipe',
    reject: false,
    detached: true,
    cleanup: true,
    stripFinalNewline: false,
    maxBuffer: 256 * 1024 * 1024,
  });
  active.add(child);
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    killGroup(child, 'SIGTERM');
    setTimeout(() => killGroup(child, 'SIGKILL'), 5000).unref();
  }, timeoutMs);
  for (const stream of ['stdout', 'stderr'] as const) {
    const s = child[stream];
    if (!s) continue;
    if (log) s.on('data', (chunk: Buffer) => log?.write(chunk));
    if (options.onLine) {
      const onLine = options.onLine;
      createInterface({ input: s }).on('line', (line) => onLine(line, stream));
    }
  }
  let result: Awaited<typeof child>;
  try {
    result = await child;
  } finally {
    clearTimeout(timer);
    active.delete(child);
    if (log) await new Promise<void>((r) => log?.end(r));
  }
  const errno = (result as { code?: string }).code;
  if (
    errno === 'ENOENT' ||
    (result.failed && /ENOENT/.test(result.message ?? '') && result.exitCode === undefined)
  ) {
    const pkg = providers[file.split('/').pop() ?? file];
    throw new ApplianceError(`host tool '${file}' not found`, {
      hint: pkg
        ? `install it with 'apt-get install ${pkg}' (see 'appliance doctor')`
        : "install it (see 'appliance doctor')",
      exitCode: ExitCode.hostProblem,
    });
  }
  const exitCode = result.exitCode ?? (result.signal ? 128 : 1);
  const out: RunResult = {
    command,
    exitCode,
    stdout: String(result.stdout ?? ''),
    stderr: String(result.stderr ?? ''),
    timedOut,
  };
  if (timedOut) {
    throw new ApplianceError(
      `${options.purpose ?? command} timed out after ${Math.round(timeoutMs / 1000)} s`,
      {
        hint: options.hint ?? 'rerun with --verbose to see the command',
        exitCode: ExitCode.hostProblem,
        details: tail(out.stdout + out.stderr, 20),
      },
    );
  }
  if (exitCode !== 0 && !options.allowFailure) {
    throw new ApplianceError(`${options.purpose ?? `'${command}'`} failed with exit status ${exitCode}`, {
      hint:
        options.hint ??
        (options.logFile ? `see ${options.logFile}` : 'rerun with --verbose for the full command'),
      exitCode: ExitCode.hostProblem,
      details: tail(out.stderr.trim() || out.stdout, 20),
    });
  }
  return out;
}

/** The last `n` lines of a text. */
export function tail(text: string, n: number): string {
  const lines = text.trimEnd().split('\n');
  return lines.slice(Math.max(0, lines.length - n)).join('\n');
}

/** Whether an executable is on PATH (or is an existing absolute path). */
export async function hasTool(file: string): Promise<boolean> {
  const r = await execa('sh', ['-c', `command -v ${quoteArg(file)}`], { reject: false });
  return r.exitCode === 0;
}

/** Run a command attached to this terminal (virsh console). Returns its exit code. */
export async function runInteractive(file: string, args: readonly string[]): Promise<number> {
  debug(`$ ${formatCommand(file, args)}`);
  const r = await execa(file, args, { stdio: 'inherit', reject: false });
  if ((r as { code?: string }).code === 'ENOENT') {
    throw new ApplianceError(`host tool '${file}' not found`, {
      hint: "see 'appliance doctor'",
      exitCode: ExitCode.hostProblem,
    });
  }
  return r.exitCode ?? 1;
}

export interface BackgroundProcess {
  pid: number | undefined;
  /** Resolves with the exit code (or 128+signal) when the process ends. */
  exited: Promise<number>;
  /** SIGTERM the process group, then SIGKILL after `graceMs`. */
  stop(graceMs?: number): Promise<number>;
  stderr(): string;
}

/**
 * Start a long-running process (qemu) in its own process group, registered so that Ctrl-C,
 * SIGTERM and `terminateAll` stop it. Output is captured (stderr kept for error messages).
 */
export function startBackground(
  file: string,
  args: readonly string[],
  options: { cwd?: string } = {},
): BackgroundProcess {
  debug(`$ ${formatCommand(file, args)} &`);
  const child = execa(file, args, {
    cwd: options.cwd,
    reject: false,
    detached: true,
    cleanup: true,
    stdin: 'ignore',
    buffer: false,
  });
  active.add(child);
  let err = '';
  child.stderr?.on('data', (d: Buffer) => {
    err = (err + d.toString()).slice(-8192);
  });
  child.stdout?.resume();
  const exited = (async () => {
    const r = await child;
    active.delete(child);
    if ((r as { code?: string }).code === 'ENOENT') return 127;
    return r.exitCode ?? (r.signal ? 128 : 1);
  })();
  return {
    pid: child.pid,
    exited,
    stderr: () => err,
    async stop(graceMs = 5000) {
      killGroup(child, 'SIGTERM');
      const timer = setTimeout(() => killGroup(child, 'SIGKILL'), graceMs);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
  };
}
