/** multiarch.emulate: defaults per architecture, config errors, and what the tree and the smoke get from it. */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { emulatedPlatforms, emulatedTargets, parseAppliance } from '../../src/config/index.js';
import { buildTree } from '../../src/render/files.js';
import { builtinChecks, ociSeparator, platformChecks } from '../../src/smoke/checks.js';
import type { ExecResult } from '../../src/smoke/ssh.js';
import { repoRoot, runCliAsync, tempDir } from '../helpers.js';

const parse = (yaml: string) => parseAppliance(yaml, join(tempDir(), 'appliance.yaml'));
const text = (tree: ReturnType<typeof buildTree>, path: string) => tree.get(path)?.content.toString();

describe('multiarch.emulate', () => {
  it('defaults to the other common platforms of each architecture; [] turns it off', () => {
    const x86 = parse('arch: x86_64\n');
    expect(emulatedPlatforms(x86)).toEqual(['linux/arm64', 'linux/arm/v7']);
    expect(emulatedPlatforms(x86, 'aarch64')).toEqual(['linux/amd64', 'linux/arm/v7']);
    expect(emulatedPlatforms(parse('arch: aarch64\n'))).toEqual(['linux/amd64', 'linux/arm/v7']);
    expect(emulatedPlatforms(parse('multiarch:\n  emulate: []\n'))).toEqual([]);
    // An explicit list is for the appliance's arch; the other arch's image leaves out its own platform.
    const chosen = parse('multiarch:\n  emulate: [linux/arm64, linux/riscv64]\n');
    expect(emulatedPlatforms(chosen, 'aarch64')).toEqual(['linux/riscv64']);
    // arm/v6 and arm/v7 share one emulator.
    const arm = parse('multiarch:\n  emulate: [linux/arm/v6, linux/arm/v7]\n');
    expect(emulatedTargets(arm).map((t) => t.qemuTarget)).toEqual(['arm']);
  });

  const bad: [string, string, RegExp][] = [
    [
      'a native platform',
      'multiarch:\n  emulate: [linux/arm64, linux/amd64]\n',
      /^error: .*:2: multiarch\.emulate\[1\]: linux\/amd64 runs natively on an x86_64 appliance: leave it out$/,
    ],
    [
      'a native platform on aarch64',
      'arch: aarch64\nmultiarch:\n  emulate: [linux/arm64]\n',
      /multiarch\.emulate\[0\]: linux\/arm64 runs natively on an aarch64 appliance/,
    ],
    [
      'a platform QEMU cannot emulate',
      'multiarch:\n  emulate: [linux/arm64, windows/amd64]\n',
      /multiarch\.emulate\[1\]: "windows\/amd64" is not a platform QEMU can emulate here \(one of linux\/amd64, /,
    ],
    ['not a list', 'multiarch:\n  emulate: linux/arm64\n', /multiarch\.emulate: expected array, got string/],
  ];
  for (const [title, yaml, expected] of bad)
    it(`refuses ${title} in one line, exit 2, nothing written`, async () => {
      const dir = tempDir();
      writeFileSync(join(dir, 'appliance.yaml'), yaml);
      const out = join(dir, 'out');
      const r = await runCliAsync(['render', '--config', join(dir, 'appliance.yaml'), '--out', out]);
      expect(r.status).toBe(2);
      expect(r.stderr.trimEnd().split('\n')).toHaveLength(1);
      expect(r.stderr.trim()).toMatch(expected);
      expect(existsSync(out)).toBe(false);
    });

  it("renders each arch's binfmt.d entries (QEMU's magic and mask, F flag) and static emulator symbols", () => {
    const tree = buildTree(parse('{}\n'));
    // The strings of QEMU's scripts/qemu-binfmt-conf.sh as Debian 13's qemu-user 1:10.0.13 ships
    // them (/usr/share/qemu/binfmt.d/qemu-aarch64.conf), with our emulator path and flags.
    expect(text(tree, 'board/rootfs-overlay-x86_64/usr/lib/binfmt.d/qemu-aarch64.conf')).toBe(
      ':qemu-aarch64:M::\\x7f\\x45\\x4c\\x46\\x02\\x01\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x02\\x00\\xb7\\x00:\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\x00\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xfe\\xff\\xff\\xff:/usr/bin/qemu-aarch64-static:F\n',
    );
    expect(text(tree, 'board/rootfs-overlay-aarch64/usr/lib/binfmt.d/qemu-x86_64.conf')).toBe(
      ':qemu-x86_64:M::\\x7f\\x45\\x4c\\x46\\x02\\x01\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x02\\x00\\x3e\\x00:\\xff\\xff\\xff\\xff\\xff\\xfe\\xfe\\xfc\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xfe\\xff\\xff\\xff:/usr/bin/qemu-x86_64-static:F\n',
    );
    // Never an entry for the image's own architecture (it would run every native program under QEMU).
    expect(tree.has('board/rootfs-overlay-x86_64/usr/lib/binfmt.d/qemu-x86_64.conf')).toBe(false);
    expect(tree.has('board/rootfs-overlay-aarch64/usr/lib/binfmt.d/qemu-aarch64.conf')).toBe(false);
    const x86 = text(tree, 'configs/runner_appliance_x86_64_defconfig') ?? '';
    expect(x86).toContain(
      'board/rootfs-overlay $(BR2_EXTERNAL_RUNNER_APPLIANCE_PATH)/board/rootfs-overlay-x86_64"',
    );
    for (const line of [
      'BR2_SHARED_STATIC_LIBS=y',
      'BR2_PACKAGE_QEMU_USER_STATIC=y',
      'BR2_PACKAGE_QEMU_USER_STATIC_TARGET_AARCH64=y',
      'BR2_PACKAGE_QEMU_USER_STATIC_TARGET_ARM=y',
    ])
      expect(x86.split('\n')).toContain(line);
    const daemon = JSON.parse(text(tree, 'board/rootfs-overlay/etc/docker/daemon.json') ?? '{}');
    // Docker's containerd image store (a multi-platform build with the default builder needs it),
    // whose snapshotter is overlayfs: "overlay2" would be refused at the first image.
    expect(daemon.features).toEqual({ 'containerd-snapshotter': true });
    expect(daemon['storage-driver']).toBe('overlayfs');
    expect(text(tree, 'board/post-build.sh')).toMatch(
      /^ln -sfn \/run\/root-docker "\$\{TARGET_DIR\}\/root\/\.docker"$/m,
    );
  });

  it('emulate: [] renders no binfmt.d entry, no emulator and no arch overlay', () => {
    const tree = buildTree(parse('multiarch:\n  emulate: []\n'));
    expect([...tree.keys()].filter((p) => p.includes('binfmt.d'))).toEqual([]);
    const x86 = text(tree, 'configs/runner_appliance_x86_64_defconfig') ?? '';
    expect(x86).not.toContain('QEMU_USER_STATIC');
    expect(x86).not.toContain('BR2_SHARED_STATIC_LIBS');
    expect(x86).not.toContain('rootfs-overlay-x86_64');
  });

  it('the emulator path the binfmt.d entries name is where the package installs it', () => {
    const mk = readFileSync(
      join(repoRoot, 'src/render/templates/package/qemu-user-static/qemu-user-static.mk'),
      'utf8',
    );
    expect(mk).toContain('$(TARGET_DIR)/usr/bin/qemu-$(t)-static');
  });
});

describe('multiarch smoke checks', () => {
  const result = (stdout: string, code = 0): ExecResult => ({ code, stdout, stderr: '', timedOut: false });
  const config = parse('{}\n');
  const ctx = { config };

  it('one check per emulated platform and the buildx check when amd64 and arm64 are both there', () => {
    const names = (e: string[], native: string) => platformChecks(e, native).map((c) => c.name);
    expect(names(['linux/arm64', 'linux/arm/v7'], 'linux/amd64')).toEqual([
      'multiarch.run-arm64',
      'multiarch.run-arm-v7',
      'multiarch.buildx-two-platforms',
    ]);
    expect(names(['linux/amd64', 'linux/arm/v7'], 'linux/arm64')).toContain('multiarch.buildx-two-platforms');
    expect(names(['linux/arm/v7'], 'linux/amd64')).toEqual(['multiarch.run-arm-v7']);
    expect(names([], 'linux/amd64')).toEqual([]);
    // Names do not clash with the built-in ones.
    const all = [
      ...builtinChecks.map((c) => c.name),
      ...names(['linux/arm64', 'linux/arm/v7'], 'linux/amd64'),
    ];
    expect(new Set(all).size).toBe(all.length);
  });

  it('the run check runs unprivileged and wants the platform machine', () => {
    const [arm64, armv7] = platformChecks(['linux/arm64', 'linux/arm/v7'], 'linux/amd64');
    expect(arm64?.command).toMatch(
      /docker run --pull never --network none --cap-drop ALL --security-opt no-new-privileges --platform linux\/arm64 /,
    );
    expect(arm64?.command).not.toContain('--privileged');
    expect(arm64?.judge(result('aarch64\n'), ctx)).toBeUndefined();
    expect(arm64?.judge(result('x86_64\n'), ctx)).toMatch(/reports uname -m "x86_64", not "aarch64"/);
    expect(armv7?.judge(result('armv7l\n'), ctx)).toBeUndefined();
    expect(armv7?.judge(result('', 126), ctx)).toMatch(/did not run \(exit 126\)/);
    expect(arm64?.stdin?.(ctx)).toEqual({ skip: expect.stringMatching(/--platform-image linux\/arm64=TAR/) });
    expect(arm64?.stdin?.({ ...ctx, platformImages: { 'linux/arm64': Buffer.from('x') } })).toEqual(
      Buffer.from('x'),
    );
  });

  it('the buildx check reads the nested OCI index and wants both platforms', () => {
    const buildx = platformChecks(['linux/arm64'], 'linux/amd64').at(-1);
    // What BuildKit 0.13 wrote in the stand-in: a one-line index.json naming an image index,
    // and that index indented, listing the platforms and an attestation manifest; the check
    // prints each document followed by a separator line.
    const top = JSON.stringify({
      schemaVersion: 2,
      manifests: [{ mediaType: 'application/vnd.oci.image.index.v1+json', digest: 'sha256:ab' }],
    });
    const nested = (archs: string[]) =>
      JSON.stringify(
        {
          schemaVersion: 2,
          manifests: [
            ...archs.map((a) => ({ digest: 'sha256:cd', platform: { os: 'linux', architecture: a } })),
            {
              digest: 'sha256:ef',
              annotations: { 'vnd.docker.reference.type': 'attestation-manifest' },
              platform: { architecture: 'unknown', os: 'unknown' },
            },
          ],
        },
        null,
        2,
      );
    const out = (...docs: string[]) => docs.map((d) => `${d}\n${ociSeparator}\n`).join('');
    expect(buildx?.judge(result(out(top, nested(['amd64', 'arm64']))), ctx)).toBeUndefined();
    expect(buildx?.judge(result(out(top, nested(['amd64']))), ctx)).toMatch(
      /lists linux\/amd64, unknown\/unknown, not linux\/arm64/,
    );
    expect(buildx?.judge(result(out(top)), ctx)).toMatch(/lists no platform, not linux\/amd64, linux\/arm64/);
    // Docker's containerd image store off: a failure (the appliance turns it on), not a skip.
    expect(
      buildx?.judge({ ...result('', 4), stderr: "Docker's containerd image store is off: …\n" }, ctx),
    ).toMatch(/image store is off: .*a multi-platform build needs it/);
    expect(buildx?.judge(result('', 1), ctx)).toMatch(/buildx build failed/);
  });
});
