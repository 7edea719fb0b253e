/** Telling a kernel image's architecture from its headers, before anything boots it. */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { kernelImageArch } from '../../src/guest/index.js';
import { runCli, tempDir } from '../helpers.js';

function file(name: string, bytes: Buffer): string {
  const path = join(tempDir('appliance-kimage-'), name);
  writeFileSync(path, bytes);
  return path;
}

/** The first bytes of an arm64 `Image` (Documentation/arch/arm64/booting.rst): magic at 0x38. */
function arm64Image(): Buffer {
  const b = Buffer.alloc(0x1000);
  b.writeUInt32LE(0x644d5241, 0x38);
  return b;
}

/** An x86 bzImage without an EFI stub: the boot protocol header "HdrS" at 0x202. */
function bzImage(): Buffer {
  const b = Buffer.alloc(0x1000);
  b.write('HdrS', 0x202, 'latin1');
  return b;
}

/** A PE/COFF image (EFI stub, EFI zboot) whose COFF header names `machine`. */
function peImage(machine: number): Buffer {
  const b = Buffer.alloc(0x1000);
  b.write('MZ', 0, 'latin1');
  b.write('zimg', 4, 'latin1');
  b.writeUInt32LE(0x80, 0x3c);
  b.write('PE\0\0', 0x80, 'latin1');
  b.writeUInt16LE(machine, 0x84);
  return b;
}

function elf(machine: number): Buffer {
  const b = Buffer.alloc(64);
  b.writeUInt32BE(0x7f454c46, 0);
  b.writeUInt16LE(machine, 18);
  return b;
}

describe('kernelImageArch', () => {
  it.each([
    ['an arm64 Image', arm64Image(), 'aarch64'],
    ['an x86 bzImage', bzImage(), 'x86_64'],
    ['an arm64 EFI zboot vmlinuz', peImage(0xaa64), 'aarch64'],
    ['an x86_64 EFI-stub bzImage', peImage(0x8664), 'x86_64'],
    ['an x86_64 ELF vmlinux', elf(62), 'x86_64'],
    ['an aarch64 ELF vmlinux', elf(183), 'aarch64'],
  ])('knows %s', (_, bytes, arch) => {
    expect(kernelImageArch(file('kernel', bytes))).toBe(arch);
  });

  it.each([
    ['a squashfs image', Buffer.concat([Buffer.from('hsqs'), Buffer.alloc(4092)])],
    ['an empty file', Buffer.alloc(0)],
    ['a short text file', Buffer.from('not a kernel\n')],
    ['a PE image for another machine (riscv64)', peImage(0x5064)],
  ])('says nothing of %s', (_, bytes) => {
    expect(kernelImageArch(file('kernel', bytes))).toBeUndefined();
  });
});

describe('a kernel of the other architecture is refused before anything starts', () => {
  it.each([['define'], ['update']])(
    'vm %s refuses an arm64 Image for an x86_64 appliance, exit 2',
    (command) => {
      const kernel = file('Image', arm64Image());
      const rootfs = file('rootfs.squashfs', Buffer.from('hsqs'));
      // An unreachable URI: the refusal must come before any connection attempt.
      const r = runCli([
        'vm',
        command,
        '--kernel',
        kernel,
        '--rootfs',
        rootfs,
        '--connect',
        'qemu+ssh://nobody@127.0.0.1:1/system',
      ]);
      expect(r.status).toBe(2);
      expect(r.stderr).toMatch(
        /^error: kernel .*Image is an aarch64 image, but arch in appliance.yaml is x86_64: pass a kernel built for x86_64/,
      );
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
    },
  );
});
