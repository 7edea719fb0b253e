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
  /** The archive's sha256 when it is known without a download (another package's hash file). */
  archiveHash?: string;
  /** Enabled only in the defconfigs that ask for it (not with `=y` in every one). */
  optional?: boolean;
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
  {
    // multiarch.emulate: QEMU's linux-user emulators, linked statically (Buildroot's qemu package
    // links statically only when the whole system is). The release and the archive's hash are
    // those of Buildroot 2026.02.3's package/qemu (qemu.hash: verified with its GPG signature).
    name: 'qemu-user-static',
    version: '10.2.0',
    archive: 'qemu-10.2.0.tar.xz',
    archiveHash: '9e30ad1b8b9f7b4463001582d1ab297f39cfccea5d08540c0ca6d6672785883a',
    optional: true,
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
