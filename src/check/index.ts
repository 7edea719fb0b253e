/** `appliance check`: verify a rendered tree with Buildroot itself, offline. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import {
  checkDefconfig,
  checkPackages,
  type DefconfigResult,
  locateBuildroot,
  type PackageLint,
} from '../buildroot/index.js';
import { type ApplianceConfig, type Arch, arches, defconfigName } from '../config/index.js';
import { overlayFolders, renderTree } from '../render/index.js';
import { writeTree } from '../tree.js';
import { type UnitVerification, verifyUnits } from './units.js';

export { type UnitVerification, verifyUnits } from './units.js';

export interface CheckReport {
  buildroot: string;
  tree: string;
  defconfigs: DefconfigResult[];
  packages: PackageLint;
  units: UnitVerification;
  ok: boolean;
}

export interface CheckOptions {
  buildroot?: string;
  /** Check this already-rendered tree instead of rendering the config into a temporary one. */
  tree?: string;
  arches?: readonly Arch[];
}

export async function checkAppliance(
  config: ApplianceConfig,
  options: CheckOptions = {},
): Promise<CheckReport> {
  const buildroot = locateBuildroot(config.buildroot.version, options.buildroot);
  let temp: string | undefined;
  let tree = options.tree ? resolve(options.tree) : undefined;
  if (!tree) {
    temp = mkdtempSync(join(tmpdir(), 'appliance-tree-'));
    tree = join(temp, 'external');
    writeTree(tree, renderTree(config));
  }
  try {
    const defconfigs: DefconfigResult[] = [];
    for (const arch of options.arches ?? arches)
      defconfigs.push(await checkDefconfig(buildroot, tree, arch, defconfigName(config, arch)));
    const packages = await checkPackages(buildroot, tree);
    const units = await verifyUnits(overlayFolders(config).map((dir) => join(tree, dir)));
    const ok =
      defconfigs.every((d) => d.problems.length === 0) &&
      packages.warnings.length === 0 &&
      units.problems.length === 0;
    return { buildroot, tree: options.tree ? tree : '(temporary render)', defconfigs, packages, units, ok };
  } finally {
    if (temp) rmSync(temp, { recursive: true, force: true });
  }
}

export function formatCheckReport(report: CheckReport): string {
  const lines: string[] = [`Buildroot: ${report.buildroot}`];
  for (const d of report.defconfigs) {
    if (d.problems.length === 0)
      lines.push(`ok    ${d.defconfig}: all ${d.requested} requested symbols kept`);
    else {
      lines.push(
        `FAIL  ${d.defconfig}: ${d.problems.length} of ${d.requested} requested symbols dropped or changed`,
      );
      for (const p of d.problems) {
        lines.push(
          `        ${p.symbol}: wanted ${p.wanted}, got ${p.got ?? '(not set)'}: ${p.reasons.join('; ')}`,
        );
      }
    }
  }
  const pk = report.packages;
  if (!pk.ran) lines.push(`skip  check-package: ${pk.skipped}`);
  else if (pk.warnings.length === 0) lines.push(`ok    check-package: ${pk.lines} lines, no warnings`);
  else
    lines.push(
      `FAIL  check-package: ${pk.warnings.length} warning(s)`,
      ...pk.warnings.map((w) => `        ${w}`),
    );
  const u = report.units;
  if (!u.ran) lines.push(`skip  systemd-analyze verify: ${u.skipped}`);
  else if (u.problems.length === 0) lines.push(`ok    systemd-analyze verify: ${u.units.length} units`);
  else
    lines.push(
      `FAIL  systemd-analyze verify: ${u.problems.length} problem(s)`,
      ...u.problems.map((p) => `        ${p}`),
    );
  return lines.join('\n');
}
