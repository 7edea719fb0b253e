/**
 * multiarch.emulate: the foreign platforms an appliance runs containers of through QEMU
 * user-mode emulators registered with binfmt_misc. One table entry per Docker platform name.
 */
import type { ApplianceSettings } from './schema.js';

type Arch = ApplianceSettings['arch'];

export interface EmulatedTarget {
  /** QEMU's linux-user target (the emulator is qemu-<target>). */
  qemuTarget: string;
  /** `uname -m` inside a container of the platform. */
  machine: string;
  /**
   * binfmt_misc magic and mask of the target's ELF header, as QEMU's scripts/qemu-binfmt-conf.sh
   * defines them (copied from Debian 13's qemu-user 1:10.0.13 /usr/share/qemu/binfmt.d/).
   */
  magic: string;
  mask: string;
  /** The appliance architectures that run this platform natively. */
  nativeOn: readonly Arch[];
}

const elfMask =
  '\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\x00\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xfe\\xff\\xff\\xff';
const x86Mask =
  '\\xff\\xff\\xff\\xff\\xff\\xfe\\xfe\\xfc\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xfe\\xff\\xff\\xff';
const elfMagic = (cls: '01' | '02', machine: string) =>
  `\\x7f\\x45\\x4c\\x46\\x${cls}\\x01\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x02\\x00\\x${machine}\\x00`;

/** Docker platform name → what emulates it. linux/arm/v6 and linux/arm/v7 share qemu-arm. */
export const platformTargets: Readonly<Record<string, EmulatedTarget>> = {
  'linux/amd64': {
    qemuTarget: 'x86_64',
    machine: 'x86_64',
    magic: elfMagic('02', '3e'),
    mask: x86Mask,
    nativeOn: ['x86_64'],
  },
  'linux/386': {
    qemuTarget: 'i386',
    machine: 'i686',
    magic: elfMagic('01', '03'),
    mask: x86Mask,
    nativeOn: ['x86_64'],
  },
  'linux/arm64': {
    qemuTarget: 'aarch64',
    machine: 'aarch64',
    magic: elfMagic('02', 'b7'),
    mask: elfMask,
    nativeOn: ['aarch64'],
  },
  'linux/arm/v7': {
    qemuTarget: 'arm',
    machine: 'armv7l',
    magic: elfMagic('01', '28'),
    mask: elfMask,
    nativeOn: [],
  },
  'linux/arm/v6': {
    qemuTarget: 'arm',
    machine: 'armv7l',
    magic: elfMagic('01', '28'),
    mask: elfMask,
    nativeOn: [],
  },
  'linux/riscv64': {
    qemuTarget: 'riscv64',
    machine: 'riscv64',
    magic: elfMagic('02', 'f3'),
    mask: elfMask,
    nativeOn: [],
  },
};

/** The Docker platform an appliance architecture runs natively (its images' default). */
export const nativePlatform: Readonly<Record<Arch, string>> = {
  x86_64: 'linux/amd64',
  aarch64: 'linux/arm64',
};

/**
 * Docker's storage driver (daemon.json's storage-driver, and what `docker info` reports as
 * Driver): with the containerd image store it is containerd's snapshotter, overlayfs
 * ("overlay2", the classic store's driver, is refused at the first image).
 */
export const dockerStorageDriver = 'overlayfs';

/** The default of multiarch.emulate for an appliance architecture. */
export const defaultEmulated: Readonly<Record<Arch, readonly string[]>> = {
  x86_64: ['linux/arm64', 'linux/arm/v7'],
  aarch64: ['linux/amd64', 'linux/arm/v7'],
};

/** Why `platform` cannot be in multiarch.emulate of an `arch` appliance, or undefined. */
export function emulateProblem(platform: string, arch: Arch): string | undefined {
  const target = platformTargets[platform];
  if (!target)
    return `${JSON.stringify(platform)} is not a platform QEMU can emulate here (one of ${Object.keys(platformTargets).join(', ')})`;
  if (target.nativeOn.includes(arch))
    return `${platform} runs natively on an ${arch} appliance: leave it out`;
  return undefined;
}

/**
 * The platforms an `arch` image emulates: multiarch.emulate (validated against the appliance's
 * own arch; for the other arch's defconfig, without what that arch runs natively), or the
 * default of `arch`.
 */
export function emulatedPlatforms(
  settings: Pick<ApplianceSettings, 'arch' | 'multiarch'>,
  arch: Arch = settings.arch,
): string[] {
  const chosen = settings.multiarch.emulate;
  if (chosen === undefined) return [...defaultEmulated[arch]];
  return chosen.filter((p) => !platformTargets[p]?.nativeOn.includes(arch));
}

/** The QEMU targets an `arch` image needs (each once), in the order of multiarch.emulate. */
export function emulatedTargets(
  settings: Pick<ApplianceSettings, 'arch' | 'multiarch'>,
  arch: Arch = settings.arch,
): EmulatedTarget[] {
  const seen = new Map<string, EmulatedTarget>();
  for (const platform of emulatedPlatforms(settings, arch)) {
    const target = platformTargets[platform];
    if (target && !seen.has(target.qemuTarget)) seen.set(target.qemuTarget, target);
  }
  return [...seen.values()];
}

/** Where the image carries the static emulator of a target (binfmt.d points here). */
export const emulatorPath = (target: Pick<EmulatedTarget, 'qemuTarget'>) =>
  `/usr/bin/qemu-${target.qemuTarget}-static`;
