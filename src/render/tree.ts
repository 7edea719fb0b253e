/**
 * Atomic, conservative writing of a rendered tree. A manifest (.appliance-render.json) records
 * what was generated; a re-render replaces exactly those files, keeps every file it did not
 * generate, refuses to overwrite generated files that were edited since (unless forced), and
 * swaps the whole tree in with renames so a failure never leaves a half-written tree.
 */
import { createHash } from 'node:crypto';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  renameSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { basename, dirname, join, relative, resolve, sep } from 'node:path';
import { ApplianceError } from '../errors.js';

export const manifestName = '.appliance-render.json';

export interface TreeFile {
  content: Buffer;
  mode: 0o644 | 0o755;
}

export type Tree = Map<string, TreeFile>;

interface Manifest {
  generator: 'runner-appliance';
  files: Record<string, { sha256: string; mode: string }>;
}

export interface WriteResult {
  outDir: string;
  written: string[];
  removed: string[];
  kept: string[];
  unchanged: boolean;
}

export function sha256(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex');
}

export function manifestOf(tree: Tree): Buffer {
  const files: Manifest['files'] = {};
  for (const path of [...tree.keys()].sort()) {
    const f = tree.get(path);
    if (f) files[path] = { sha256: sha256(f.content), mode: f.mode.toString(8) };
  }
  const manifest: Manifest = { generator: 'runner-appliance', files };
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
): { changed: string[]; missing: string[]; extra: string[] } {
  const out = resolve(outDir);
  const changed: string[] = [];
  const missing: string[] = [];
  const full = new Map(tree);
  full.set(manifestName, { content: manifestOf(tree), mode: 0o644 });
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

export function writeTree(outDir: string, tree: Tree, options: { force?: boolean } = {}): WriteResult {
  const out = resolve(outDir);
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
  if (existsSync(out)) {
    if (!lstatSync(out).isDirectory())
      throw new ApplianceError(`${out} exists and is not a folder`, { hint: 'choose another --out' });
    existing = listFiles(out);
    old = readManifest(out);
    if (!old && existing.length > 0) {
      throw new ApplianceError(`${out} is not empty and was not rendered by appliance (no ${manifestName})`, {
        hint: 'choose an empty or new folder with --out',
      });
    }
  } else {
    mkdirSync(parent, { recursive: true });
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
    const current = lstatSync(join(out, path)).isFile() ? sha256(readFileSync(join(out, path))) : '';
    if (current !== recorded.sha256 && !(next && sha256(next.content) === current)) edited.push(path);
  }
  if (edited.length > 0 && !options.force) {
    throw new ApplianceError(
      `${edited.length} generated file(s) in ${out} were edited since they were rendered (${edited.slice(0, 3).join(', ')}${edited.length > 3 ? ', …' : ''})`,
      { hint: 'change appliance.yaml instead, move your edits away, or pass --force to overwrite them' },
    );
  }
  const manifest = manifestOf(tree);
  const removed = Object.keys(oldFiles).filter((p) => !tree.has(p) && existing.includes(p));
  const diff = existsSync(out) ? diffTree(out, tree) : undefined;
  if (diff && diff.changed.length === 0 && diff.missing.length === 0 && removed.length === 0) {
    return { outDir: out, written: [], removed: [], kept, unchanged: true };
  }
  const staging = join(parent, `.${name}.staging-${process.pid}`);
  const previous = join(parent, `.${name}.previous-${process.pid}`);
  rmSync(staging, { recursive: true, force: true });
  try {
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
    if (existsSync(out)) {
      renameSync(out, previous);
      renameSync(staging, out);
      rmSync(previous, { recursive: true, force: true });
    } else {
      renameSync(staging, out);
    }
  } catch (e) {
    rmSync(staging, { recursive: true, force: true });
    if (e instanceof ApplianceError) throw e;
    throw new ApplianceError(`could not write ${out}: ${(e as Error).message}`, {
      hint: 'check the folder is writable and has free space; nothing was changed',
      exitCode: 3,
    });
  }
  return { outDir: out, written: [...tree.keys()].sort(), removed, kept, unchanged: false };
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
    const target = into ? `${into}/${path}` : path;
    if (tree.has(target))
      throw new ApplianceError(`overlay file ${relative(process.cwd(), src)} collides with ${target}`);
    tree.set(target, { content: readFileSync(src), mode: st.mode & 0o111 ? 0o755 : 0o644 });
  }
}
