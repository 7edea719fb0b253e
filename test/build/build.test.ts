/** `appliance build` driven by a scripted fake make: progress, diagnosis per step, interrupts, planner. */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  diagnoseBuildLog,
  ProgressTracker,
  parseProgressLine,
  planBuild,
} from '../../src/buildroot/index.js';
import type { BuildSnapshot } from '../../src/buildroot/planner.js';
import { cliPath, processRunning, repoRoot, runCli, tempDir } from '../helpers.js';

const fakeMake = join(repoRoot, 'test/fixtures/fake-make.sh');

function fakeBuildroot(): string {
  const dir = join(tempDir(), 'buildroot');
  for (const pkg of ['skeleton', 'lz4', 'busybox', 'docker-engine', 'docker-cli', 'htop'])
    mkdirSync(join(dir, 'package', pkg), { recursive: true });
  writeFileSync(join(dir, 'Makefile'), 'export BR2_VERSION := 2026.02.3\n');
  writeFileSync(join(dir, 'Config.in'), '');
  return dir;
}

function buildWith(env: Record<string, string>, extra: string[] = []) {
  const out = join(tempDir(), 'out');
  const r = runCli(
    ['build', '--buildroot', fakeBuildroot(), '--out', out, '--dl-dir', join(out, '..', 'dl'), ...extra],
    {
      env: { APPLIANCE_MAKE: fakeMake, ...env },
    },
  );
  return { ...r, out };
}

describe('progress lines', () => {
  it.each([
    ['>>> docker-engine 28.3.3 Building', { pkg: 'docker-engine', version: '28.3.3', step: 'Building' }],
    [
      '\u001b[7m>>> host-lz4 1.10.0 Downloading\u001b[27m',
      { pkg: 'host-lz4', version: '1.10.0', step: 'Downloading' },
    ],
    ['>>> host-skeleton  Extracting', { pkg: 'host-skeleton', version: '', step: 'Extracting' }],
    [
      '\u001b[7m>>>   Finalizing target directory\u001b[27m',
      { pkg: '', version: '', step: 'Finalizing target directory' },
    ],
    [
      '>>> linux 6.18.7 Installing to images directory',
      { pkg: 'linux', version: '6.18.7', step: 'Installing to images directory' },
    ],
  ])('%j', (line, expected) => {
    expect(parseProgressLine(line)).toEqual(expected);
  });
  it('ignores other output', () => {
    expect(parseProgressLine('gcc -c foo.c')).toBeUndefined();
    expect(parseProgressLine('>>>')).toBeUndefined();
  });
  it('counts packages done and estimates the rest', () => {
    const t = new ProgressTracker(4, 0);
    t.feed('>>> a 1 Downloading', 0);
    t.feed('>>> a 1 Building', 10_000);
    const e = t.feed('>>> b 2 Downloading', 20_000);
    expect(e).toMatchObject({ pkg: 'b', done: 1, total: 4, elapsedSeconds: 20, etaSeconds: 60 });
  });
});

describe('appliance build with a fake make', () => {
  it('builds, shows progress as plain lines without a TTY, keeps the full log and gathers artifacts', () => {
    const r = buildWith({ FAKE_ESCAPES: '1' }, ['--jobs', '3']);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/\[0\/5\] host-skeleton: Downloading/);
    expect(r.stderr).toMatch(/\[4\/5\] linux 6\.18\.7: Downloading/);
    expect(r.stdout).toMatch(/plan: first build/);
    const log = readFileSync(join(r.out, 'build.log'), 'utf8');
    expect(log).toContain('>>> docker-engine 28.3.3 Building');
    expect(readFileSync(join(r.out, 'build', 'calls.log'), 'utf8')).toContain('BR2_JLEVEL=3');
    const manifest = JSON.parse(readFileSync(join(r.out, 'artifacts', 'manifest.json'), 'utf8'));
    expect(manifest).toMatchObject({
      appliance: 'runner-appliance',
      arch: 'x86_64',
      buildrootVersion: '2026.02.3',
    });
    expect(manifest.files.map((f: { name: string }) => f.name)).toEqual(['bzImage', 'rootfs.squashfs']);
    expect(manifest.files[0].sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(existsSync(join(r.out, 'external', 'external.desc'))).toBe(true);
  });

  it('--json prints one JSON event per line', () => {
    const r = buildWith({}, ['--json']);
    expect(r.status, r.stderr).toBe(0);
    const events = r.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(events[0]).toMatchObject({ type: 'step', pkg: 'host-skeleton', total: 5 });
    expect(events.at(-1)).toMatchObject({ type: 'done' });
  });

  it.each([
    ['host-lz4:download', 'host-lz4', 'download', /could not be downloaded.*appliance source/],
    ['busybox:extract', 'busybox', 'extract', /archive of busybox may be corrupt/],
    ['busybox:patch', 'busybox', 'patch', /patch for busybox does not apply/],
    ['docker-engine:configure', 'docker-engine', 'configure', /docker-engine-dirclean/],
    ['docker-engine:build', 'docker-engine', 'build', /compiler errors/],
    ['linux:install', 'linux', 'install', /installing linux failed/],
    ['image:image', undefined, 'image', /building the images failed/],
  ])('a failure at %s is diagnosed', (fail, pkg, step, next) => {
    const r = buildWith({ FAKE_FAIL: fail });
    expect(r.status).toBe(1);
    const first = r.stderr.split('\n').find((l) => l.startsWith('error: ')) ?? '';
    if (pkg)
      expect(first).toMatch(new RegExp(`^error: build failed: ${pkg} \\S+ failed at the ${step} step`));
    else expect(first).toMatch(/^error: build failed: make failed|failed at the image step/);
    expect(first).toMatch(next);
    expect(first).toContain(join(r.out, 'build.log'));
    if (step === 'download')
      expect(r.stderr).toMatch(
        /URLs tried:\n\s+https:\/\/example\.invalid\/host-lz4\/host-lz4-1\.10\.0\.tar\.gz/,
      );
  });

  // One scratch-configure step serves build, source and sbom: each refuses a dropped symbol
  // before its own make call runs, and writes nothing.
  it.each([
    ['build', 'nothing was built', (dir: string) => ['--out', join(dir, 'out')], 'out/build.log'],
    ['source', 'nothing was downloaded', (dir: string) => ['--dl-dir', join(dir, 'dl')], 'dl'],
    ['sbom', 'no SBOM was written', (dir: string) => ['--out', join(dir, 'bom.json')], 'bom.json'],
  ])('a dropped symbol stops %s before its make runs', (command, refused, flags, unwritten) => {
    const dir = tempDir();
    writeFileSync(join(dir, 'appliance.yaml'), '');
    // The fake make keeps every symbol, so make it drop one by editing the defconfig it copies.
    const dropper = join(dir, 'make-dropping.sh');
    writeFileSync(
      dropper,
      `#!/bin/bash\necho "$*" >>"${dir}/make-calls"\n"${fakeMake}" "$@"; rc=$?\nfor a in "$@"; do case "$a" in O=*) o=\${a#O=};; esac; done\n[ -f "$o/.config" ] && sed -i '/BR2_PACKAGE_DOCUUM=y/d' "$o/.config"\nexit $rc\n`,
      { mode: 0o755 },
    );
    const r = runCli(
      [command, '--config', join(dir, 'appliance.yaml'), '--buildroot', fakeBuildroot(), ...flags(dir)],
      { env: { APPLIANCE_MAKE: dropper } },
    );
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(
      new RegExp(`^error: Buildroot dropped or changed 1 requested symbol\\(s\\), so ${refused}`),
    );
    expect(r.stderr).toContain('BR2_PACKAGE_DOCUUM');
    const calls = readFileSync(join(dir, 'make-calls'), 'utf8').trim().split('\n');
    expect(calls).toHaveLength(1);
    expect(calls[0]).toMatch(/ defconfig$/);
    expect(existsSync(join(dir, unwritten))).toBe(false);
  });

  it.each([
    [['--mirror', 'not-a-url'], /^error: --mirror "not-a-url" is not a URL/],
    [['--mirror-only'], /^error: --mirror-only needs --mirror/],
  ])('%j is refused before anything is written', (flags, message) => {
    const dir = tempDir();
    const r = runCli(
      [
        'build',
        '--buildroot',
        fakeBuildroot(),
        '--out',
        join(dir, 'out'),
        '--dl-dir',
        join(dir, 'dl'),
        ...flags,
      ],
      { env: { APPLIANCE_MAKE: fakeMake } },
    );
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(message);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(existsSync(join(dir, 'out'))).toBe(false);
    expect(existsSync(join(dir, 'dl'))).toBe(false);
  });

  it('Ctrl-C stops make and every child, and says how to resume', async () => {
    const out = join(tempDir(), 'out');
    const child = spawn(process.execPath, [cliPath, 'build', '--buildroot', fakeBuildroot(), '--out', out], {
      env: { ...process.env, APPLIANCE_MAKE: fakeMake, FAKE_HANG: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d) => {
      stderr += String(d);
    });
    for (let i = 0; i < 100 && !/waiting on \d+/.test(readIfExists(join(out, 'build.log'))); i++)
      await new Promise((r) => setTimeout(r, 100));
    const grandchild = Number(/waiting on (\d+)/.exec(readIfExists(join(out, 'build.log')))?.[1]);
    expect(grandchild).toBeGreaterThan(1);
    child.kill('SIGINT');
    const code = await new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
    expect(code).toBe(130);
    expect(stderr).toMatch(/run the same 'appliance build' command to resume/);
    await new Promise((r) => setTimeout(r, 300));
    expect(processRunning(grandchild)).toBe(false);
  });
});

function readIfExists(path: string): string {
  return existsSync(path) ? readFileSync(path, 'utf8') : '';
}

describe('appliance source with a fake make', () => {
  it('reports every package that could not be downloaded, and those make never tried', () => {
    const dir = tempDir();
    const dl = join(dir, 'dl');
    // show-info as Buildroot prints it: docuum's download needs host-rustc built, so when that
    // failed make never tried docuum; lz4 shares host-lz4's archive; busybox is downloaded.
    const entry = (dlDir: string, source: string, version: string) => ({
      type: 'target',
      virtual: false,
      version,
      dl_dir: dlDir,
      downloads: [{ source, uris: [] }],
    });
    const showInfo = {
      'host-lz4': entry('lz4', 'lz4-1.10.0.tar.gz', '1.10.0'),
      lz4: entry('lz4', 'lz4-1.10.0.tar.gz', '1.10.0'),
      busybox: entry('busybox', 'busybox-1.37.0.tar.bz2', '1.37.0'),
      'docker-engine': entry('docker-engine', 'docker-engine-28.3.3-go2.tar.gz', '28.3.3'),
      docuum: entry('docuum', 'docuum-0.25.1-cargo4.tar.gz', '0.25.1'),
      toolchain: { type: 'target', virtual: true },
    };
    writeFileSync(join(dir, 'show-info.json'), JSON.stringify(showInfo));
    mkdirSync(join(dl, 'busybox'), { recursive: true });
    writeFileSync(join(dl, 'busybox', 'busybox-1.37.0.tar.bz2'), '');
    const make = join(dir, 'make-with-show-info.sh');
    writeFileSync(
      make,
      `#!/bin/bash\ncase " $* " in *" show-info "*) cat "${dir}/show-info.json";; *) exec "${fakeMake}" "$@";; esac\n`,
      { mode: 0o755 },
    );
    const r = runCli(['source', '--buildroot', fakeBuildroot(), '--dl-dir', dl], {
      env: { APPLIANCE_MAKE: make, FAKE_FAIL_SOURCES: 'host-lz4 docker-engine' },
    });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(
      /^error: 2 package\(s\) could not be downloaded: host-lz4 1\.10\.0, docker-engine 28\.3\.3; 1 more not tried, since a download dependency failed: docuum 0\.25\.1: /m,
    );
    expect(r.stderr).toContain(join(dl, 'appliance-source.log'));
  });
  it('says where the sources are when all downloads worked', () => {
    const dl = join(tempDir(), 'dl');
    const r = runCli(['source', '--buildroot', fakeBuildroot(), '--dl-dir', dl], {
      env: { APPLIANCE_MAKE: fakeMake },
    });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toContain(`every source is in ${dl}`);
  });
});

describe('download diagnosis from a real Buildroot log', () => {
  it('names the package, the step and every URL tried', () => {
    const log = [
      '\u001b[7m>>> host-lz4 1.10.0 Downloading\u001b[27m',
      "wget -nd -t 3 --connect-timeout=10 -O '/o/build/.lz4-1.10.0.tar.gz.rchue1/output' 'http://127.0.0.1:9/mirror/lz4/lz4-1.10.0.tar.gz' ",
      'Connecting to 127.0.0.1:9... failed: Connection refused.',
      "wget -nd -t 3 --connect-timeout=10 -O '/o/build/.lz4-1.10.0.tar.gz.HgkkQo/output' 'http://127.0.0.1:9/mirror/lz4-1.10.0.tar.gz' ",
      'make[1]: *** [package/pkg-generic.mk:179: /o/build/host-lz4-1.10.0/.stamp_downloaded] Error 1',
    ].join('\n');
    const d = diagnoseBuildLog(log, { out: '/o', dlDir: '/dl' });
    expect(d).toMatchObject({ pkg: 'host-lz4', version: '1.10.0', step: 'download' });
    expect(d.urls).toEqual([
      'http://127.0.0.1:9/mirror/lz4/lz4-1.10.0.tar.gz',
      'http://127.0.0.1:9/mirror/lz4-1.10.0.tar.gz',
    ]);
    expect(d.nextStep).toContain('/dl/lz4/');
  });
});

describe('rebuild planner', () => {
  const base: BuildSnapshot = {
    arch: 'x86_64',
    config: {
      BR2_x86_64: 'y',
      BR2_TOOLCHAIN_BUILDROOT_GLIBC: 'y',
      BR2_INIT_SYSTEMD: 'y',
      BR2_PACKAGE_DOCKER_ENGINE: 'y',
      BR2_PACKAGE_HTOP: 'y',
    },
    tree: {
      'board/rootfs-overlay/etc/hostname': 'a',
      'board/linux.fragment': 'k',
      'package/docuum/docuum.mk': 'd',
    },
  };
  const withConfig = (c: Record<string, string | undefined>): BuildSnapshot => ({
    ...base,
    config: Object.fromEntries(
      Object.entries({ ...base.config, ...c }).filter(([, v]) => v !== undefined),
    ) as Record<string, string>,
  });
  it('first build', () => expect(planBuild(undefined, base, false).kind).toBe('first'));
  it('nothing changed', () => expect(planBuild(base, base, true).kind).toBe('up-to-date'));
  it('overlay or unit change only → make (re-pack)', () => {
    const p = planBuild(
      base,
      { ...base, tree: { ...base.tree, 'board/rootfs-overlay/etc/hostname': 'b' } },
      true,
    );
    expect(p.kind).toBe('incremental');
    expect(p.reasons.join()).toMatch(/re-packed/);
  });
  it('package added → make', () => {
    const p = planBuild(base, withConfig({ BR2_PACKAGE_STRACE: 'y' }), true);
    expect(p).toMatchObject({ kind: 'incremental', dirclean: [] });
    expect(p.reasons.join()).toMatch(/added: strace/);
  });
  it('package removed → dirclean it and warn that its files stay', () => {
    const p = planBuild(base, withConfig({ BR2_PACKAGE_HTOP: undefined }), true);
    expect(p).toMatchObject({ kind: 'dirclean', dirclean: ['htop'] });
    expect(p.warnings.join()).toMatch(/stay in the image until a clean build/);
  });
  it("a package's options changed → dirclean that package", () => {
    const p = planBuild(base, withConfig({ BR2_PACKAGE_DOCKER_ENGINE_DRIVER_BTRFS: 'y' }), true);
    expect(p).toMatchObject({ kind: 'dirclean', dirclean: ['docker-engine'] });
  });
  it('kernel fragment changed → rebuild linux', () => {
    const p = planBuild(base, { ...base, tree: { ...base.tree, 'board/linux.fragment': 'k2' } }, true);
    expect(p).toMatchObject({ kind: 'dirclean', dirclean: ['linux'] });
  });
  it.each([
    ['arch', { ...base, arch: 'aarch64' }],
    [
      'toolchain',
      withConfig({ BR2_TOOLCHAIN_BUILDROOT_GLIBC: undefined, BR2_TOOLCHAIN_BUILDROOT_MUSL: 'y' }),
    ],
    ['init', withConfig({ BR2_INIT_SYSTEMD: undefined, BR2_INIT_BUSYBOX: 'y' })],
  ] as [string, BuildSnapshot][])('%s change → clean build', (_what, next) => {
    expect(planBuild(base, next, true).kind).toBe('clean');
  });
  it('build --plan prints the plan and runs nothing', () => {
    const r = buildWith({}, ['--plan']);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^plan: first build/);
    expect(existsSync(join(r.out, 'build'))).toBe(false);
    expect(existsSync(join(r.out, 'build.log'))).toBe(false);
  });
  it('a second build after an overlay change is incremental, after a package option change it dircleans', () => {
    const dir = tempDir();
    const cfg = join(dir, 'appliance.yaml');
    const out = join(dir, 'out');
    const br = fakeBuildroot();
    const run = (yaml: string, extra: string[] = []) => {
      writeFileSync(cfg, yaml);
      return runCli(['build', '--config', cfg, '--buildroot', br, '--out', out, ...extra], {
        env: { APPLIANCE_MAKE: fakeMake },
      });
    };
    expect(run('').status).toBe(0);
    expect(run('name: runner-appliance\nrunner: {concurrent: 5}\n', ['--plan']).stdout).toMatch(
      /^plan: incremental/,
    );
    const third = run('buildroot: {symbols: {BR2_PACKAGE_DOCKER_ENGINE_DRIVER_BTRFS: y}}\n');
    expect(third.status, third.stderr).toBe(0);
    expect(third.stdout).toMatch(/plan: rebuild docker-engine/);
    expect(readFileSync(join(out, 'build', 'dirclean.log'), 'utf8')).toBe('docker-engine\n');
  });
});
