/**
 * The Buildroot packages runner-appliance adds in its br2-external tree. Versions and license
 * hashes were read from the upstream release tags; the source archives' hashes cannot be known
 * before a networked download and are pinned by `appliance pin-hashes`.
 */
export interface ExternalPackage {
  /** Buildroot package name (folder and .mk name). */
  name: string;
  /** Make variable prefix, e.g. GITLAB_RUNNER_CURRENT. */
  prefix: string;
  /** Kconfig symbol without BR2_PACKAGE_. */
  symbol: string;
  version: string;
  site: string;
  source?: string;
  license: string;
  licenseFiles: string[];
  /** [file, sha256] of each license file. */
  licenseHashes: [string, string][];
  infra: 'cargo-package' | 'golang-package';
  /** The archive name Buildroot stores in the download dir (after vendoring). */
  archive: string;
  depends: string[];
  selects: string[];
  help: string[];
  comment?: { text: string; depends: string[] };
  extraVars: [string, string][];
  defines: { name: string; lines: string[] }[];
}

const docuumVersion = '0.25.1';
const runnerVersion = '19.2.2';
/** Commit of the upstream v19.2.2 tag, shown by `gitlab-runner --version`. */
const runnerRevision = '343288f1';

export const externalPackages: readonly ExternalPackage[] = [
  {
    name: 'docuum',
    prefix: 'DOCUUM',
    symbol: 'DOCUUM',
    version: docuumVersion,
    site: '$(call github,stepchowfun,docuum,v$(DOCUUM_VERSION))',
    license: 'MIT',
    licenseFiles: ['LICENSE.md'],
    licenseHashes: [['LICENSE.md', '0adb7e4d98a450ab7aec550d0414c98bc4f7939fb11ff9595b1832947c4b20c0']],
    infra: 'cargo-package',
    archive: `docuum-${docuumVersion}-cargo4.tar.gz`,
    depends: [
      'BR2_PACKAGE_HOST_RUSTC_TARGET_ARCH_SUPPORTS',
      'BR2_PACKAGE_HOST_GO_TARGET_ARCH_SUPPORTS # docker-cli',
      'BR2_PACKAGE_HOST_GO_TARGET_CGO_LINKING_SUPPORTS # docker-cli',
      'BR2_TOOLCHAIN_HAS_THREADS # docker-cli',
    ],
    selects: ['BR2_PACKAGE_HOST_RUSTC', 'BR2_PACKAGE_DOCKER_CLI # runtime'],
    help: [
      'Docuum performs least recently used (LRU) eviction of Docker',
      'images to keep the disk usage below a given threshold.',
      '',
      'https://github.com/stepchowfun/docuum',
    ],
    comment: {
      text: 'needs a toolchain w/ threads',
      depends: [
        'BR2_PACKAGE_HOST_RUSTC_TARGET_ARCH_SUPPORTS',
        'BR2_PACKAGE_HOST_GO_TARGET_ARCH_SUPPORTS',
        '!BR2_TOOLCHAIN_HAS_THREADS',
      ],
    },
    extraVars: [],
    defines: [],
  },
  {
    name: 'gitlab-runner-current',
    prefix: 'GITLAB_RUNNER_CURRENT',
    symbol: 'GITLAB_RUNNER_CURRENT',
    version: runnerVersion,
    site: 'https://gitlab.com/gitlab-org/gitlab-runner/-/archive/v$(GITLAB_RUNNER_CURRENT_VERSION)',
    source: 'gitlab-runner-$(GITLAB_RUNNER_CURRENT_VERSION).tar.gz',
    license: 'MIT',
    licenseFiles: ['LICENSE'],
    licenseHashes: [['LICENSE', 'aa6e97cbe04ad41e1c081ec01740e9ed3c2453af66a082db1e6fc73b2cb96c6a']],
    infra: 'golang-package',
    archive: `gitlab-runner-${runnerVersion}-go2.tar.gz`,
    depends: [
      'BR2_PACKAGE_HOST_GO_TARGET_ARCH_SUPPORTS',
      'BR2_PACKAGE_HOST_GO_TARGET_CGO_LINKING_SUPPORTS',
      'BR2_TOOLCHAIN_HAS_THREADS',
      'BR2_USE_MMU # git',
      'BR2_USE_WCHAR # tar',
      '!BR2_PACKAGE_GITLAB_RUNNER # installs the same binary',
    ],
    selects: [
      'BR2_PACKAGE_BASH # runtime',
      'BR2_PACKAGE_BUSYBOX_SHOW_OTHERS # bash',
      'BR2_PACKAGE_CA_CERTIFICATES # runtime',
      'BR2_PACKAGE_GIT # runtime',
      'BR2_PACKAGE_HOST_GO',
      'BR2_PACKAGE_TAR # runtime',
    ],
    help: [
      `GitLab Runner ${runnerVersion}: runs GitLab CI/CD jobs. Buildroot's own`,
      'gitlab-runner package (15.5.0) predates runner authentication',
      'tokens (glrt-...), which need 16.0 or later.',
      '',
      'https://docs.gitlab.com/runner/',
    ],
    comment: {
      text: 'needs a toolchain w/ threads, wchar',
      depends: [
        'BR2_PACKAGE_HOST_GO_TARGET_ARCH_SUPPORTS',
        'BR2_PACKAGE_HOST_GO_TARGET_CGO_LINKING_SUPPORTS',
        'BR2_USE_MMU',
        '!BR2_TOOLCHAIN_HAS_THREADS || !BR2_USE_WCHAR',
      ],
    },
    extraVars: [
      ['GOMOD', 'gitlab.com/gitlab-org/gitlab-runner'],
      ['BIN_NAME', 'gitlab-runner'],
      [
        'LDFLAGS',
        [
          '\\',
          '\t-X gitlab.com/gitlab-org/gitlab-runner/common.NAME=gitlab-runner \\',
          '\t-X gitlab.com/gitlab-org/gitlab-runner/common.VERSION=$(GITLAB_RUNNER_CURRENT_VERSION) \\',
          `\t-X gitlab.com/gitlab-org/gitlab-runner/common.REVISION=${runnerRevision}`,
        ].join('\n'),
      ],
    ],
    defines: [],
  },
];

/** Buildroot's archive name for a package's version (used to pin hashes). */
export function packageArchive(pkg: ExternalPackage): string {
  return pkg.archive;
}
