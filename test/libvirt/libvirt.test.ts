/**
 * libvirt tier, against a real libvirtd (started here when none answers, and stopped again):
 * `appliance vm define` + `vm start` boot a real kernel under TCG from the emitted XML; a
 * credential file reaches the guest through fw_cfg; on a libvirt network without forwarding the
 * guest behind the isolation filter gets DHCP and DNS from the gateway but cannot open a
 * connection to it (ping, TCP to a host listener), while the host's connection to a listener in
 * the guest is answered; the same guest without the filter reaches the gateway — seen from
 * inside the guest, from the host and in the filter's counters. Everything defined here is removed.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultImagePaths, imageVolumes } from '../../src/guest/index.js';
import { recordedDigests } from '../../src/libvirt/index.js';
import { commandExists, execAsync, repoRoot, runCli, runCliAsync, skipReason, tempDir } from '../helpers.js';
import {
  droppedToPrivate,
  guestIp,
  httpGet,
  removeTierObjects,
  serialUntilDone,
  startTier,
  stopTier,
  type TierDaemons,
  tinyGuestNetwork,
} from './tier.js';

const uri = 'qemu:///system';
const tag = `ratest${process.pid}`;
const pool = `${tag}-pool`;
const network = `${tag}-net`;
const subnet = '192.168.231';

function virsh(args: string[], allowFailure = false): string {
  const r = spawnSync('virsh', ['-q', '-c', uri, ...args], { encoding: 'utf8', timeout: 120_000 });
  if (r.status !== 0 && !allowFailure) throw new Error(`virsh ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

/**
 * Every host tool this tier and the code under test call, daemons' helpers included (libvirt
 * starts dnsmasq for a network and iptables/ip6tables/ebtables for the filter), with the Debian
 * package that provides it.
 */
const hostTools: [tool: string, pkg: string][] = [
  ['virsh', 'libvirt-clients'],
  ['libvirtd', 'libvirt-daemon-system'],
  ['virtlogd', 'libvirt-daemon-system'],
  ['qemu-system-x86_64', 'qemu-system-x86'],
  ['dnsmasq', 'dnsmasq-base'],
  ['iptables', 'iptables'],
  ['ip6tables', 'iptables'],
  ['ebtables', 'ebtables'],
  ['mksquashfs', 'squashfs-tools'],
  ['depmod', 'kmod'],
  ['cpio', 'cpio'],
  ['xz', 'xz-utils'],
  ['zstd', 'zstd'],
];

/** What is missing, as one line naming the packages to install; undefined when nothing is. */
function missingPrerequisites(): string | undefined {
  const missing = hostTools.filter(([tool]) => !commandExists(tool));
  const problems = missing.map(([tool, pkg]) => `${tool} (apt package ${pkg})`);
  const bridgeNf = '/proc/sys/net/bridge/bridge-nf-call-iptables';
  if (!existsSync(bridgeNf) || readFileSync(bridgeNf, 'utf8').trim() !== '1')
    problems.push(
      'bridge netfilter, without which the isolation filter does nothing (modprobe br_netfilter; sysctl net.bridge.bridge-nf-call-iptables=1 net.bridge.bridge-nf-call-ip6tables=1)',
    );
  if (problems.length === 0) return undefined;
  const pkgs = [...new Set(missing.map(([, pkg]) => pkg))];
  return `missing ${problems.join(', ')}${pkgs.length ? `: apt-get install --no-install-recommends ${pkgs.join(' ')}` : ''}`;
}
const missing = missingPrerequisites();
// A machine without libvirt at all skips the tier (outside CI); one with libvirt but without a
// helper it needs fails below with the package names, instead of deep inside beforeAll.
const noLibvirt = !commandExists('virsh') && !commandExists('libvirtd') && !process.env.CI;
const skip = skipReason('libvirt tier', noLibvirt ? 'libvirt is not installed' : missing);

describe.skipIf(noLibvirt)('libvirt tier prerequisites', () => {
  it('every host tool the tier and libvirt call is installed', () => {
    expect(missing, missing).toBeUndefined();
  });
});

async function guest(): Promise<{ kernel: string; initrd: string; rootfs: string }> {
  const out = await execAsync('bash', [join(repoRoot, 'test/fixtures/tiny-guest.sh')], {
    env: { ...process.env, PATH: `${process.env.PATH}:/usr/sbin:/sbin` },
  });
  const get = (k: string) => new RegExp(`^${k}=(.*)$`, 'm').exec(out)?.[1] ?? '';
  return { kernel: get('kernel'), initrd: get('initrd'), rootfs: get('rootfs') };
}

describe.skipIf(skip)('libvirt tier', () => {
  let work: string;
  let g: { kernel: string; initrd: string; rootfs: string };
  const defined: string[] = [];
  let daemons: TierDaemons | undefined;

  /** The network and the listener on the gateway address the guest tries to connect to. */
  let host: Awaited<ReturnType<typeof tinyGuestNetwork>> | undefined;

  beforeAll(async () => {
    daemons = startTier();
    g = await guest();
    work = tempDir('appliance-libvirt-');
    // No <forward>: an isolated network that never reaches the host's LAN.
    host = await tinyGuestNetwork(network, `${tag.slice(0, 10)}br`, subnet, work);
  }, 900_000);

  afterAll(() => {
    host?.close();
    removeTierObjects({ domains: defined, pool, network });
    if (daemons) stopTier(daemons);
  });

  /** `vm define|update` of config `cfg` with these images, on `connect` (default: the local libvirtd). */
  function vmImageArgs(
    command: 'define' | 'update',
    cfg: string,
    images: { kernel: string; initrd?: string; rootfs: string },
    connect = uri,
  ): string[] {
    const initrd = images.initrd === undefined ? [] : ['--initrd', images.initrd];
    return [
      'vm',
      command,
      '--config',
      cfg,
      '--connect',
      connect,
      '--pool',
      pool,
      '--kernel',
      images.kernel,
      ...initrd,
      '--rootfs',
      images.rootfs,
    ];
  }

  async function bootGuest(name: string, filtered: boolean, credential?: string): Promise<string> {
    const cfg = join(work, `${name}.yaml`);
    writeFileSync(cfg, `name: ${name}\nvm: {memory: 512M, vcpus: 1}\ndataDisk: {size: 1G}\n`);
    const args = [...vmImageArgs('define', cfg, g), '--network', network, '--accel', 'tcg'];
    if (!filtered) args.push('--no-filter');
    if (credential) {
      const file = join(work, `${name}.token`);
      writeFileSync(file, credential);
      args.push('--credential', `gitlab-runner.token=${file}`);
    }
    defined.push(name);
    const define = await runCliAsync(args);
    expect(define.status, define.stderr).toBe(0);
    const start = await runCliAsync(['vm', 'start', '--config', cfg, '--connect', uri]);
    expect(start.status, start.stderr).toBe(0);
    return serialUntilDone(name, 180);
  }

  it("boots a real kernel from the emitted XML under TCG; the credential, DHCP and DNS reach the guest; the filter blocks the guest's own connections to private space but lets the host connect to the guest", async () => {
    const name = `${tag}-f`;
    const token = `glrt-test-${process.pid}`;
    const before = host?.connections() ?? 0;
    const log = await bootGuest(name, true, token);
    expect(log).toMatch(/TINY-GUEST: booted/);
    expect(log).toContain(`TINY-GUEST: credential gitlab-runner.token=${token}`);
    expect(log).toMatch(/TINY-GUEST: dhcp ok server=192\.168\.231\.1/);
    expect(log).toMatch(/TINY-GUEST: dns ok/);
    // The guest's new connections to a private address (the gateway) are dropped ...
    expect(log).toMatch(/TINY-GUEST: ping gateway blocked/);
    expect(log).toMatch(/TINY-GUEST: tcp gateway blocked/);
    expect(host?.connections()).toBe(before);
    // ... while a connection from the host (a private address) to the guest gets its replies.
    const ip = guestIp(log);
    expect(ip, log).toMatch(/^192\.168\.231\.\d+$/);
    expect(await httpGet(ip, 8080)).toContain('tiny-guest-http');
    const xml = virsh(['dumpxml', name]);
    expect(xml).toContain(`<filterref filter='${name}-isolate'>`);
    // vm define creates exactly the volumes the one naming rule (and so libvirt render) names.
    const paths = defaultImagePaths(name, pool);
    expect(xml).toContain(`<kernel>${paths.kernel}</kernel>`);
    expect(xml).toContain(`<initrd>${paths.initrd}</initrd>`);
    expect(xml).toContain(`<source file='${paths.rootfs}'`);
    expect(xml).toContain(`<source file='${paths.dataDisk}'`);
    expect(xml).toContain(`file='${paths.credential('gitlab-runner.token')}'`);
    expect(xml).not.toContain(token);
    expect(droppedToPrivate(name)).toBeGreaterThan(0);
    const status = await runCliAsync([
      'vm',
      'status',
      '--config',
      join(work, `${name}.yaml`),
      '--connect',
      uri,
      '--json',
    ]);
    expect(JSON.parse(status.stdout).defined).toBe(true);
  }, 600_000);

  it('vm update swaps kernel and rootfs for a new build, keeps the data disk byte-identical; vm start boots it', async () => {
    const name = `${tag}-f`;
    const cfg = join(work, `${name}.yaml`);
    // The tiny guest has no guest agent to report health, so it is updated while shut off (no
    // health gate); the health-gated update of a running VM is in test/libvirt/fleet-tier.test.ts.
    expect((await runCliAsync(['vm', 'destroy', '--config', cfg, '--connect', uri])).status).toBe(0);
    const dataPath = virsh(['vol-path', '--pool', pool, `${name}-data`]).trim();
    const dataSum = (await execAsync('sha256sum', [dataPath])).split(' ')[0];
    const newRoot = join(work, 'newroot');
    execFileSync('sh', [
      '-c',
      `mkdir -p ${newRoot}/etc && echo v2 > ${newRoot}/etc/version && mksquashfs ${newRoot} ${work}/rootfs-v2.squashfs -quiet -noappend`,
    ]);
    const r = await runCliAsync([
      ...vmImageArgs('update', cfg, { ...g, rootfs: join(work, 'rootfs-v2.squashfs') }),
      '--network',
      network,
      '--accel',
      'tcg',
    ]);
    expect(r.status, r.stderr).toBe(0);
    const newSum = (await execAsync('sha256sum', [join(work, 'rootfs-v2.squashfs')])).split(' ')[0] ?? '';
    // Only the changed image is uploaded, into the volume the naming rule gives it by content;
    // the kernel and the previous rootfs stay (the previous pair, for vm rollback).
    const newRootfs = imageVolumes(name).byDigest('rootfs', newSum);
    expect(r.stderr).toContain(`as ${pool}/${newRootfs}`);
    expect(r.stderr).not.toContain(`as ${pool}/${name}-kernel`);
    const paths = defaultImagePaths(name, pool);
    const dumped = virsh(['dumpxml', name]);
    expect(dumped).toContain(`<source file='${paths.dir}/${newRootfs}'`);
    expect(virsh(['vol-list', '--pool', pool])).toContain(`${name}-rootfs `);
    expect((await execAsync('sha256sum', [`${paths.dir}/${newRootfs}`])).split(' ')[0]).toBe(newSum);
    expect(recordedDigests(dumped).rootfs).toBe(newSum);
    expect((await execAsync('sha256sum', [dataPath])).split(' ')[0]).toBe(dataSum);
    expect((await runCliAsync(['vm', 'start', '--config', cfg, '--connect', uri])).status).toBe(0);
    expect(
      JSON.parse((await runCliAsync(['vm', 'status', '--config', cfg, '--connect', uri, '--json'])).stdout)
        .state,
    ).toBe('running');
    // vm grow: the running VM's data disk grows in place (blockresize), then the stopped one's
    // (vol-resize); a smaller size is refused; the volume is never replaced.
    const capacity = () =>
      Number(/Capacity:\s*(\d+)/.exec(virsh(['vol-info', '--bytes', '--pool', pool, `${name}-data`]))?.[1]);
    const grow = (size: string) =>
      runCliAsync(['vm', 'grow', '--config', cfg, '--connect', uri, '--pool', pool, '--size', size]);
    const before = capacity();
    const online = await grow(`${before / 1024 ** 3 + 1}G`);
    expect(online.status, online.stderr).toBe(0);
    expect(online.stderr).toMatch(/the running guest grows \/data now/);
    expect(capacity()).toBe(before + 1024 ** 3);
    const shrink = await grow(`${before / 1024 ** 3}G`);
    expect(shrink.status).toBe(2);
    expect(shrink.stderr).toMatch(/would shrink it, and a data disk never shrinks/);
    expect(capacity()).toBe(before + 1024 ** 3);
    expect((await runCliAsync(['vm', 'destroy', '--config', cfg, '--connect', uri])).status).toBe(0);
    const offline = await grow(`${before / 1024 ** 3 + 2}G`);
    expect(offline.status, offline.stderr).toBe(0);
    expect(offline.stderr).toMatch(/the guest grows \/data at its next boot/);
    expect(capacity()).toBe(before + 2 * 1024 ** 3);
    expect(virsh(['vol-path', '--pool', pool, `${name}-data`]).trim()).toBe(dataPath);
    expect(
      JSON.parse((await runCliAsync(['vm', 'status', '--config', cfg, '--connect', uri, '--json'])).stdout)
        .state,
    ).toBe('shut off');
    const undefine = await runCliAsync([
      'vm',
      'undefine',
      '--config',
      cfg,
      '--connect',
      uri,
      '--pool',
      pool,
      '--delete-images',
    ]);
    expect(undefine.status, undefine.stderr).toBe(0);
    expect(virsh(['vol-list', '--pool', pool])).toContain(`${name}-data`);
    expect(virsh(['vol-list', '--pool', pool])).not.toContain(`${name}-rootfs`);
    expect(virsh(['vol-list', '--pool', pool])).not.toContain(`${name}-kernel`);
  }, 600_000);

  it('without the filter the same guest reaches the gateway (so the block above is the filter)', async () => {
    const before = host?.connections() ?? 0;
    const log = await bootGuest(`${tag}-u`, false);
    expect(log).toMatch(/TINY-GUEST: ping gateway ok/);
    expect(log).toMatch(/TINY-GUEST: tcp gateway ok/);
    expect(host?.connections()).toBeGreaterThan(before);
    expect(await httpGet(guestIp(log), 8080)).toContain('tiny-guest-http');
  }, 600_000);

  it('vm define on a bridge without a known gateway refuses (exit 2) instead of defining an unfiltered VM', async () => {
    const name = `${tag}-b`;
    const cfg = join(work, `${name}.yaml`);
    writeFileSync(cfg, `name: ${name}\nvm: {memory: 512M, vcpus: 1}\n`);
    const r = runCli([
      ...vmImageArgs('define', cfg, { kernel: g.kernel, rootfs: g.rootfs }),
      '--bridge',
      'nosuchbr0',
      '--accel',
      'tcg',
    ]);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(
      /isolation filter needs the DHCP\/DNS address of the LAN behind bridge nosuchbr0/,
    );
    expect(virsh(['list', '--all', '--name'])).not.toContain(name);
  });

  it('nwfilter-define --validate accepts the filter', async () => {
    const file = join(work, 'filter.xml');
    const r = await runCliAsync([
      'libvirt',
      'nwfilter',
      '--config',
      join(work, `${tag}-f.yaml`),
      '--out',
      file,
    ]);
    expect(r.status).toBe(0);
    expect(
      spawnSync('virsh', ['-c', uri, 'nwfilter-define', '--validate', file], { encoding: 'utf8' }).status,
    ).toBe(0);
  });
});
