/**
 * What the guest looks like to whoever starts it, per architecture: the QEMU binary and the
 * package that ships it, the machine type (as QEMU's -machine and as libvirt's <os><type>),
 * the serial console, the kernel command line, and the memory it is given. `smoke` (plain
 * QEMU), `libvirt` (domain XML) and the KVM probe all read these facts from here.
 */
import type { ApplianceConfig, Arch } from '../config/index.js';

export interface GuestMachine {
  arch: Arch;
  /** The QEMU system emulator for this architecture. */
  qemuBinary: string;
  /** The Debian package that ships it. */
  qemuPackage: string;
  /** QEMU's `-machine` value. */
  qemuMachine: string;
  /** libvirt's `<os><type machine=…>`; the GIC version goes into `<features>`. */
  libvirtMachine: 'q35' | 'virt';
  /** GICv3 on aarch64 (needed beyond 8 vCPUs and by KVM on most arm64 hosts); none on x86_64. */
  gicVersion?: 3;
  /** The serial console device the kernel writes to. */
  console: 'ttyS0' | 'ttyAMA0';
  /**
   * QEMU's `-cpu` under TCG. aarch64: `max` with pointer authentication computed by QEMU's
   * cheap implementation-defined algorithm instead of the architected QARMA5, which TCG emulates
   * slowly while Debian's arm64 userland signs every return address (the guest sees PAuth either way).
   */
  tcgCpu: string;
}

const machines: Record<Arch, GuestMachine> = {
  x86_64: {
    arch: 'x86_64',
    qemuBinary: 'qemu-system-x86_64',
    qemuPackage: 'qemu-system-x86',
    qemuMachine: 'q35',
    libvirtMachine: 'q35',
    console: 'ttyS0',
    tcgCpu: 'max',
  },
  aarch64: {
    arch: 'aarch64',
    qemuBinary: 'qemu-system-aarch64',
    qemuPackage: 'qemu-system-arm',
    qemuMachine: 'virt,gic-version=3',
    libvirtMachine: 'virt',
    gicVersion: 3,
    console: 'ttyAMA0',
    tcgCpu: 'max,pauth-impdef=on',
  },
};

export function guestMachine(arch: Arch): GuestMachine {
  return machines[arch];
}

/** The architecture of this host as the config names it, when it is one the appliance supports. */
export function hostArch(): Arch | undefined {
  return process.arch === 'x64' ? 'x86_64' : process.arch === 'arm64' ? 'aarch64' : undefined;
}

/** The console speed, on every architecture. */
export const consoleBaud = 115200;

/**
 * The kernel command line of the appliance: read-only squashfs root on the first virtio disk,
 * the serial console, reboot on panic. `extra` words come after (from the caller or --cmdline).
 */
export function kernelCmdline(arch: Arch, extra: readonly string[] = []): string[] {
  return [
    `console=${guestMachine(arch).console},${consoleBaud}`,
    'root=/dev/vda',
    'ro',
    'rootfstype=squashfs',
    'rootwait',
    'panic=-1',
    ...extra,
  ];
}

/** Guest memory in MiB, as the config gives it (vm.memory, at least 512 MiB by the schema). */
export function memoryMiB(config: Pick<ApplianceConfig, 'memoryBytes'>): number {
  return Math.floor(config.memoryBytes / 1024 ** 2);
}
