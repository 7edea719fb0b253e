/**
 * `npm ci` needs every platform's optional packages in the lock (rollup, esbuild, biome ship one
 * native package per platform): a lock written over an existing node_modules can lack them, and
 * then `npm ci` fails on a clean clone ("Missing: @rollup/rollup-android-arm-eabi from lock file").
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { repoRoot } from '../helpers.js';

interface LockEntry {
  version?: string;
  dependencies?: Record<string, string>;
  devDependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
}
const lock = JSON.parse(readFileSync(join(repoRoot, 'package-lock.json'), 'utf8')) as {
  lockfileVersion: number;
  packages: Record<string, LockEntry>;
};
const pkg = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as LockEntry;

/** Where npm would find `name` from the package at `from` (node_modules lookup, innermost first). */
function resolves(from: string, name: string): boolean {
  let dir = from;
  for (;;) {
    if (lock.packages[`${dir ? `${dir}/` : ''}node_modules/${name}`]) return true;
    if (!dir) return false;
    const at = dir.lastIndexOf('node_modules/');
    dir = at <= 0 ? '' : dir.slice(0, at - 1);
  }
}

describe('package-lock.json', () => {
  it('holds every optional dependency of every locked package (all platforms)', () => {
    const missing: string[] = [];
    let optional = 0;
    for (const [path, entry] of Object.entries(lock.packages)) {
      for (const name of Object.keys(entry.optionalDependencies ?? {})) {
        optional++;
        if (!resolves(path, name)) missing.push(`${path || '(root)'} -> ${name}`);
      }
    }
    expect(missing).toEqual([]);
    expect(optional).toBeGreaterThan(20); // rollup alone has 20-odd platform packages
    for (const p of ['@rollup/rollup-darwin-arm64', '@rollup/rollup-linux-arm64-gnu', '@esbuild/darwin-x64'])
      expect(resolves('', p), p).toBe(true);
  });

  it("matches package.json's dependencies (npm ci refuses a lock out of sync)", () => {
    const root = lock.packages[''] ?? {};
    expect(lock.lockfileVersion).toBe(3);
    expect(root.dependencies).toEqual(pkg.dependencies);
    expect(root.devDependencies).toEqual(pkg.devDependencies);
  });

  it('pins biome and gitlab-ci-local to the versions package.json names', () => {
    expect(pkg.devDependencies?.['@biomejs/biome']).toBe('2.2.7');
    expect(lock.packages['node_modules/@biomejs/biome']?.version).toBe('2.2.7');
    expect(lock.packages['node_modules/gitlab-ci-local']?.version).toMatch(/^4\.55\./);
  });
});
