import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { aarch64PanicDevice } from '../../src/libvirt/xml.js';
import {
  commandExists,
  execAsync,
  qemuWith,
  repoRoot,
  runCliAsync,
  skipReason,
  tempDir,
} from '../helpers.js';
import {
  droppedToPrivate,
  guestIp,
  httpGet,
  removeTierObjects,
  serialUntilDone,
  startTier,
  stopTier,
  type TierDaemons,
  tierVirsh,
  tinyGuestNetwork,
  systemUri as uri,
} from './tier.js';

const tag = `raarm${process.pid}`;
const pool = `${tag}-pool`;
const network = `${tag}-net`;
const subnet = '192.168.232';

function prerequisite(): string | undefined {
  if (process.env.APPLIANCE_SKIP_SMOKE_TIER) return 'APPLIANCE_SKIP_SMOKE_TIER is set';
  if (process.getuid?.() !== 0)
    return 'needs root (mmdebstrap and binfmt_misc for the stand-in, the libvirt system daemon)';
  if (process.arch !== 'x64') return 'the stand-in is built on an x86_64 host';
  const tools: [string, string][] = [
    ['qemu-system-aarch64', 'qemu-system-arm'],
    ['aarch64-linux-gnu-gcc', 'gcc-aarch64-linux-gnu'],
    ['qemu-aarch64-static', 'qemu-user-static'],
    ['mmdebstrap', 'mmdebstrap'],
    ['arch-test', 'arch-test'],
    ['mksquashfs', 'squashfs-tools'],
    ['virsh', 'libvirt-clients'],
    ['libvirtd', 'libvirt-daemon-system'],
    ['dnsmasq', 'dnsmasq-base'],
  ];
  const absent = tools.filter(([t]) => !commandExists(t));
  if (absent.length)
    return `missing ${absent.map(([t]) => t).join(', ')} (apt-get install --no-install-recommends ${[...new Set(absent.map(([, p]) => p))].join(' ')})`;
  return undefined;
}
const skip = skipReason('aarch64 tier', prerequisite());

describe.skipIf(skip)('aarch64 tier: the arm64 stand-in and the aarch64 domain XML under TCG', () => {
  let image: { kernel: string; rootfs: string };
  let platformImages: Record<string, string>;
  let work: string;

  beforeAll(async () => {
    // Cold, this builds the arm64 stand-in (cross-built kernel, mmdebstrap under the emulator),
    // or waits for test/prebuild.ts's build of it.
    const out = await execAsync('bash', [
      join(repoRoot, 'test/fixtures/standin/build-standin.sh'),
      '--arch',
      'aarch64',
    ]);
    image = JSON.parse(out.trim().split('\n').pop() ?? '{}');
    const images = await execAsync('bash', [
      join(repoRoot, 'test/fixtures/platform-images.sh'),
      'linux/arm64',
      'linux/amd64',
      'linux/arm/v7',
    ]);
    platformImages = JSON.parse(images.trim().split('\n').pop() ?? '{}');
    work = tempDir('appliance-aarch64-');
  }, 90 * 60_000);

  it(
    'appliance smoke passes under qemu-system-aarch64, the architecture taken from the kernel image, the amd64 and arm/v7 containers run under emulation',
    async () => {
      const out = join(work, 'smoke');
      const args = [
        'smoke',
        '--kernel',
        image.kernel,
        '--rootfs',
        image.rootfs,
        '--accel',
        'tcg',
        '--out',
        out,
      ];
      for (const [platform, tar] of Object.entries(platformImages))
        args.push('--platform-image', `${platform}=${tar}`);
      const r = await runCliAsync(args);
      expect(r.status, `${r.stdout}\n${r.stderr}`).toBe(0);
      expect(r.stdout).toContain('appliance smoke: PASSED (TCG,');
      const junit = readFileSync(join(out, 'junit.xml'), 'utf8');
      expect(junit).toContain('<property name="arch" value="aarch64"/>');
      for (const name of [
        'boot.multi-user',
        'rootfs.read-only-squashfs',
        'data-disk.var-lib-docker',
        'docker.info',
        'docker.run-imported-image',
        'docuum.active',
        'gitlab-runner.state',
        'multiarch.run-amd64',
        'multiarch.run-arm-v7',
      ]) {
        expect(junit).toContain(`<testcase name="${name}"`);
      }
      expect(junit).not.toMatch(/<failure/);
      // As on x86_64, every check ran, the two-platform build included.
      expect(junit).not.toMatch(/<skipped/);
      const serial = readFileSync(join(out, 'serial.log'), 'utf8');
      expect(serial).toMatch(/Linux version \S+ .*aarch64-linux-gnu/);
      expect(qemuWith(out)).toBe('');
    },
    30 * 60_000,
  );

  describe('libvirt', () => {
    let daemons: TierDaemons | undefined;
    let host: Awaited<ReturnType<typeof tinyGuestNetwork>> | undefined;
    const name = `${tag}-vm`;

    beforeAll(async () => {
      daemons = startTier();
      host = await tinyGuestNetwork(network, `${tag.slice(0, 10)}br`, subnet, work);
    }, 600_000);

    afterAll(() => {
      host?.close();
      removeTierObjects({ domains: [name], pool, network });
      if (daemons) stopTier(daemons);
    });

    it('the aarch64 domain XML (virt, GICv3, ttyAMA0) boots: credential, DHCP and DNS reach the guest, the filter drops its connections to private space, the host reaches it', async () => {
      const out = await execAsync('bash', [
        join(repoRoot, 'test/fixtures/tiny-guest.sh'),
        '--arch',
        'aarch64',
      ]);
      const get = (k: string) => new RegExp(`^${k}=(.*)$`, 'm').exec(out)?.[1] ?? '';
      expect(get('initrd')).toBe('');
      const cfg = join(work, `${name}.yaml`);
      writeFileSync(
        cfg,
        `name: ${name}\narch: aarch64\nvm: {memory: 512M, vcpus: 1}\ndataDisk: {size: 1G}\n`,
      );
      const token = join(work, 'token');
      writeFileSync(token, `glrt-arm-${process.pid}`);
      const define = await runCliAsync([
        'vm',
        'define',
        '--config',
        cfg,
        '--connect',
        uri,
        '--pool',
        pool,
        '--kernel',
        get('kernel'),
        '--rootfs',
        get('rootfs'),
        '--network',
        network,
        '--accel',
        'tcg',
        '--credential',
        `gitlab-runner.token=${token}`,
      ]);
      expect(define.status, define.stderr).toBe(0);
      const xml = tierVirsh(['dumpxml', name]);
      expect(xml).toMatch(/<type arch='aarch64' machine='virt[^']*'>hvm<\/type>/);
      expect(xml).toContain("<gic version='3'/>");
      expect(xml).toContain('console=ttyAMA0,115200');
      expect(xml).not.toContain('<initrd>');
      // QEMU's pvpanic-pci, passed through at a slot libvirt's own devices do not take.
      expect(xml).toContain(`<qemu:arg value='${aarch64PanicDevice}'/>`);
      expect(xml).toContain(`<filterref filter='${name}-isolate'>`);
      const start = await runCliAsync(['vm', 'start', '--config', cfg, '--connect', uri]);
      expect(start.status, start.stderr).toBe(0);
      const log = await serialUntilDone(name, 300);
      expect(log).toMatch(/TINY-GUEST: booted \S+ aarch64/);
      expect(log).toContain(`TINY-GUEST: credential gitlab-runner.token=glrt-arm-${process.pid}`);
      expect(log).toMatch(/TINY-GUEST: dhcp ok server=192\.168\.232\.1/);
      expect(log).toMatch(/TINY-GUEST: dns ok/);
      expect(log).toMatch(/TINY-GUEST: ping gateway blocked/);
      expect(log).toMatch(/TINY-GUEST: tcp gateway blocked/);
      expect(host?.connections()).toBe(0);
      expect(await httpGet(guestIp(log), 8080)).toContain('tiny-guest-http');
      expect(droppedToPrivate(name)).toBeGreaterThan(0);
      expect((await runCliAsync(['vm', 'destroy', '--config', cfg, '--connect', uri])).status).toBe(0);
    }, 900_000);
  });
});
