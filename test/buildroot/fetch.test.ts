/** `appliance buildroot fetch` from a folder, a git repository and a URL (served on 127.0.0.1). */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fetchBuildroot } from '../../src/buildroot/index.js';
import { tempDir } from '../helpers.js';

/** A minimal folder that looks like a Buildroot release to the version check. */
function fakeBuildroot(version: string): string {
  const dir = join(tempDir(), `buildroot-${version}`);
  mkdirSync(join(dir, 'package'), { recursive: true });
  writeFileSync(join(dir, 'Makefile'), `# fake\nexport BR2_VERSION := ${version}\n`);
  writeFileSync(join(dir, 'Config.in'), '');
  writeFileSync(join(dir, 'package', 'Config.in'), '');
  return dir;
}

describe('buildroot fetch', () => {
  const src = fakeBuildroot('2026.02.3');
  const tarball = join(tempDir(), 'buildroot-2026.02.3.tar.gz');
  execFileSync('tar', ['-czf', tarball, '-C', join(src, '..'), 'buildroot-2026.02.3']);
  const sha = createHash('sha256').update(readFileSync(tarball)).digest('hex');
  let url = '';
  const server = createServer((req, res) => {
    if (req.url === '/buildroot.tar.gz') res.end(readFileSync(tarball));
    else {
      res.statusCode = 404;
      res.end();
    }
  });
  beforeAll(async () => {
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/buildroot.tar.gz`;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  it('copies a local folder into place', async () => {
    const dest = join(tempDir(), 'br');
    expect(await fetchBuildroot({ version: '2026.02.3', fromDir: src, dest })).toBe(dest);
    expect(readFileSync(join(dest, 'Makefile'), 'utf8')).toContain('2026.02.3');
  });

  it('refuses a folder of another release and leaves nothing behind', async () => {
    const parent = tempDir();
    const dest = join(parent, 'br');
    await expect(
      fetchBuildroot({ version: '2026.02.3', fromDir: fakeBuildroot('2025.02.1'), dest }),
    ).rejects.toThrow(/is Buildroot 2025\.02\.1, not 2026\.02\.3/);
    expect(readdirSync(parent)).toEqual([]);
  });

  it('downloads a tarball and checks its sha256', async () => {
    const dest = join(tempDir(), 'br');
    await fetchBuildroot({ version: '2026.02.3', url, sha256: sha, dest });
    expect(existsSync(join(dest, 'Makefile'))).toBe(true);
  });

  it('refuses a tarball whose sha256 differs, extracting nothing', async () => {
    const parent = tempDir();
    await expect(
      fetchBuildroot({ version: '2026.02.3', url, sha256: '0'.repeat(64), dest: join(parent, 'br') }),
    ).rejects.toThrow(/sha256 mismatch/);
    expect(readdirSync(parent)).toEqual([]);
  });

  it('refuses to download without a pinned or given sha256', async () => {
    await expect(fetchBuildroot({ version: '2026.02.3', url, dest: join(tempDir(), 'br') })).rejects.toThrow(
      /no sha256 is pinned/,
    );
  });

  it('extracts a tag from a git repository and checks it against the pinned commit', async () => {
    const repo = tempDir();
    execFileSync('sh', [
      '-c',
      `cp -a ${src}/. ${repo}/ && cd ${repo} && git init -q && git add -A && git -c user.name=t -c user.email=t@t commit -qm x && git tag 2026.02.3`,
    ]);
    await expect(
      fetchBuildroot({ version: '2026.02.3', fromGit: repo, dest: join(tempDir(), 'br') }),
    ).rejects.toThrow(/points to [0-9a-f]+, but the pin says 679b9ead/);
    const mirror = '/work/.mirror/buildroot+buildroot/repo';
    if (existsSync(mirror)) {
      const dest = join(tempDir(), 'br');
      await fetchBuildroot({ version: '2026.02.3', fromGit: mirror, dest });
      expect(readFileSync(join(dest, 'Makefile'), 'utf8')).toMatch(/export BR2_VERSION := 2026\.02\.3/);
    } else {
      process.stderr.write(`\n[skip] fetch from the real Buildroot history: no clone at ${mirror}\n`);
    }
  });
});
