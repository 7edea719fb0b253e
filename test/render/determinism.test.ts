/**
 * `render` is deterministic across processes: two CLI runs, in separate processes with a
 * different working folder, time zone, locale and umask, write the same bytes and modes into
 * different folders, and both equal the committed external/ tree byte for byte. (Two renders in
 * one process would share every module-level state and prove much less.)
 */

import { spawn } from 'node:child_process';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cliPath, repoRoot, runCliAsync, tempDir } from '../helpers.js';

/** Every file under `dir`: relative path → [executable?, content]. */
function snapshot(dir: string): Map<string, [boolean, string]> {
  const files = new Map<string, [boolean, string]>();
  const walk = (d: string): void => {
    for (const entry of readdirSync(d, { withFileTypes: true })) {
      const path = join(d, entry.name);
      if (entry.isDirectory()) walk(path);
      else
        files.set(relative(dir, path), [(statSync(path).mode & 0o111) !== 0, readFileSync(path, 'latin1')]);
    }
  };
  walk(dir);
  return new Map([...files].sort(([a], [b]) => (a < b ? -1 : 1)));
}

/** Run the CLI from `cwd` with `env` and `umask` (runCliAsync always runs from the repository). */
function renderIn(
  cwd: string,
  out: string,
  env: Record<string, string>,
  umask: string,
): Promise<{ status: number; stderr: string }> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(
      'sh',
      [
        '-c',
        `umask ${umask} && exec "$0" "$@"`,
        process.execPath,
        cliPath,
        'render',
        '-c',
        join(repoRoot, 'appliance.yaml'),
        '--out',
        out,
      ],
      { cwd, env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let stderr = '';
    child.stderr.on('data', (d) => {
      stderr += String(d);
    });
    child.on('error', reject);
    child.on('close', (code) => resolvePromise({ status: code ?? -1, stderr }));
  });
}

describe('render in separate processes', () => {
  it('writes byte-identical trees, equal to the committed external/', async () => {
    const work = tempDir('appliance-determinism-');
    const [a, b] = await Promise.all([
      renderIn(work, join(work, 'a', 'external'), { TZ: 'UTC', LANG: 'C', LC_ALL: 'C' }, '022'),
      renderIn(
        tempDir('appliance-determinism-cwd-'),
        join(work, 'b', 'deeper', 'ext'),
        { TZ: 'Pacific/Kiritimati', LANG: 'de_DE.UTF-8', LC_ALL: 'de_DE.UTF-8' },
        '077',
      ),
    ]);
    expect(a.status, a.stderr).toBe(0);
    expect(b.status, b.stderr).toBe(0);
    const first = snapshot(join(work, 'a', 'external'));
    const second = snapshot(join(work, 'b', 'deeper', 'ext'));
    const committed = snapshot(join(repoRoot, 'external'));
    expect(first.size).toBeGreaterThan(30);
    expect([...second.keys()]).toEqual([...first.keys()]);
    expect([...committed.keys()]).toEqual([...first.keys()]);
    for (const [path, file] of first) {
      expect(second.get(path), path).toEqual(file);
      expect(
        committed.get(path),
        `${path}: run 'npm run build && node dist/bin.js render --out external'`,
      ).toEqual(file);
    }
    // A second run into the same folder finds nothing to change.
    const again = await runCliAsync([
      'render',
      '-c',
      join(repoRoot, 'appliance.yaml'),
      '--out',
      join(work, 'a', 'external'),
    ]);
    expect(again.status).toBe(0);
    expect(snapshot(join(work, 'a', 'external'))).toEqual(first);
  });
});
