/**
 * The Buildroot packages runner-appliance adds in its br2-external tree. Each is a folder of
 * Buildroot's own files in templates/package/<name>/ (Config.in, <name>.mk, <name>.hash), as
 * in Buildroot's package/ tree; the renderer fills in only the version (and what comes with it)
 * and the source archive's hash once `appliance pin-hashes` has pinned it. Versions and license
 * hashes were read from the upstream release tags; an archive's hash cannot be known before a
 * networked download.
 */
export interface ExternalPackage {
  /** Buildroot package name: its folder, <name>.mk, BR2_PACKAGE_<NAME>. */
  name: string;
  version: string;
  /**
   * The source archive Buildroot keeps in BR2_DL_DIR/<name>/ (its <NAME>_SOURCE, with the
   * vendoring suffix): the file `pin-hashes` hashes and <name>.hash names.
   */
  archive: string;
  /** Further values the package's templates use. */
  vars?: Record<string, string>;
}

const docuumVersion = '0.25.1';
const runnerVersion = '19.2.2';

export const externalPackages: readonly ExternalPackage[] = [
  {
    name: 'docuum',
    version: docuumVersion,
    archive: `docuum-${docuumVersion}-cargo4.tar.gz`,
  },
  {
    name: 'gitlab-runner-current',
    version: runnerVersion,
    archive: `gitlab-runner-current-${runnerVersion}-go2.tar.gz`,
    // Commit of the upstream v19.2.2 tag, shown by `gitlab-runner --version`.
    vars: { revision: '343288f1' },
  },
];

/** The package's Kconfig symbol, as Buildroot derives it from the name. */
export function packageSymbol(pkg: ExternalPackage): string {
  return `BR2_PACKAGE_${pkg.name.toUpperCase().replaceAll('-', '_')}`;
}

/** What the package's templates see: its version and vars, and the archive's pinned hash if any. */
export function packageTemplateData(
  pkg: ExternalPackage,
  archiveHash: string | undefined,
): Record<string, unknown> {
  return { ...pkg.vars, version: pkg.version, archive: pkg.archive, archiveHash };
}
