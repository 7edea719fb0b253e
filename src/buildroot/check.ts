/** Offline checks of a rendered br2-external tree with Buildroot itself. */
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Arch } from '../config/index.js';
import { ApplianceError, ExitCode } from '../errors.js';
import { debug } from '../log.js';
import { packageRoot } from '../paths.js';
import { hasTool, runCommand } from '../run/index.js';

export interface SymbolProblem {
  symbol: string;
  wanted: string;
  got: string | null;
  reasons: string[];
}

export interface DefconfigResult {
  arch: Arch;
  defconfig: string;
  requested: number;
  problems: SymbolProblem[];
}

/** Parse "SYM=value" and "# SYM is not set" lines of a defconfig or .config. */
export function parseKconfigValues(text: string): Map<string, string> {
  const values = new Map<string, string>();
  for (const line of text.split('\n')) {
    const set = /^(BR2_\w+)=(.*)$/.exec(line);
    if (set?.[1] && set[2] !== undefined) values.set(set[1], set[2]);
    const unset = /^# (BR2_\w+) is not set$/.exec(line);
    if (unset?.[1]) values.set(unset[1], 'n');
  }
  return values;
}

/** Buildroot writes strings with $(VAR) references as-is; compare values the way a user means them. */
function sameValue(wanted: string, got: string | undefined): boolean {
  if (wanted === 'n') return got === undefined || got === 'n';
  return got === wanted;
}

/** Requested symbols whose value in .config differs from what the defconfig asked for. */
export function compareConfigs(
  defconfigText: string,
  dotConfigText: string,
): { requested: number; mismatched: [string, string, string | null][] } {
  const wanted = parseKconfigValues(defconfigText);
  const got = parseKconfigValues(dotConfigText);
  const mismatched: [string, string, string | null][] = [];
  for (const [symbol, value] of wanted) {
    const actual = got.get(symbol);
    if (!sameValue(value, actual)) mismatched.push([symbol, value, actual ?? null]);
  }
  return { requested: wanted.size, mismatched };
}

const explainScript = () => join(packageRoot(), 'src', 'buildroot', 'explain.py');

/** A python3 that can import the given modules, or undefined. */
export async function pythonWith(modules: string[]): Promise<string | undefined> {
  for (const py of ['python3', '/usr/bin/python3']) {
    if (!(await hasTool(py))) continue;
    const r = await runCommand(py, ['-c', modules.map((m) => `import ${m}`).join('; ')], {
      allowFailure: true,
      timeoutMs: 30_000,
    });
    if (r.exitCode === 0) return py;
  }
  return undefined;
}

/**
 * Run `make <defconfig>` in a throw-away O= with its own BR2_DL_DIR (the Buildroot tree is never
 * written), then compare every requested symbol with the resulting .config.
 */
export async function checkDefconfig(
  buildroot: string,
  external: string,
  arch: Arch,
  defconfig: string,
): Promise<DefconfigResult> {
  const defconfigPath = join(external, 'configs', defconfig);
  if (!existsSync(defconfigPath)) {
    throw new ApplianceError(`${defconfigPath} does not exist`, {
      hint: "render the tree first with 'appliance render'",
    });
  }
  const out = mkdtempSync(join(tmpdir(), `appliance-check-${arch}-`));
  try {
    await runCommand('make', ['-C', buildroot, `BR2_EXTERNAL=${external}`, `O=${out}`, defconfig], {
      env: { BR2_DL_DIR: join(out, 'dl'), TERM: 'dumb', BR2_CCACHE_DIR: join(out, 'ccache') },
      purpose: `Buildroot 'make ${defconfig}'`,
      hint: 'see the output above; the tree or the Buildroot release may be broken',
      timeoutMs: 5 * 60_000,
    });
    const { requested, mismatched } = compareConfigs(
      readFileSync(defconfigPath, 'utf8'),
      readFileSync(join(out, '.config'), 'utf8'),
    );
    const problems: SymbolProblem[] = mismatched.map(([symbol, wanted, got]) => ({
      symbol,
      wanted,
      got,
      reasons: [],
    }));
    if (problems.length > 0) await explainProblems(buildroot, out, problems);
    return { arch, defconfig, requested, problems };
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
}

/** Fill in each problem's reasons with kconfiglib, from the Buildroot tree and the O= folder. */
export async function explainProblems(
  buildroot: string,
  out: string,
  problems: SymbolProblem[],
): Promise<void> {
  const python = await pythonWith(['kconfiglib']);
  if (!python) {
    for (const p of problems) p.reasons.push('(install python3-kconfiglib to see the unmet dependency)');
    return;
  }
  const r = await runCommand(
    python,
    [explainScript(), buildroot, out, ...problems.map((p) => `${p.symbol}=${p.wanted}`)],
    {
      allowFailure: true,
      timeoutMs: 120_000,
    },
  );
  if (r.exitCode !== 0) {
    debug(r.stderr);
    for (const p of problems) p.reasons.push('(the dependency explanation failed; rerun with --verbose)');
    return;
  }
  const byName = new Map(problems.map((p) => [p.symbol, p]));
  for (const line of r.stdout.split('\n').filter(Boolean)) {
    const e = JSON.parse(line) as { symbol: string; reasons: string[] };
    byName.get(e.symbol)?.reasons.push(...e.reasons);
  }
  for (const p of problems)
    if (p.reasons.length === 0) p.reasons.push('its dependencies are met; check the value requested');
}

export interface PackageLint {
  ran: boolean;
  skipped?: string;
  warnings: string[];
  lines: number;
}

/** Run Buildroot's utils/check-package on the external tree's own Buildroot files. */
export async function checkPackages(buildroot: string, external: string): Promise<PackageLint> {
  const python = await pythonWith(['magic']);
  if (!python)
    return {
      ran: false,
      skipped: 'no python3 with the magic module (apt-get install python3-magic)',
      warnings: [],
      lines: 0,
    };
  const files = ['Config.in', 'external.mk', 'external.desc', 'board/post-build.sh']
    .map((f) => join(external, f))
    .filter(existsSync);
  const pkgRoot = join(external, 'package');
  if (existsSync(pkgRoot)) {
    for (const pkg of readdirSync(pkgRoot).sort()) {
      for (const f of readdirSync(join(pkgRoot, pkg)).sort()) files.push(join(pkgRoot, pkg, f));
    }
  }
  const r = await runCommand(python, [join(buildroot, 'utils', 'check-package'), '-b', ...files], {
    cwd: buildroot,
    allowFailure: true,
    timeoutMs: 5 * 60_000,
  });
  const text = `${r.stdout}\n${r.stderr}`;
  const lines = Number(/(\d+) lines processed/.exec(text)?.[1] ?? 0);
  const warnings = text.split('\n').filter((l) => l.startsWith('/') && /:\d*:?/.test(l));
  if (r.exitCode !== 0 && warnings.length === 0) {
    throw new ApplianceError(`Buildroot's check-package failed with exit status ${r.exitCode}`, {
      details: text.trim(),
      exitCode: ExitCode.hostProblem,
      hint: 'rerun with --verbose',
    });
  }
  return { ran: true, warnings, lines };
}
