/**
 * Atomic, conservative writing of a rendered tree. A manifest (.appliance-render.json) records
 * what was generated; a re-render replaces exactly those files, keeps every file it did not
 * generate, refuses to overwrite generated files that were edited since (unless forced), and
 * swaps the whole tree in with renames so a failure never leaves a half-written tree.
 */
import {
  chmodSync,
  copyFileSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  realpathSync,
  renameSync,
  rmdirSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { basename, dirname, join, relative, resolve, sep } from 'node:path';
import { sha256Of } from './digest.js';
import { ApplianceError, ExitCode } from './errors.js';
import { outputDir } from './fsguard.js';

export const manifestName = '.appliance-render.json';

/** What made a tree: `appliance render` (external) or `appliance libvirt render` (libvirt). */
export type TreeKind = 'external' | 'libvirt';
const kindCommand: Record<TreeKind, string> = {
  external: 'appliance render',
  libvirt: 'appliance libvirt render',
};

/** The kind of a tree by its content (a br2-external tree has external.desc). */
export function treeKind(paths: Iterable<string>): TreeKind {
  for (const p of paths) if (p === 'external.desc') return 'external';
  return 'libvirt';
}

/** Longest path and file name Linux accepts (PATH_MAX includes the final NUL). */
const pathMax = 4095;
const nameMax = 255;

export interface TreeFile {
  content: Buffer;
  mode: 0o644 | 0o755;
}

export type Tree = Map<string, TreeFile>;

interface Manifest {
  generator: 'runner-appliance';
  /** Missing in manifests written before kinds existed: then told by the files. */
  kind?: TreeKind;
  files: Record<string, { sha256: string; mode: string }>;
}

export interface WriteResult {
  outDir: string;
  written: string[];
  removed: string[];
  kept: string[];
  unchanged: boolean;
}

export function manifestOf(tree: Tree, kind: TreeKind = treeKind(tree.keys())): Buffer {
  const files: Manifest['files'] = {};
  for (const path of [...tree.keys()].sort()) {
    const f = tree.get(path);
    if (f) files[path] = { sha256: sha256Of(f.content), mode: f.mode.toString(8) };
  }
  const manifest: Manifest = { generator: 'runner-appliance', kind, files };
  return Buffer.from(`${JSON.stringify(manifest, null, 2)}\n`);
}

function readManifest(dir: string): Manifest | undefined {
  const path = join(dir, manifestName);
  if (!existsSync(path)) return undefined;
  try {
    const m = JSON.parse(readFileSync(path, 'utf8')) as Manifest;
    if (m.generator !== 'runner-appliance' || typeof m.files !== 'object') throw new Error('bad manifest');
    return m;
  } catch {
    throw new ApplianceError(`${path} is not a runner-appliance render manifest`, {
      hint: 'render into an empty or new folder, or restore the manifest',
    });
  }
}

/** Every file and symlink under dir, as relative POSIX paths. */
function listFiles(dir: string, prefix = ''): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(join(dir, prefix), { withFileTypes: true })) {
    const rel = prefix ? `${prefix}/${entry.name}` : entry.name;
    if (entry.isDirectory()) out.push(...listFiles(dir, rel));
    else out.push(rel);
  }
  return out.sort();
}

function copyEntry(from: string, to: string): void {
  mkdirSync(dirname(to), { recursive: true });
  const st = lstatSync(from);
  if (st.isSymbolicLink()) symlinkSync(readlinkSync(from), to);
  else copyFileSync(from, to);
}

/** Compare the tree with what is on disk, without writing. */
export function diffTree(
  outDir: string,
  tree: Tree,
  kind: TreeKind = treeKind(tree.keys()),
): { changed: string[]; missing: string[]; extra: string[] } {
  const out = resolve(outDir);
  const changed: string[] = [];
  const missing: string[] = [];
  const full = new Map(tree);
  full.set(manifestName, { content: manifestOf(tree, kind), mode: 0o644 });
  for (const [path, file] of full) {
    const target = join(out, path);
    if (!existsSync(target)) {
      missing.push(path);
      continue;
    }
    const st = lstatSync(target);
    const mode = st.mode & 0o111 ? 0o755 : 0o644;
    if (!st.isFile() || mode !== file.mode || !readFileSync(target).equals(file.content)) changed.push(path);
  }
  const extra = existsSync(out) ? listFiles(out).filter((p) => !full.has(p)) : [];
  return { changed, missing, extra };
}

/** Whether `dir` is a mount point (a bind mount of the same file system included). */
function isMountPoint(dir: string): boolean {
  try {
    if (statSync(dir).dev !== statSync(dirname(dir)).dev) return true;
    const real = realpathSync(dir);
    const decodeOctal = (s: string) =>
      s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8)));
    return readFileSync('/proc/self/mountinfo', 'utf8')
      .split('\n')
      .some((line) => decodeOctal(line.split(' ')[4] ?? '') === real);
  } catch {
    return false;
  }
}

/** Refuse a tree whose paths the file system would reject, before anything is created. */
function checkPathLengths(staging: string, tree: Tree): void {
  for (const name of staging.split('/')) {
    if (Buffer.byteLength(name) > nameMax)
      throw new ApplianceError(`the folder name ${name.slice(0, 40)}… is longer than ${nameMax} bytes`, {
        hint: 'choose a shorter --out',
      });
  }
  let longest = '';
  for (const path of [...tree.keys(), manifestName]) if (path.length > longest.length) longest = path;
  const full = join(staging, longest);
  if (Buffer.byteLength(full) > pathMax) {
    throw new ApplianceError(
      `the tree's longest path would be ${Buffer.byteLength(full)} bytes, more than the ${pathMax} the file system allows`,
      { hint: `choose a --out shorter by at least ${Buffer.byteLength(full) - pathMax} bytes` },
    );
  }
}

export function writeTree(
  outDir: string,
  tree: Tree,
  options: { force?: boolean; kind?: TreeKind } = {},
): WriteResult {
  const kind = options.kind ?? treeKind(tree.keys());
  const out = outputDir('output folder', outDir, { refuseSystemRoots: true });
  const parent = dirname(out);
  const name = basename(out);
  for (const stale of existsSync(parent) ? readdirSync(parent) : []) {
    if (stale.startsWith(`.${name}.previous-`) && !existsSync(out)) {
      throw new ApplianceError(`an interrupted render left ${join(parent, stale)} and no ${out}`, {
        hint: `rename it back to ${out} and render again`,
      });
    }
  }
  let old: Manifest | undefined;
  let existing: string[] = [];
  const outExists = existsSync(out);
  if (outExists) {
    // Only the top level is read before the folder is known to be ours: `--out /` must not walk the system.
    const top = readdirSync(out);
    const leftover = top.find((f) => f.startsWith('.appliance-previous-'));
    if (leftover)
      throw new ApplianceError(`an interrupted render left ${join(out, leftover)}`, {
        hint: `move its contents back into ${out}, remove it, and render again`,
      });
    old = readManifest(out);
    if (!old && top.length > 0) {
      throw new ApplianceError(`${out} is not empty and was not rendered by appliance (no ${manifestName})`, {
        hint: 'choose an empty or new folder with --out',
      });
    }
    const oldKind = old ? (old.kind ?? treeKind(Object.keys(old.files))) : kind;
    if (oldKind !== kind) {
      throw new ApplianceError(`${out} holds a tree made by '${kindCommand[oldKind]}'`, {
        hint: `'${kindCommand[kind]}' would replace it: choose another --out`,
      });
    }
    existing = listFiles(out);
  }
  const oldFiles = old?.files ?? {};
  const edited: string[] = [];
  const kept: string[] = [];
  for (const path of existing) {
    if (path === manifestName) continue;
    const recorded = oldFiles[path];
    const next = tree.get(path);
    if (!recorded) {
      if (next) {
        throw new ApplianceError(
          `${join(out, path)} was not generated by appliance but the render would overwrite it`,
          {
            hint: 'move it out of the tree and render again',
          },
        );
      }
      kept.push(path);
      continue;
    }
    const current = lstatSync(join(out, path)).isFile() ? sha256Of(readFileSync(join(out, path))) : '';
    if (current !== recorded.sha256 && !(next && sha256Of(next.content) === current)) edited.push(path);
  }
  if (edited.length > 0 && !options.force) {
    throw new ApplianceError(
      `${edited.length} generated file(s) in ${out} were edited since they were rendered (${edited.slice(0, 3).join(', ')}${edited.length > 3 ? ', …' : ''})`,
      { hint: 'change appliance.yaml instead, move your edits away, or pass --force to overwrite them' },
    );
  }
  const manifest = manifestOf(tree, kind);
  const removed = Object.keys(oldFiles).filter((p) => !tree.has(p) && existing.includes(p));
  const diff = outExists ? diffTree(out, tree, kind) : undefined;
  if (diff && diff.changed.length === 0 && diff.missing.length === 0 && removed.length === 0) {
    return { outDir: out, written: [], removed: [], kept, unchanged: true };
  }
  // A mount point cannot be renamed: its contents are swapped inside it instead.
  const inPlace = outExists && isMountPoint(out);
  const staging = inPlace
    ? join(out, `.appliance-staging-${process.pid}`)
    : join(parent, `.${name}.staging-${process.pid}`);
  const previous = inPlace
    ? join(out, `.appliance-previous-${process.pid}`)
    : join(parent, `.${name}.previous-${process.pid}`);
  checkPathLengths(staging, tree);
  let made: string | undefined;
  try {
    if (!outExists) made = mkdirSync(parent, { recursive: true });
    rmSync(staging, { recursive: true, force: true });
    for (const [path, file] of [...tree, [manifestName, { content: manifest, mode: 0o644 }] as const]) {
      if (path.startsWith('/') || path.split('/').includes('..') || path.includes(sep === '/' ? '\0' : sep)) {
        throw new Error(`refusing to write outside the tree: ${path}`);
      }
      const target = join(staging, path);
      mkdirSync(dirname(target), { recursive: true });
      writeFileSync(target, file.content);
      chmodSync(target, file.mode);
    }
    for (const path of kept) copyEntry(join(out, path), join(staging, path));
    if (inPlace) swapContents(out, staging, previous);
    else if (outExists) {
      renameSync(out, previous);
      renameSync(staging, out);
      rmSync(previous, { recursive: true, force: true });
    } else {
      renameSync(staging, out);
    }
  } catch (e) {
    rmSync(staging, { recursive: true, force: true });
    if (made) rmSync(made, { recursive: true, force: true });
    if (e instanceof ApplianceError) throw e;
    throw new ApplianceError(`could not write ${out}: ${(e as Error).message}`, {
      hint: 'check the folder is writable and has free space; nothing was changed',
      exitCode: ExitCode.hostProblem,
    });
  }
  return { outDir: out, written: [...tree.keys()].sort(), removed, kept, unchanged: false };
}

/**
 * Replace the contents of `out` with those of `staging` (a folder inside it) by renames on one
 * file system: the old entries go into `previous`, the new ones take their place; on a failure
 * the old entries are put back.
 */
function swapContents(out: string, staging: string, previous: string): void {
  const skip = new Set([basename(staging), basename(previous)]);
  mkdirSync(previous);
  const moved: string[] = [];
  const placed: string[] = [];
  try {
    for (const entry of readdirSync(out)) {
      if (skip.has(entry)) continue;
      renameSync(join(out, entry), join(previous, entry));
      moved.push(entry);
    }
    for (const entry of readdirSync(staging)) {
      renameSync(join(staging, entry), join(out, entry));
      placed.push(entry);
    }
  } catch (e) {
    for (const entry of placed) rmSync(join(out, entry), { recursive: true, force: true });
    for (const entry of moved) renameSync(join(previous, entry), join(out, entry));
    rmdirSync(previous);
    throw e;
  }
  rmdirSync(staging);
  rmSync(previous, { recursive: true, force: true });
}

/** Read a folder into a Tree (regular files only; used for static overlays). */
export function readFolder(dir: string, into: string, tree: Tree): void {
  for (const path of listFiles(dir)) {
    const src = join(dir, path);
    const st = lstatSync(src);
    if (st.isSymbolicLink()) {
      throw new ApplianceError(`overlay file ${src} is a symbolic link`, {
        hint: 'replace it with a regular file, or create the link in a post-build script',
      });
    }
    if (!st.isFile()) {
      throw new ApplianceError(`overlay file ${src} is not a regular file`, {
        hint: 'an overlay holds regular files only: remove it (a FIFO or device would block the render)',
      });
    }
    const target = into ? `${into}/${path}` : path;
    if (tree.has(target))
      throw new ApplianceError(`overlay file ${relative(process.cwd(), src)} collides with ${target}`);
    tree.set(target, { content: readFileSync(src), mode: st.mode & 0o111 ? 0o755 : 0o644 });
  }
}
