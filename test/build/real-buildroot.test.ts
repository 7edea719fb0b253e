/**
 * `appliance build` and `appliance sbom` against the real Buildroot 2026.02.3 tree, offline: the
 * build configures, passes the symbol check, starts, and fails at the first download with a
 * diagnosis naming the package and the URL. Downloads go only to a closed port on 127.0.0.1
 * (--mirror … --mirror-only), so nothing leaves this machine. The Buildroot tree is not written.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadAppliance } from '../../src/config/index.js';
import { externalPackages } from '../../src/render/packages.js';
import { freePort } from '../../src/smoke/index.js';
import {
  buildrootPackageVersion,
  repoRoot,
  runCliAsync,
  tempDir,
  testBuildroot,
  topLevel,
} from '../helpers.js';

const { dir: buildroot, skip } = testBuildroot('real Buildroot build tier');

describe.skipIf(skip)('appliance build with Buildroot 2026.02.3, offline', () => {
  it('configures, passes the check, starts and fails at the first download naming the package and URL', async () => {
    const before = topLevel(buildroot);
    const out = join(tempDir(), 'out');
    const mirror = `http://127.0.0.1:${await freePort()}/mirror`;
    const r = await runCliAsync([
      'build',
      '--buildroot',
      buildroot,
      '--out',
      out,
      '--dl-dir',
      join(out, '..', 'dl'),
      '--mirror',
      mirror,
      '--mirror-only',
      '--jobs',
      '2',
    ]);
    expect(r.status).toBe(1);
    const error = r.stderr.split('\n').find((l) => l.startsWith('error: ')) ?? '';
    expect(error).toMatch(
      /^error: build failed: (host-)?\S+ \S+ failed at the download step: the source of \S+ could not be downloaded/,
    );
    expect(error).toContain(join(out, 'build.log'));
    expect(r.stderr).toMatch(new RegExp(`URLs tried:\\n\\s+${mirror.replaceAll('.', '\\.')}/`));
    const log = readFileSync(join(out, 'build.log'), 'utf8');
    expect(log).toMatch(/>>> \S+ \S+ Downloading/);
    expect(readFileSync(join(out, 'build', '.config'), 'utf8')).toContain('BR2_PRIMARY_SITE_ONLY=y');
    expect(topLevel(buildroot)).toBe(before);
  }, 600_000);

  it('sbom writes a CycloneDX document listing the appliance packages', async () => {
    const file = join(tempDir(), 'bom.json');
    const r = await runCliAsync(['sbom', '--buildroot', buildroot, '--out', file]);
    expect(r.status, r.stderr).toBe(0);
    const bom = JSON.parse(readFileSync(file, 'utf8'));
    expect(bom).toMatchObject({ bomFormat: 'CycloneDX', specVersion: '1.6' });
    const versions = Object.fromEntries(
      (bom.components as { name: string; version: string }[]).map((c) => [c.name, c.version]),
    );
    // What the package definitions say: Buildroot's own .mk, ours, and kernel.version.
    expect(versions).toMatchObject({
      'docker-engine': buildrootPackageVersion(buildroot, 'docker-engine'),
      ...Object.fromEntries(externalPackages.map((p) => [p.name, p.version])),
      linux: loadAppliance(join(repoRoot, 'appliance.yaml')).kernel.version,
    });
  }, 300_000);
});
