/** The data disk: made without root mounts or loop devices, and never overwritten. */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readdirSync, readSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { sha256Of } from '../../src/digest.js';
import { runCli, tempDir } from '../helpers.js';

/**
 * What any write to an image changes: size, allocation, modification and change time (ctime moves
 * on every write and cannot be set back from user space), and the bytes of its first 8 MiB, where
 * the superblock and group descriptors are. Hashing whole multi-GiB images took minutes of CI.
 */
const fingerprintOf = (path: string) => {
  const st = statSync(path, { bigint: true });
  const head = Buffer.alloc(8 * 1024 ** 2);
  const fd = openSync(path, 'r');
  try {
    readSync(fd, head, 0, head.length, 0);
  } finally {
    closeSync(fd);
  }
  return `${st.size} ${st.blocks} ${st.mtimeNs} ${st.ctimeNs} ${sha256Of(head)}`;
};

describe('appliance disk create', () => {
  const dir = tempDir();
  const image = join(dir, 'data.img');

  it('makes a sparse image with an ext4 filesystem and the label', () => {
    const r = runCli(['disk', 'create', image, '--size', '2G']);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/label:\s+docker-data/);
    const st = statSync(image);
    expect(st.size).toBe(2 * 1024 ** 3);
    expect(st.blocks * 512).toBeLessThan(200 * 1024 ** 2);
    const info = JSON.parse(runCli(['disk', 'inspect', image, '--json']).stdout);
    expect(info).toMatchObject({ label: 'docker-data', filesystem: 'ext4', imageBytes: 2 * 1024 ** 3 });
    expect(info.usedBytes).toBeLessThan(info.filesystemBytes);
    expect(
      execFileSync('dumpe2fs', ['-h', image], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }),
    ).toMatch(/Filesystem volume name:\s+docker-data/);
    expect(readdirSync(dir)).toEqual(['data.img']);
  });

  it.each([
    [[]],
    [['--size', '1G']],
    [['--label', 'other']],
    [['--size', '4G', '--label', 'docker-data']],
    [['--config', 'appliance.yaml']],
  ])('a second create with %j fails and leaves the image byte-identical', async (flags) => {
    const before = fingerprintOf(image);
    const r = runCli(['disk', 'create', image, ...flags]);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(
      /^error: .*data\.img already exists \(a file of 2G\); appliance never overwrites a data disk/,
    );
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(fingerprintOf(image)).toBe(before);
    expect(readdirSync(dir)).toEqual(['data.img']);
  });

  it('refuses a symbolic link and a device too', () => {
    execFileSync('ln', ['-s', image, join(dir, 'link.img')]);
    expect(runCli(['disk', 'create', join(dir, 'link.img')]).stderr).toMatch(
      /already exists \(a symbolic link\)/,
    );
    expect(runCli(['disk', 'create', '/dev/null']).stderr).toMatch(/already exists \(a character device\)/);
  });

  it('fails cleanly in a missing folder', () => {
    const r = runCli(['disk', 'create', join(dir, 'missing', 'data.img')]);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/^error: folder .*missing does not exist: create it first/);
  });

  const ro = join(tempDir(), 'ro');
  mkdirSync(ro);
  const mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', 'ro,size=1m', 'tmpfs', ro]).status === 0;
  afterAll(() => {
    if (mounted) spawnSync('umount', [ro]);
  });
  it('fails cleanly in a read-only folder', () => {
    const target = mounted ? ro : '/sys';
    if (!mounted)
      process.stderr.write(
        '\n[note] no read-only tmpfs could be mounted; using /sys as the unwritable folder\n',
      );
    const r = runCli(['disk', 'create', join(target, 'data.img'), '--size', '1G']);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/^error: cannot create a file in .* \(not writable\): choose a writable folder/);
    expect(readdirSync(target).filter((f) => f.includes('data.img'))).toEqual([]);
  });

  it('rejects bad sizes and labels with one line', () => {
    expect(runCli(['disk', 'create', join(dir, 'a.img'), '--size', 'huge']).stderr).toMatch(
      /^error: --size "huge" is not a size/,
    );
    expect(runCli(['disk', 'create', join(dir, 'b.img'), '--label', 'a label with spaces']).stderr).toMatch(
      /is not an ext4 label/,
    );
    expect(readdirSync(dir).sort()).toEqual(['data.img', 'link.img']);
  });

  it('inspect names a file without ext4', () => {
    const junk = join(dir, 'junk.img');
    writeFileSync(junk, Buffer.alloc(1024 * 1024));
    const r = runCli(['disk', 'inspect', junk]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/holds no ext4 filesystem/);
  });
});

describe('appliance disk grow', () => {
  const dir = tempDir();
  const image = join(dir, 'data.img');
  const debugfs = (request: string, ...flags: string[]) =>
    execFileSync('debugfs', [...flags, '-R', request, image], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    });
  const marker = join(dir, 'marker.txt');
  const fingerprint = () => fingerprintOf(image);

  it('grows a sparse image in place and keeps its label, its UUID and its files', async () => {
    expect(runCli(['disk', 'create', image, '--size', '1G']).status).toBe(0);
    writeFileSync(marker, 'kept across every grow\n');
    debugfs(`write ${marker} marker`, '-w');
    const before = JSON.parse(runCli(['disk', 'inspect', image, '--json']).stdout);
    const r = runCli(['disk', 'grow', image, '--size', '3G']);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(
      /grown from 1G to 3G; the guest grows the filesystem to fill it at its next boot/,
    );
    const st = statSync(image);
    expect(st.size).toBe(3 * 1024 ** 3);
    expect(st.blocks * 512).toBeLessThan(200 * 1024 ** 2);
    const after = JSON.parse(runCli(['disk', 'inspect', image, '--json']).stdout);
    expect(after).toMatchObject({
      label: before.label,
      uuid: before.uuid,
      filesystemBytes: before.filesystemBytes,
    });
    expect(debugfs('cat marker')).toBe('kept across every grow\n');
    expect(readdirSync(dir).sort()).toEqual(['data.img', 'marker.txt']);
  });

  it('the same size again changes nothing', async () => {
    const before = fingerprint();
    const r = runCli(['disk', 'grow', image, '--size', '3G']);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/is already 3G: nothing to do/);
    expect(fingerprint()).toBe(before);
  });

  it.each([
    [['--size', '2G'], /would shrink it, and a data disk never shrinks: pass a --size larger than 3G/],
    [['--size', '30Q'], /^error: --size "30Q" is not a size that dataDisk\.size accepts/],
    [['--size', '64M'], /must be between 1024 MiB/],
    [[], /required option '--size <size>'/],
  ])('refuses %j with one line, exit 2, and the image unchanged', async (flags, message) => {
    const before = fingerprint();
    const r = runCli(['disk', 'grow', image, ...flags]);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(message);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(fingerprint()).toBe(before);
    expect(statSync(image).size).toBe(3 * 1024 ** 3);
  });

  it.each([
    [
      'a FIFO',
      () => {
        const fifo = join(dir, 'fifo');
        execFileSync('mkfifo', [fifo]);
        return fifo;
      },
      /is a FIFO, not a regular file/,
    ],
    ['a folder', () => dir, /is a folder, not a regular file/],
    ['a file under /proc', () => '/proc/uptime', /is under \/proc, not on a real file system/],
    [
      'a file without ext4',
      () => {
        const junk = join(dir, 'junk.img');
        writeFileSync(junk, Buffer.alloc(1024 * 1024));
        return junk;
      },
      /holds no ext4 filesystem: disk grow enlarges data disks made by appliance disk create/,
    ],
    ['a missing file', () => join(dir, 'missing.img'), /does not exist/],
  ])('refuses %s', (_, make, message) => {
    const path = make();
    const r = runCli(['disk', 'grow', path, '--size', '4G']);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(message);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
  });

  it('refuses an image a running QEMU holds, and grows it once QEMU is gone', async () => {
    // A paused QEMU with the disk attached holds QEMU's image lock, as a running VM does.
    const qemu = spawn(
      'qemu-system-x86_64',
      [
        '-accel',
        'tcg',
        '-nodefaults',
        '-S',
        '-display',
        'none',
        '-nic',
        'none',
        '-drive',
        `file=${image},format=raw,if=virtio`,
      ],
      { stdio: 'ignore' },
    );
    try {
      let held = false;
      for (let i = 0; i < 50 && !held; i++) {
        held = spawnSync('qemu-io', ['-f', 'raw', '-c', 'quit', image], { stdio: 'ignore' }).status !== 0;
        if (!held) await new Promise((r) => setTimeout(r, 200));
      }
      expect(held, 'QEMU took the image lock').toBe(true);
      const before = fingerprint();
      const r = runCli(['disk', 'grow', image, '--size', '4G']);
      expect(r.status).toBe(3);
      expect(r.stderr).toMatch(/^error: data disk .* is in use by a running QEMU: grow a libvirt VM's disk/);
      expect(fingerprint()).toBe(before);
    } finally {
      qemu.kill('SIGTERM');
      await new Promise((r) => qemu.once('exit', r));
    }
    expect(runCli(['disk', 'grow', image, '--size', '4G']).status).toBe(0);
    expect(statSync(image).size).toBe(4 * 1024 ** 3);
    expect(debugfs('cat marker')).toBe('kept across every grow\n');
  });
});
