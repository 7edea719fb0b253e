/**
 * The package as npm packs it works: `npm pack`, install the tarball into an empty folder, and
 * run `appliance render`, `validate` and (with a Buildroot tree) `check` from there. A file the
 * CLI reads at run time but "files" in package.json leaves out fails here with ENOENT.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { repoRoot, skipReason, spawnCollect, tempDir, testBuildroot } from '../helpers.js';

/** Run a command in a folder without blocking the worker; rejects on a non-zero exit. */
async function run(file: string, args: string[], cwd: string, env: NodeJS.ProcessEnv): Promise<string> {
  const r = await spawnCollect(file, args, { cwd, env });
  if (r.status !== 0)
    throw new Error(`${file} ${args.join(' ')} exited ${r.status}: ${r.stderr.slice(-3000)}`);
  return r.stdout;
}

const npm = 'npm';
const noNpm = spawnSync(npm, ['--version'], { encoding: 'utf8' }).status !== 0;

describe.skipIf(skipReason('packaging tier', noNpm ? 'npm not found' : undefined))(
  'the packed package',
  () => {
    const dir = tempDir('appliance-pack-');
    const app = join(dir, 'app');
    const bin = join(app, 'node_modules', '.bin', 'appliance');
    const env = { ...process.env, npm_config_audit: 'false', npm_config_fund: 'false' };

    it('packs and installs into an empty folder', async () => {
      // --ignore-scripts: dist/ was built by npm test's tsc step; prepare would rebuild it here.
      const out = await run(
        npm,
        ['pack', '--ignore-scripts', '--pack-destination', dir, '--json'],
        repoRoot,
        env,
      );
      const packs = JSON.parse(out) as { filename: string; files: { path: string }[] }[];
      const { filename, files } = packs[0] ?? { filename: '', files: [] };
      const packed = new Set(files.map((f) => f.path));
      for (const f of [
        'dist/bin.js',
        'src/render/templates/external/external.desc.ejs',
        'src/buildroot/explain.py',
        'appliance.yaml',
        'buildroot/pin.json',
      ])
        expect(packed, f).toContain(f);
      expect([...packed].filter((f) => f.startsWith('test/') || f.startsWith('node_modules/'))).toEqual([]);
      mkdirSync(app);
      writeFileSync(join(app, 'package.json'), '{"name": "pack-test", "private": true}\n');
      // From the npm cache where it can (npm test ran npm ci before); the registry otherwise.
      await run(npm, ['install', '--prefer-offline', '--no-save', join(dir, filename)], app, env);
      expect(existsSync(bin)).toBe(true);
    }, 300_000);

    it('renders and validates from the installed package', async () => {
      const r = spawnSync(bin, ['render', '--out', join(dir, 'external')], { cwd: app, encoding: 'utf8' });
      expect(r.stderr).not.toMatch(/ENOENT|unexpected/);
      expect(r.status, r.stderr).toBe(0);
      expect(readFileSync(join(dir, 'external', 'external.desc'), 'utf8')).toMatch(/^name:/m);
      expect(readdirSync(join(dir, 'external')).length).toBeGreaterThan(3);
      const v = spawnSync(bin, ['validate'], { cwd: app, encoding: 'utf8' });
      expect(v.status, v.stderr).toBe(0);
    }, 120_000);

    const { dir: buildroot, skip } = testBuildroot('packaging tier: appliance check');
    it.skipIf(skip)(
      'checks from the installed package (Buildroot symbols, check-package with explain.py, units)',
      async () => {
        const r = spawnSync(bin, ['check', '--buildroot', buildroot, '--arch', 'x86_64'], {
          cwd: app,
          encoding: 'utf8',
          timeout: 600_000,
        });
        expect(r.stderr).not.toMatch(/ENOENT|unexpected/);
        expect(r.status, r.stdout + r.stderr).toBe(0);
      },
      600_000,
    );
  },
);
