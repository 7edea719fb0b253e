/**
 * Which architecture a kernel image is for, from its headers alone: a PE/COFF header (EFI stub,
 * EFI zboot), an x86 boot protocol header ("HdrS"), an arm64 Image header ("ARM\x64"), or an
 * ELF vmlinux. Booting an image of the wrong architecture does not fail: the emulator just
 * prints nothing until a timeout, so callers ask this first.
 */
import { closeSync, openSync, readSync } from 'node:fs';
import type { Arch } from '../config/index.js';
import { ApplianceError } from '../errors.js';

const peMachines: Record<number, Arch> = { 34404: 'x86_64', 43620: 'aarch64' };
const elfMachines: Record<number, Arch> = { 62: 'x86_64', 183: 'aarch64' };

/** The architecture of the kernel image at `path`, or undefined when its headers say nothing known. */
export function kernelImageArch(path: string): Arch | undefined {
  const head = Buffer.alloc(4096);
  const fd = openSync(path, 'r');
  let n: number;
  try {
    n = readSync(fd, head, 0, head.length, 0);
  } finally {
    closeSync(fd);
  }
  const b = head.subarray(0, n);
  if (b.length >= 20 && b.readUInt32BE(0) === 0x7f454c46) return elfMachines[b.readUInt16LE(18)];
  if (b.length >= 0x40 && b.toString('latin1', 0, 2) === 'MZ') {
    const pe = b.readUInt32LE(0x3c);
    if (pe + 6 <= b.length && b.toString('latin1', pe, pe + 4) === 'PE\0\0') {
      const arch = peMachines[b.readUInt16LE(pe + 4)];
      if (arch) return arch;
    }
  }
  if (b.length >= 0x206 && b.toString('latin1', 0x202, 0x206) === 'HdrS') return 'x86_64';
  if (b.length >= 0x3c && b.readUInt32LE(0x38) === 0x644d5241) return 'aarch64';
  return undefined;
}

/**
 * Refuse a kernel image built for another architecture than `arch` (an image whose headers say
 * nothing known is let through: the boot will tell). `where` says where `arch` came from.
 */
export function requireKernelArch(kernel: string, arch: Arch, where: string): void {
  const found = kernelImageArch(kernel);
  if (found && found !== arch)
    throw new ApplianceError(`kernel ${kernel} is an ${found} image, but ${where} is ${arch}`, {
      hint: `pass a kernel built for ${arch}, or set the architecture to ${found}`,
    });
}
