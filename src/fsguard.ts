/**
 * The one place that checks a path a user gave before any work starts: its kind (file, folder,
 * FIFO, device), whether it exists, whether it is readable or writable, and whether it lies on a
 * real file system. Reading a FIFO without a writer blocks forever and a recursive mkdir on
 * procfs spins; both happen inside one synchronous call where Ctrl-C cannot reach the handler,
 * so such paths are refused here, with one line naming the path and the fix.
 */
import {
  accessSync,
  closeSync,
  constants,
  fstatSync,
  lstatSync,
  openSync,
  readFileSync,
  realpathSync,
  renameSync,
  rmSync,
  type Stats,
  statfsSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { homedir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { ApplianceError, ExitCode } from './errors.js';

/** Kernel pseudo file systems (statfs f_type), where nothing of ours can be read or written. */
const pseudoFs: Record<number, string> = {
  40864: 'procfs',
  1650812274: 'sysfs',
  2613483: 'cgroupfs',
  1667723888: 'cgroup2fs',
  1684170528: 'debugfs',
  1953653091: 'tracefs',
  1935894131: 'securityfs',
  1650812272: 'configfs',
  3405662737: 'bpffs',
  1634035564: 'pstorefs',
  3730735588: 'efivarfs',
  7377: 'devpts',
};
const virtualRoots = ['/proc', '/sys', '/dev'];

/** Folders a render or build must never take over (it would replace or walk the system). */
function systemRoots(): Set<string> {
  const roots = [
    '/',
    '/bin',
    '/boot',
    '/dev',
    '/etc',
    '/home',
    '/lib',
    '/lib32',
    '/lib64',
    '/media',
    '/mnt',
    '/opt',
    '/proc',
    '/root',
    '/run',
    '/sbin',
    '/srv',
    '/sys',
    '/tmp',
    '/usr',
    '/usr/bin',
    '/usr/lib',
    '/usr/local',
    '/usr/sbin',
    '/usr/share',
    '/var',
    '/var/lib',
    '/var/tmp',
    homedir(),
  ];
  return new Set(roots.map((r) => resolve(r)));
}

const within = (path: string, root: string) => path === root || path.startsWith(`${root}/`);

/** A value as shown in an error line: quoted, and cut to ~80 characters. */
export function shownValue(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 80 ? `${text.slice(0, 60)}…(${text.length} characters)` : text;
}

function statOrUndefined(path: string, follow = true): Stats | undefined {
  try {
    return follow ? statSync(path) : lstatSync(path);
  } catch {
    return undefined;
  }
}

function kindOf(st: Stats): string {
  if (st.isFile()) return 'a file';
  if (st.isDirectory()) return 'a folder';
  if (st.isFIFO()) return 'a FIFO';
  if (st.isSocket()) return 'a socket';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isSymbolicLink()) return 'a dangling symbolic link';
  return 'not a regular file';
}

/** The nearest existing ancestor of `path` (the path itself when it exists), and its real path. */
function nearestExisting(path: string): { existing: string; real: string } {
  let p = resolve(path);
  for (let i = 0; i < 4096; i++) {
    if (statOrUndefined(p, false)) {
      let real = p;
      try {
        real = realpathSync(p);
      } catch {
        real = p;
      }
      return { existing: p, real };
    }
    const up = dirname(p);
    if (up === p) break;
    p = up;
  }
  return { existing: '/', real: '/' };
}

/** Why `path` lies on a kernel pseudo file system, or undefined when it does not. */
function pseudoProblem(path: string): string | undefined {
  const { existing, real } = nearestExisting(path);
  const rest = resolve(path).slice(existing.length);
  const full = resolve(real + rest);
  for (const root of virtualRoots) if (within(full, root)) return `is under ${root}`;
  try {
    const fs = pseudoFs[Number(statfsSync(existing).type)];
    if (fs) return `is on ${fs}`;
  } catch {
    // statfs is not available: the path check above is all we can do.
  }
  return undefined;
}

function fail(what: string, path: string, problem: string, hint: string): never {
  throw new ApplianceError(`${what} ${path} ${problem}`, { hint });
}

/** An existing regular file we can read (config, kernel, image, credential). Returns its absolute path. */
export function inputFile(what: string, path: string, hint = 'pass an existing regular file'): string {
  const abs = resolve(path);
  const st = statOrUndefined(abs);
  if (!st) fail(what, path, 'does not exist', hint);
  if (!st.isFile()) fail(what, path, `is ${kindOf(st)}, not a regular file`, hint);
  const pseudo = pseudoProblem(abs);
  if (pseudo) fail(what, path, `${pseudo}, not on a real file system`, hint);
  try {
    accessSync(abs, constants.R_OK);
  } catch {
    fail(what, path, 'is not readable', hint);
  }
  return abs;
}

/** Read a file checked by inputFile, without ever blocking on a FIFO that appeared meanwhile. */
export function readInputFile(what: string, path: string, hint?: string): Buffer {
  const abs = inputFile(what, path, hint);
  let fd: number;
  try {
    fd = openSync(abs, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (e) {
    fail(what, path, `cannot be opened (${(e as NodeJS.ErrnoException).code})`, hint ?? 'check the file');
  }
  try {
    if (!fstatSync(fd).isFile()) fail(what, path, 'is not a regular file', hint ?? 'pass a regular file');
    return readFileSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** An existing folder (Buildroot tree, artifacts, download folder). Returns its absolute path. */
export function inputDir(what: string, path: string, hint = 'pass an existing folder'): string {
  const abs = resolve(path);
  const st = statOrUndefined(abs);
  if (!st) fail(what, path, 'does not exist', hint);
  if (!st.isDirectory()) fail(what, path, `is ${kindOf(st)}, not a folder`, hint);
  const pseudo = pseudoProblem(abs);
  if (pseudo) fail(what, path, `${pseudo}, not on a real file system`, hint);
  return abs;
}

function requireWritable(what: string, path: string, dir: string, hint: string): void {
  try {
    accessSync(dir, constants.W_OK);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    fail(
      what,
      path,
      code === 'EROFS'
        ? `is on a read-only file system (${dir})`
        : `cannot be written (${dir} is not writable)`,
      hint,
    );
  }
}

/**
 * A folder to write into (render, build, report): a folder or nothing yet, on a real writable
 * file system; `systemRoots` also refuses `/`, `/usr`, the home folder and the like.
 */
export function outputDir(
  what: string,
  path: string,
  options: { refuseSystemRoots?: boolean; hint?: string } = {},
): string {
  const hint = options.hint ?? `choose another ${what}`;
  const abs = resolve(path);
  const pseudo = pseudoProblem(abs);
  if (pseudo) fail(what, path, `${pseudo}, not on a real file system`, hint);
  if (options.refuseSystemRoots) {
    const real = nearestExisting(abs).existing === abs ? nearestExisting(abs).real : abs;
    if (systemRoots().has(abs) || systemRoots().has(real))
      fail(
        what,
        path,
        'is a system folder that appliance will not write into',
        'choose a new or empty folder',
      );
  }
  const st = statOrUndefined(abs);
  if (st) {
    if (!st.isDirectory()) fail(what, path, `exists and is ${kindOf(st)}, not a folder`, hint);
    requireWritable(what, path, abs, hint);
    return abs;
  }
  const { existing } = nearestExisting(abs);
  const up = statOrUndefined(existing);
  if (!up?.isDirectory())
    fail(what, path, `cannot be created: ${existing} is ${up ? kindOf(up) : 'missing'}, not a folder`, hint);
  requireWritable(what, path, existing, hint);
  return abs;
}

/** A file to write (--out FILE): a regular file or nothing yet, in an existing writable folder. */
export function outputFile(what: string, path: string, hint = `choose another ${what}`): string {
  const abs = resolve(path);
  const pseudo = pseudoProblem(abs);
  if (pseudo) fail(what, path, `${pseudo}, not on a real file system`, hint);
  const st = statOrUndefined(abs);
  if (st?.isDirectory()) fail(what, path, 'is a folder; name a file', hint);
  if (st && !st.isFile()) fail(what, path, `is ${kindOf(st)}, not a regular file`, hint);
  const dir = dirname(abs);
  const up = statOrUndefined(dir);
  if (!up) fail(what, path, `cannot be written: folder ${dir} does not exist`, 'create it first');
  if (!up.isDirectory()) fail(what, path, `cannot be written: ${dir} is ${kindOf(up)}, not a folder`, hint);
  requireWritable(what, path, dir, hint);
  return abs;
}

/**
 * Write command output to `--out FILE` (checked with outputFile first, atomically: a temporary
 * file in the same folder renamed into place, removed on failure), or to stdout without `--out`.
 */
export function writeOutput(what: string, path: string | undefined, text: string | Buffer): void {
  if (path === undefined) {
    process.stdout.write(text);
    return;
  }
  const abs = outputFile(what, path);
  const temp = join(dirname(abs), `.${basename(abs)}.tmp-${process.pid}`);
  try {
    writeFileSync(temp, text, { flag: 'wx', mode: 0o644 });
    renameSync(temp, abs);
  } catch (e) {
    rmSync(temp, { force: true });
    throw new ApplianceError(`could not write ${abs}: ${(e as Error).message}`, {
      hint: 'check the folder is writable and has free space; nothing was changed',
      exitCode: ExitCode.hostProblem,
    });
  }
}
