/** The data disk: made without root mounts or loop devices, and never overwritten. */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { execAsync, runCli, tempDir } from '../helpers.js';

const sha = async (path: string) => (await execAsync('sha256sum', [path])).split(' ')[0];

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
    const before = await sha(image);
    const mtime = statSync(image).mtimeMs;
    const r = runCli(['disk', 'create', image, ...flags]);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(
      /^error: .*data\.img already exists \(a file of 2G\); appliance never overwrites a data disk/,
    );
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(await sha(image)).toBe(before);
    expect(statSync(image).mtimeMs).toBe(mtime);
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
