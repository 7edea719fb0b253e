/**
 * Buildroot tier: `appliance check` against a real Buildroot 2026.02.3 tree (from
 * `appliance buildroot fetch`, APPLIANCE_BUILDROOT, or the cache), offline.
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { checkPackages } from '../../src/buildroot/index.js';
import { verifyUnits } from '../../src/check/index.js';
import { loadAppliance } from '../../src/config/index.js';
import { buildTree, overlayDir } from '../../src/render/index.js';
import { writeTree } from '../../src/tree.js';
import { runCli, tempDir, testBuildroot, topLevel } from '../helpers.js';

const { dir: buildroot, skip } = testBuildroot('Buildroot tier');

/** `appliance check` of an appliance.yaml holding `yaml`, for one arch. */
function checkConfig(yaml: string, arch: string, ...more: string[]) {
  const config = join(tempDir(), 'appliance.yaml');
  writeFileSync(config, yaml);
  return runCli(['check', '--config', config, '--buildroot', buildroot, '--arch', arch, ...more]);
}

describe.skipIf(skip)('appliance check with Buildroot 2026.02.3', () => {
  it('passes for the default appliance on both arches and leaves the Buildroot tree untouched', () => {
    const before = topLevel(buildroot);
    const r = runCli(['check', '--buildroot', buildroot, '--json']);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const report = JSON.parse(r.stdout);
    expect(report.defconfigs.map((d: { arch: string }) => d.arch)).toEqual(['x86_64', 'aarch64']);
    for (const d of report.defconfigs) {
      expect(d.problems).toEqual([]);
      expect(d.requested).toBeGreaterThan(30);
    }
    expect(report.packages.ran).toBe(true);
    expect(report.packages.lines).toBeGreaterThan(50);
    expect(report.units.ran).toBe(true);
    expect(report.units.units).toContain('docuum.service');
    expect(topLevel(buildroot)).toBe(before);
    expect(existsSync(join(buildroot, 'output'))).toBe(false);
    expect(existsSync(join(buildroot, 'dl'))).toBe(false);
  });

  it('fails naming a symbol with an unmet dependency and the dependency', () => {
    const r = checkConfig('buildroot:\n  symbols:\n    BR2_PACKAGE_XTERM: y\n', 'x86_64');
    expect(r.status).toBe(1);
    expect(r.stdout).toMatch(
      /BR2_PACKAGE_XTERM: wanted y, got \(not set\): depends on BR2_PACKAGE_XORG7 \(BR2_PACKAGE_XORG7=n\)/,
    );
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(
      /^error: Buildroot dropped or changed 1 requested symbol\(s\): BR2_PACKAGE_XTERM \(x86_64\)/,
    );
  });

  it('explains a symbol lost to a choice and a symbol that does not exist', () => {
    const r = checkConfig(
      'buildroot:\n  symbols:\n    BR2_TOOLCHAIN_BUILDROOT_UCLIBC: y\n    BR2_PACKAGE_NO_SUCH_THING: y\n',
      'aarch64',
      '--json',
    );
    expect(r.status).toBe(1);
    const problems = JSON.parse(r.stdout).defconfigs[0].problems as { symbol: string; reasons: string[] }[];
    const by = Object.fromEntries(problems.map((p) => [p.symbol, p.reasons.join('; ')]));
    expect(by.BR2_PACKAGE_NO_SUCH_THING).toBe('no such symbol in this Buildroot release');
    // uClibc takes the C library choice, so systemd (glibc only) and docker-engine drop out.
    expect(by.BR2_INIT_SYSTEMD).toMatch(/depends on BR2_TOOLCHAIN_USES_GLIBC/);
    expect(by.BR2_PACKAGE_DOCKER_ENGINE).toMatch(/!BR2_TOOLCHAIN_USES_UCLIBC/);
  });

  it('check-package reports a defect in a generated package, so the clean result means something', async () => {
    const out = join(tempDir(), 'ext');
    writeTree(out, buildTree(loadAppliance()));
    const mk = join(out, 'package/docuum/docuum.mk');
    writeFileSync(mk, `${(await import('node:fs')).readFileSync(mk, 'utf8')}DOCUUM_LICENSE = MIT \n`);
    const lint = await checkPackages(buildroot, out);
    expect(lint.ran).toBe(true);
    expect(lint.warnings.join('\n')).toMatch(/docuum\.mk:\d+: /);
  });

  it('systemd-analyze verify reports a broken unit', async () => {
    const out = join(tempDir(), 'ext');
    writeTree(out, buildTree(loadAppliance()));
    writeFileSync(
      join(out, overlayDir, 'usr/lib/systemd/system/broken.service'),
      '[Unit]\nDescription=x\n[Servce]\nExecStart=/bin/true\n',
    );
    const v = await verifyUnits([join(out, overlayDir)]);
    expect(v.ran).toBe(true);
    expect(v.problems.join('\n')).toMatch(/Unknown section 'Servce'/);
  });

  it("appliance check verifies the units of the config's extra overlays too", () => {
    const dir = tempDir();
    const units = join(dir, 'site', 'etc', 'systemd', 'system');
    mkdirSync(units, { recursive: true });
    writeFileSync(
      join(units, 'site-broken.service'),
      '[Unit]\nDescription=x\n[Servce]\nExecStart=/bin/true\n',
    );
    const cfg = join(dir, 'appliance.yaml');
    writeFileSync(cfg, 'overlays: [site]\n');
    const r = runCli(['check', '--config', cfg, '--buildroot', buildroot, '--arch', 'x86_64', '--json']);
    expect(r.status).toBe(1);
    const report = JSON.parse(r.stdout);
    expect(report.units.units).toContain('site-broken.service');
    expect(report.units.problems.join('\n')).toMatch(
      /site-broken\.service.*Unknown section 'Servce'|Unknown section 'Servce'/,
    );
  });
});
