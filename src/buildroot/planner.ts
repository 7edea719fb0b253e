/**
 * The rebuild planner: compare the last build's configuration and tree with the new ones and
 * decide the least work that gives a correct image. Buildroot never removes what a dropped
 * package installed, and a toolchain change needs a clean build.
 */
import { parseKconfigValues } from './check.js';

export interface BuildSnapshot {
  arch: string;
  /** Symbol → value of the resolved .config. */
  config: Record<string, string>;
  /** Rendered tree file → sha256. */
  tree: Record<string, string>;
}

export type PlanKind = 'first' | 'up-to-date' | 'incremental' | 'dirclean' | 'clean';

export interface BuildPlan {
  kind: PlanKind;
  /** make targets to run before the build, e.g. docker-engine-dirclean. */
  dirclean: string[];
  reasons: string[];
  warnings: string[];
}

/** Symbols whose change invalidates everything built: architecture, toolchain, C library, init. */
const cleanPrefixes = [
  'BR2_ARCH',
  'BR2_x86_64',
  'BR2_aarch64',
  'BR2_TOOLCHAIN',
  'BR2_GCC_',
  'BR2_BINUTILS',
  'BR2_KERNEL_HEADERS',
  'BR2_PACKAGE_HOST_LINUX_HEADERS',
  'BR2_INIT_',
  'BR2_OPTIMIZE',
  'BR2_SHARED_',
  'BR2_STATIC_',
  'BR2_GLOBAL_PATCH_DIR',
  'BR2_PER_PACKAGE_DIRECTORIES',
];

export function snapshotConfig(dotConfig: string): Record<string, string> {
  return Object.fromEntries(parseKconfigValues(dotConfig));
}

/** BR2_PACKAGE_DOCKER_ENGINE → docker-engine (the usual mapping; packages are named after their symbol). */
export function packageOfSymbol(symbol: string, enabled: Set<string>): string | undefined {
  if (!symbol.startsWith('BR2_PACKAGE_')) return symbol.startsWith('BR2_LINUX_KERNEL') ? 'linux' : undefined;
  let best: string | undefined;
  for (const pkgSymbol of enabled) {
    if (
      (symbol === pkgSymbol || symbol.startsWith(`${pkgSymbol}_`)) &&
      (!best || pkgSymbol.length > best.length)
    )
      best = pkgSymbol;
  }
  return best ? best.slice('BR2_PACKAGE_'.length).toLowerCase().replaceAll('_', '-') : undefined;
}

/** BR2_PACKAGE_<NAME> for each package folder name (docker-engine → BR2_PACKAGE_DOCKER_ENGINE). */
export function packageSymbols(names: Iterable<string>): Set<string> {
  return new Set(
    [...names].map((n) => `BR2_PACKAGE_${n.toUpperCase().replaceAll('-', '_').replaceAll('.', '_')}`),
  );
}

/**
 * Enabled package symbols. With `known` (the package folders of Buildroot and the external tree)
 * options such as BR2_PACKAGE_DOCKER_ENGINE_DRIVER_BTRFS are told apart from packages such as
 * BR2_PACKAGE_DOCKER_CLI_BUILDX; without it, a symbol under another enabled one counts as its option.
 */
function enabledPackages(config: Record<string, string>, known?: Set<string>): Set<string> {
  const on = Object.entries(config)
    .filter(
      ([k, v]) =>
        v === 'y' &&
        k.startsWith('BR2_PACKAGE_') &&
        !k.startsWith('BR2_PACKAGE_HOST_') &&
        !/_SUPPORTS$/.test(k),
    )
    .map(([k]) => k);
  if (known) return new Set(on.filter((k) => known.has(k)));
  return new Set(on.filter((k) => !on.some((other) => other !== k && k.startsWith(`${other}_`))));
}

export function planBuild(
  previous: BuildSnapshot | undefined,
  next: BuildSnapshot,
  builtBefore: boolean,
  known?: Set<string>,
): BuildPlan {
  if (!previous || !builtBefore)
    return { kind: 'first', dirclean: [], reasons: ['no previous build in this folder'], warnings: [] };
  const reasons: string[] = [];
  if (previous.arch !== next.arch)
    return {
      kind: 'clean',
      dirclean: [],
      reasons: [`architecture changed: ${previous.arch} → ${next.arch}`],
      warnings: [],
    };
  const keys = new Set([...Object.keys(previous.config), ...Object.keys(next.config)]);
  const changed = [...keys].filter((k) => (previous.config[k] ?? 'n') !== (next.config[k] ?? 'n')).sort();
  const structural = changed.filter((k) => cleanPrefixes.some((p) => k.startsWith(p)));
  if (structural.length > 0) {
    return {
      kind: 'clean',
      dirclean: [],
      reasons: [
        `toolchain, architecture or init settings changed: ${structural.slice(0, 5).join(', ')}${structural.length > 5 ? ', …' : ''}`,
      ],
      warnings: [],
    };
  }
  const before = enabledPackages(previous.config, known);
  const after = enabledPackages(next.config, known);
  const removed = [...before].filter((s) => !after.has(s));
  const added = [...after].filter((s) => !before.has(s));
  const dirclean = new Set<string>();
  const warnings: string[] = [];
  for (const s of removed) {
    const pkg = packageOfSymbol(s, before);
    if (pkg) dirclean.add(pkg);
  }
  if (removed.length > 0) {
    warnings.push(
      `files installed by removed package(s) ${removed.map((s) => packageOfSymbol(s, before)).join(', ')} stay in the image until a clean build ('appliance build --clean')`,
    );
    reasons.push(`package(s) removed: ${removed.map((s) => packageOfSymbol(s, before)).join(', ')}`);
  }
  if (added.length > 0)
    reasons.push(`package(s) added: ${added.map((s) => packageOfSymbol(s, after)).join(', ')}`);
  for (const k of changed) {
    if (removed.includes(k) || added.includes(k)) continue;
    const pkg = packageOfSymbol(k, new Set([...before, ...after]));
    if (pkg && (after.has(`BR2_PACKAGE_${pkg.toUpperCase().replaceAll('-', '_')}`) || pkg === 'linux')) {
      if (!dirclean.has(pkg)) reasons.push(`options of ${pkg} changed (${k})`);
      dirclean.add(pkg);
    }
  }
  const treeChanged = [...new Set([...Object.keys(previous.tree), ...Object.keys(next.tree)])]
    .filter((f) => previous.tree[f] !== next.tree[f])
    .sort();
  const fragments = treeChanged.filter((f) => /^board\/linux.*\.fragment$/.test(f));
  if (fragments.length > 0) {
    reasons.push(`kernel configuration changed: ${fragments.join(', ')}`);
    dirclean.add('linux');
  }
  for (const f of treeChanged.filter((f) => f.startsWith('package/'))) {
    const pkg = f.split('/')[1];
    if (pkg && after.has(`BR2_PACKAGE_${pkg.toUpperCase().replaceAll('-', '_')}`)) {
      reasons.push(`package ${pkg} definition changed (${f})`);
      dirclean.add(pkg);
    }
  }
  const overlay = treeChanged.filter((f) => f.startsWith('board/') && !fragments.includes(f));
  if (overlay.length > 0)
    reasons.push(
      `overlay, units or board files changed (${overlay.length}): the root filesystem is re-packed`,
    );
  if (dirclean.size > 0) return { kind: 'dirclean', dirclean: [...dirclean].sort(), reasons, warnings };
  if (reasons.length > 0) return { kind: 'incremental', dirclean: [], reasons, warnings };
  return { kind: 'up-to-date', dirclean: [], reasons: ['nothing changed since the last build'], warnings };
}
