/** What the br2-external tree of an appliance contains, as an in-memory Tree. */
import { readdirSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import ejs from 'ejs';
import {
  type ApplianceConfig,
  type Arch,
  arches,
  defconfigName,
  dockerStorageDriver,
  emulatedTargets,
  emulatorPath,
  kernelHeadersSymbol,
  kernelVersionProblem,
} from '../config/index.js';
import { ApplianceError } from '../errors.js';
import { packageRoot } from '../paths.js';
import { readFolder, type Tree } from '../tree.js';
import { type ExternalPackage, externalPackages, packageSymbol, packageTemplateData } from './packages.js';

const templatesDir = () => join(packageRoot(), 'src', 'render', 'templates');
export const overlayDir = 'board/rootfs-overlay';

function template(name: string, data: Record<string, unknown>): Buffer {
  const path = join(templatesDir(), name);
  const text = ejs.render(readFileSync(path, 'utf8'), data, {
    filename: path,
    escape: (s: unknown) => String(s),
  });
  return Buffer.from(text);
}

/** Archive name → sha256 pinned by `appliance pin-hashes`. */
export type HashPins = Record<string, string>;

const board: Record<Arch, { arch: string[]; config: string; kernelExtra: string[] }> = {
  x86_64: {
    arch: ['BR2_x86_64=y'],
    config: 'board/qemu/x86_64/linux.config',
    kernelExtra: ['BR2_LINUX_KERNEL_NEEDS_HOST_LIBELF=y'],
  },
  aarch64: {
    arch: ['BR2_aarch64=y'],
    config: 'board/qemu/aarch64-virt/linux.config',
    kernelExtra: ['BR2_LINUX_KERNEL_NEEDS_HOST_OPENSSL=y'],
  },
};

const quote = (s: string) => `"${s}"`;

/** The headers series symbol of the kernel Buildroot builds (the schema refuses other series). */
function kernelHeaders(version: string): string {
  const symbol = kernelHeadersSymbol(version);
  if (!symbol) throw new ApplianceError(kernelVersionProblem(version) ?? `kernel.version ${version}`);
  return symbol;
}

/** The defconfig's symbols in order: [symbol, value as written after "="] ('n' means "is not set"). */
export function defconfigSymbols(
  config: ApplianceConfig,
  arch: Arch,
  allPinned: boolean,
): [string, string][] {
  const ext = `$(BR2_EXTERNAL_${config.externalName}_PATH)`;
  const overlays = overlayFolders(config, arch).map((dir) => `${ext}/${dir}`);
  const lines: string[] = [
    ...board[arch].arch,
    'BR2_TOOLCHAIN_BUILDROOT_GLIBC=y',
    `${kernelHeaders(config.kernel.version)}=y`,
    'BR2_GLOBAL_PATCH_DIR="board/qemu/patches"',
    ...(allPinned ? ['BR2_DOWNLOAD_FORCE_CHECK_HASHES=y'] : []),
    'BR2_INIT_SYSTEMD=y',
    'BR2_INIT_SYSTEMD_VAR_OVERLAYFS=y',
    'BR2_TARGET_GENERIC_REMOUNT_ROOTFS_RW=n',
    `BR2_TARGET_GENERIC_HOSTNAME=${quote(config.name)}`,
    `BR2_TARGET_GENERIC_ISSUE=${quote(`${config.name} (runner-appliance)`)}`,
    `BR2_ROOTFS_OVERLAY=${quote(overlays.join(' '))}`,
    `BR2_ROOTFS_POST_BUILD_SCRIPT=${quote(`${ext}/board/post-build.sh`)}`,
    'BR2_LINUX_KERNEL=y',
    'BR2_LINUX_KERNEL_CUSTOM_VERSION=y',
    `BR2_LINUX_KERNEL_CUSTOM_VERSION_VALUE=${quote(config.kernel.version)}`,
    'BR2_LINUX_KERNEL_USE_CUSTOM_CONFIG=y',
    `BR2_LINUX_KERNEL_CUSTOM_CONFIG_FILE=${quote(board[arch].config)}`,
    `BR2_LINUX_KERNEL_CONFIG_FRAGMENT_FILES=${quote(`${ext}/board/linux.fragment ${ext}/board/linux-${arch}.fragment`)}`,
    ...board[arch].kernelExtra,
    'BR2_PACKAGE_SYSTEMD_NETWORKD=y',
    'BR2_PACKAGE_SYSTEMD_RESOLVED=y',
    'BR2_PACKAGE_SYSTEMD_TIMESYNCD=y',
    'BR2_PACKAGE_DOCKER_ENGINE=y',
    'BR2_PACKAGE_DOCKER_CLI=y',
    'BR2_PACKAGE_DOCKER_CLI_BUILDX=y',
    'BR2_PACKAGE_CA_CERTIFICATES=y',
    'BR2_PACKAGE_E2FSPROGS=y',
    'BR2_PACKAGE_E2FSPROGS_RESIZE2FS=y',
    'BR2_PACKAGE_OPENSSH=y',
    // The QEMU guest agent alone (no emulator): the host reads the appliance's health through it.
    'BR2_PACKAGE_QEMU=y',
    'BR2_PACKAGE_QEMU_GUEST_AGENT=y',
    ...externalPackages.filter((p) => !p.optional).map((p) => `${packageSymbol(p)}=y`),
    ...multiarchSymbols(config, arch),
    'BR2_TARGET_ROOTFS_SQUASHFS=y',
    'BR2_TARGET_ROOTFS_SQUASHFS4_ZSTD=y',
    'BR2_TARGET_ROOTFS_EXT2=n',
    'BR2_TARGET_ROOTFS_TAR=n',
  ];
  const symbols = new Map<string, string>();
  for (const line of lines) {
    const at = line.indexOf('=');
    symbols.set(line.slice(0, at), line.slice(at + 1));
  }
  for (const [symbol, value] of Object.entries(config.buildroot.symbols).sort(([a], [b]) =>
    a < b ? -1 : 1,
  )) {
    symbols.set(symbol, formatSymbolValue(value));
  }
  return [...symbols];
}

/**
 * The static QEMU user-mode emulators of an `arch` image's emulated platforms: our
 * qemu-user-static package links them against static libraries, which Buildroot builds only with
 * BR2_SHARED_STATIC_LIBS (BR2_STATIC_LIBS would make the whole system static).
 */
function multiarchSymbols(config: ApplianceConfig, arch: Arch): string[] {
  const targets = emulatedTargets(config, arch);
  if (targets.length === 0) return [];
  return [
    'BR2_SHARED_STATIC_LIBS=y',
    'BR2_PACKAGE_QEMU_USER_STATIC=y',
    ...targets.map((t) => `BR2_PACKAGE_QEMU_USER_STATIC_TARGET_${t.qemuTarget.toUpperCase()}=y`),
  ];
}

function formatSymbolValue(value: boolean | number | string): string {
  if (value === true) return 'y';
  if (value === false) return 'n';
  if (typeof value === 'number') return String(value);
  if (/^[ymn]$/.test(value) || /^-?\d+$/.test(value) || /^0x[0-9a-fA-F]+$/.test(value)) return value;
  return quote(value);
}

/**
 * The rootfs overlay folders of an `arch` image (default: the appliance's), in the order
 * Buildroot copies them: ours, the architecture's own (when it has files), then `overlays`.
 */
export function overlayFolders(config: ApplianceConfig, arch: Arch = config.arch): string[] {
  const own = Object.keys(archOverlay(config, arch)).length > 0 ? [archOverlayDir(arch)] : [];
  return [overlayDir, ...own, ...config.overlayDirs.map((_, i) => extraOverlayPath(config, i))];
}

/** The overlay folder of what differs between the architectures' images. */
export const archOverlayDir = (arch: Arch) => `board/rootfs-overlay-${arch}`;

/**
 * The files of an architecture's own overlay: a binfmt.d entry per emulated QEMU target, read by
 * systemd-binfmt at boot. F: the kernel opens the static emulator when the entry is registered,
 * so a container of that platform runs without the emulator in its own root.
 */
function archOverlay(config: ApplianceConfig, arch: Arch): Record<string, string> {
  const files: Record<string, string> = {};
  for (const t of emulatedTargets(config, arch))
    files[`usr/lib/binfmt.d/qemu-${t.qemuTarget}.conf`] =
      `:qemu-${t.qemuTarget}:M::${t.magic}:${t.mask}:${emulatorPath(t)}:F\n`;
  return files;
}

function extraOverlayPath(config: ApplianceConfig, index: number): string {
  const dir = config.overlayDirs[index] ?? '';
  return `board/overlay-extra/${index + 1}-${basename(dir).replace(/[^A-Za-z0-9._-]/g, '_')}`;
}

/** A word for a systemd ExecStart= line: quoted as systemd expects, with % and $ escaped. */
function systemdWord(s: string): string {
  const escaped = s.replaceAll('%', '%%').replaceAll('$', '$$');
  return /^[\w@+=:,./-]+$/.test(escaped)
    ? escaped
    : `"${escaped.replaceAll('\\', '\\\\').replaceAll('"', '\\"')}"`;
}

function docuumCommand(config: ApplianceConfig): string {
  const args = ['/usr/bin/docuum', '--threshold', config.budget.docuumThreshold];
  for (const keep of config.docuum.keep) args.push('--keep', keep);
  if (config.docuum.minAge) args.push('--min-age', config.docuum.minAge);
  args.push('--deletion-chunk-size', String(config.docuum.deletionChunkSize));
  return args.map(systemdWord).join(' ');
}

function daemonJson(config: ApplianceConfig): Record<string, unknown> {
  return {
    // Docker's containerd image store: a multi-platform `docker buildx build` with the default
    // builder needs it (the classic store keeps one platform per tag). Its snapshotter is
    // overlayfs; "overlay2" is refused at the first image with the store on. Images, snapshots
    // and the build cache live in containerd's root, /var/lib/containerd, on the data disk.
    features: { 'containerd-snapshotter': true },
    'storage-driver': dockerStorageDriver,
    'exec-opts': ['native.cgroupdriver=systemd'],
    'log-driver': 'json-file',
    'log-opts': { 'max-size': config.docker.logMaxSize, 'max-file': '3' },
    ipv6: config.docker.ipv6,
    ...(config.docker.ipv6 ? { 'fixed-cidr-v6': config.docker.fixedCidrV6 } : {}),
    ip6tables: config.docker.ip6tables,
    'live-restore': true,
    // BuildKit's own garbage collection keeps the build cache under its share of dataDisk.budget
    // (MB is MiB in Docker's parser; read as decimal it is a little less, never more).
    builder: {
      gc: { enabled: true, defaultKeepStorage: `${config.budget.buildCacheKeepBytes / 1024 ** 2}MB` },
    },
  };
}

function tomlString(s: string): string {
  return JSON.stringify(s);
}

/** A package's folder from templates/package/: its .ejs files filled in, the others as they are. */
function packageFiles(pkg: ExternalPackage, pins: HashPins, tree: Tree): boolean {
  const archiveHash = pins[pkg.archive] ?? pkg.archiveHash;
  const dir = `package/${pkg.name}`;
  for (const file of readdirSync(join(templatesDir(), dir)).sort()) {
    const content = file.endsWith('.ejs')
      ? template(`${dir}/${file}`, packageTemplateData(pkg, archiveHash))
      : readFileSync(join(templatesDir(), dir, file));
    tree.set(`${dir}/${file.replace(/\.ejs$/, '')}`, { content, mode: 0o644 });
  }
  return archiveHash !== undefined;
}

export function kernelFragment(config: ApplianceConfig, part: 'common' | Arch): Buffer {
  const base = readFileSync(join(templatesDir(), 'kernel', `${part}.fragment`), 'utf8');
  if (part !== 'common' || config.kernel.fragment.length === 0) return Buffer.from(base);
  return Buffer.from(
    `${base}# --- from appliance.yaml kernel.fragment ---\n${config.kernel.fragment.join('\n')}\n`,
  );
}

/** Build the complete br2-external tree for an appliance. */
export function buildTree(config: ApplianceConfig, pins: HashPins = {}): Tree {
  const tree: Tree = new Map();
  const data = {
    ...config,
    packages: externalPackages,
    json: (v: unknown) => JSON.stringify(v, null, 2),
    toml: tomlString,
  };
  tree.set('external.desc', { content: template('external/external.desc.ejs', data), mode: 0o644 });
  tree.set('Config.in', { content: template('external/Config.in.ejs', data), mode: 0o644 });
  tree.set('external.mk', { content: template('external/external.mk.ejs', data), mode: 0o644 });
  let allPinned = true;
  for (const pkg of externalPackages) allPinned = packageFiles(pkg, pins, tree) && allPinned;
  for (const arch of arches) {
    tree.set(`configs/${defconfigName(config, arch)}`, {
      content: template('external/defconfig.ejs', { symbols: defconfigSymbols(config, arch, allPinned) }),
      mode: 0o644,
    });
  }
  tree.set('board/post-build.sh', { content: template('external/post-build.sh.ejs', data), mode: 0o755 });
  tree.set('board/linux.fragment', { content: kernelFragment(config, 'common'), mode: 0o644 });
  for (const arch of arches)
    tree.set(`board/linux-${arch}.fragment`, { content: kernelFragment(config, arch), mode: 0o644 });

  readFolder(join(packageRoot(), 'rootfs-overlay'), overlayDir, tree);
  const rendered: [string, string, Record<string, unknown>][] = [
    ['etc/hostname', 'overlay/hostname.ejs', data],
    ['etc/docker/daemon.json', 'overlay/daemon.json.ejs', { ...data, daemon: daemonJson(config) }],
    ['usr/lib/systemd/system/data.mount', 'overlay/data.mount.ejs', data],
    [
      'usr/lib/systemd/system/docuum.service',
      'overlay/docuum.service.ejs',
      { ...data, docuumCommand: docuumCommand(config) },
    ],
    ['usr/lib/systemd/system/gitlab-runner-config.service', 'overlay/gitlab-runner-config.service.ejs', data],
    ['usr/lib/systemd/system/gitlab-runner.service', 'overlay/gitlab-runner.service.ejs', data],
    // A shutdown waits out the runner's drain (systemd's own limit is 30 min).
    [
      'usr/lib/systemd/system/poweroff.target.d/50-appliance-drain.conf',
      'overlay/drain-shutdown.conf.ejs',
      data,
    ],
    [
      'usr/lib/systemd/system/reboot.target.d/50-appliance-drain.conf',
      'overlay/drain-shutdown.conf.ejs',
      data,
    ],
    [
      'usr/lib/systemd/system/appliance-volume-cleanup.service',
      'overlay/appliance-volume-cleanup.service.ejs',
      data,
    ],
    [
      'usr/lib/systemd/system/appliance-build-cache-trim.service',
      'overlay/appliance-build-cache-trim.service.ejs',
      {
        ...data,
        buildCacheKeepBytes: config.budget.buildCacheKeepBytes,
        buildCacheKeepMiB: config.budget.buildCacheKeepBytes / 1024 ** 2,
      },
    ],
    ['etc/systemd/journald.conf.d/50-appliance.conf', 'overlay/journald.conf.ejs', data],
    ['usr/share/appliance/gitlab-runner/config.toml.template', 'overlay/config.toml.template.ejs', data],
  ];
  if (config.ssh.authorizedKeys.length > 0)
    rendered.push(['etc/ssh/authorized_keys/root', 'overlay/authorized_keys.ejs', data]);
  for (const [path, name, vars] of rendered) {
    const target = `${overlayDir}/${path}`;
    if (tree.has(target)) throw new Error(`template ${name} collides with static overlay file ${path}`);
    tree.set(target, { content: template(name, vars), mode: 0o644 });
  }
  for (const arch of arches)
    for (const [path, content] of Object.entries(archOverlay(config, arch)))
      tree.set(`${archOverlayDir(arch)}/${path}`, { content: Buffer.from(content), mode: 0o644 });
  config.overlayDirs.forEach((dir, i) => {
    readFolder(dir, extraOverlayPath(config, i), tree);
  });
  return tree;
}
