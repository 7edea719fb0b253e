/**
 * libvirt tier, against a real libvirtd (started here when none answers, and stopped again):
 * `appliance vm define` + `vm start` boot a real kernel under TCG from the emitted XML; a
 * credential file reaches the guest through fw_cfg; on a libvirt network without forwarding the
 * guest behind the isolation filter gets DHCP and DNS from the gateway but cannot reach it
 * otherwise, while the same guest without the filter can — seen from inside the guest and in
 * the filter's counters. Everything defined here is removed.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { commandExists, execAsync, repoRoot, runCliAsync, skipReason, tempDir } from '../helpers.js';

const uri = 'qemu:///system';
const tag = `ratest${process.pid}`;
const pool = `${tag}-pool`;
const network = `${tag}-net`;
const gateway = '192.168.231.1';

function virsh(args: string[], allowFailure = false): string {
  const r = spawnSync('virsh', ['-q', '-c', uri, ...args], { encoding: 'utf8', timeout: 120_000 });
  if (r.status !== 0 && !allowFailure) throw new Error(`virsh ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

function prerequisite(): string | undefined {
  for (const tool of ['virsh', 'libvirtd', 'virtlogd', 'qemu-system-x86_64', 'mksquashfs', 'ebtables']) {
    if (!commandExists(tool)) return `${tool} is not installed`;
  }
  return undefined;
}
const skip = skipReason('libvirt tier', prerequisite());

/** libvirtd and virtlogd we started (and so stop), by PID. */
const started: number[] = [];
function ensureLibvirtd(): void {
  if (spawnSync('virsh', ['-c', uri, 'version'], { timeout: 15_000 }).status === 0) return;
  for (const [daemon, pidfile] of [
    ['virtlogd', '/run/virtlogd.pid'],
    ['libvirtd', '/run/libvirtd.pid'],
  ] as const) {
    if (spawnSync('pgrep', ['-x', daemon]).status === 0) continue;
    execFileSync(daemon, ['-d']);
    for (let i = 0; i < 50 && !existsSync(pidfile); i++) execFileSync('sleep', ['0.1']);
    if (existsSync(pidfile)) started.push(Number(readFileSync(pidfile, 'utf8').trim()));
  }
  for (let i = 0; i < 50; i++) {
    if (spawnSync('virsh', ['-c', uri, 'version'], { timeout: 15_000 }).status === 0) return;
    execFileSync('sleep', ['0.2']);
  }
  throw new Error('libvirtd did not come up');
}

async function guest(): Promise<{ kernel: string; initrd: string; rootfs: string }> {
  const out = await execAsync('bash', [join(repoRoot, 'test/fixtures/tiny-guest.sh')], {
    env: { ...process.env, PATH: `${process.env.PATH}:/usr/sbin:/sbin` },
  });
  const get = (k: string) => new RegExp(`^${k}=(.*)$`, 'm').exec(out)?.[1] ?? '';
  return { kernel: get('kernel'), initrd: get('initrd'), rootfs: get('rootfs') };
}

async function serialUntilDone(name: string, seconds: number): Promise<string> {
  const log = `/var/log/libvirt/qemu/${name}-serial.log`;
  const deadline = Date.now() + seconds * 1000;
  let text = '';
  while (Date.now() < deadline) {
    text = existsSync(log) ? readFileSync(log, 'utf8') : '';
    if (text.includes('TINY-GUEST: done')) return text;
    await new Promise((r) => setTimeout(r, 500));
  }
  return text;
}

describe.skipIf(skip)('libvirt tier', () => {
  let work: string;
  let g: { kernel: string; initrd: string; rootfs: string };
  const defined: string[] = [];

  beforeAll(async () => {
    ensureLibvirtd();
    g = await guest();
    work = tempDir('appliance-libvirt-');
    const netXml = join(work, 'net.xml');
    // No <forward>: an isolated network that never reaches the host's LAN.
    writeFileSync(
      netXml,
      `<network><name>${network}</name><bridge name="${tag.slice(0, 10)}br" stp="on" delay="0"/>` +
        `<domain name="test" localOnly="yes"/><dns><host ip="192.0.2.7"><hostname>probe.test</hostname></host></dns>` +
        `<ip address="${gateway}" netmask="255.255.255.0"><dhcp><range start="192.168.231.10" end="192.168.231.50"/></dhcp></ip></network>`,
    );
    virsh(['net-define', netXml]);
    virsh(['net-start', network]);
  }, 900_000);

  afterAll(() => {
    for (const name of defined) {
      virsh(['destroy', name], true);
      virsh(['undefine', name], true);
      virsh(['nwfilter-undefine', `${name}-isolate`], true);
    }
    for (const vol of virsh(['vol-list', '--pool', pool], true).split('\n')) {
      const name = vol.trim().split(/\s+/)[0];
      if (name) virsh(['vol-delete', '--pool', pool, name], true);
    }
    virsh(['pool-destroy', pool], true);
    virsh(['pool-delete', pool], true);
    virsh(['pool-undefine', pool], true);
    virsh(['net-destroy', network], true);
    virsh(['net-undefine', network], true);
    for (const pid of started.reverse()) {
      try {
        process.kill(pid, 'SIGTERM');
      } catch {
        // already gone
      }
    }
  });

  async function bootGuest(name: string, filtered: boolean, credential?: string): Promise<string> {
    const cfg = join(work, `${name}.yaml`);
    writeFileSync(cfg, `name: ${name}\nvm: {memory: 512M, vcpus: 1}\ndataDisk: {size: 1G}\n`);
    const args = [
      'vm',
      'define',
      '--config',
      cfg,
      '--connect',
      uri,
      '--pool',
      pool,
      '--kernel',
      g.kernel,
      '--initrd',
      g.initrd,
      '--rootfs',
      g.rootfs,
    ];
    args.push('--network', network, '--accel', 'tcg');
    if (!filtered) args.push('--no-filter');
    if (credential) {
      const file = join(work, `${name}.token`);
      writeFileSync(file, credential);
      args.push('--credential', `gitlab-runner.token=${file}`);
    }
    defined.push(name);
    const define = await runCliAsync(args);
    expect(define.status, define.stderr).toBe(0);
    const start = await runCliAsync(['vm', 'start', '--config', cfg, '--connect', uri, '--pool', pool]);
    expect(start.status, start.stderr).toBe(0);
    return serialUntilDone(name, 180);
  }

  it('boots a real kernel from the emitted XML under TCG; the credential, DHCP and DNS reach the guest; the filter blocks the rest', async () => {
    const name = `${tag}-f`;
    const token = `glrt-test-${process.pid}`;
    const log = await bootGuest(name, true, token);
    expect(log).toMatch(/TINY-GUEST: booted/);
    expect(log).toContain(`TINY-GUEST: credential gitlab-runner.token=${token}`);
    expect(log).toMatch(/TINY-GUEST: dhcp ok server=192\.168\.231\.1/);
    expect(log).toMatch(/TINY-GUEST: dns ok/);
    expect(log).toMatch(/TINY-GUEST: ping gateway blocked/);
    const xml = virsh(['dumpxml', name]);
    expect(xml).toContain(`<filterref filter='${name}-isolate'>`);
    expect(xml).not.toContain(token);
    const counters = execFileSync('ebtables', ['-t', 'nat', '-L', '--Lc'], { encoding: 'utf8' });
    const dropped = counters
      .split('\n')
      .filter((l) => /192\.168\.0\.0\/16/.test(l) && /-j DROP/.test(l))
      .map((l) => Number(/pcnt = (\d+)/.exec(l)?.[1] ?? 0));
    expect(Math.max(0, ...dropped)).toBeGreaterThan(0);
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

  it('vm update swaps kernel and rootfs for a new build, keeps the data disk byte-identical and restarts', async () => {
    const name = `${tag}-f`;
    const cfg = join(work, `${name}.yaml`);
    const dataPath = virsh(['vol-path', '--pool', pool, `${name}-data`]).trim();
    const dataSum = (await execAsync('sha256sum', [dataPath])).split(' ')[0];
    const oldRootfs = virsh(['vol-list', '--pool', pool])
      .split('\n')
      .find((l) => l.includes(`${name}-rootfs-`))
      ?.trim()
      .split(/\s+/)[0];
    const newRoot = join(work, 'newroot');
    execFileSync('sh', [
      '-c',
      `mkdir -p ${newRoot}/etc && echo v2 > ${newRoot}/etc/version && mksquashfs ${newRoot} ${work}/rootfs-v2.squashfs -quiet -noappend`,
    ]);
    const r = await runCliAsync([
      'vm',
      'update',
      '--config',
      cfg,
      '--connect',
      uri,
      '--pool',
      pool,
      '--kernel',
      g.kernel,
      '--initrd',
      g.initrd,
      '--rootfs',
      join(work, 'rootfs-v2.squashfs'),
      '--network',
      network,
      '--accel',
      'tcg',
      '--stop-timeout',
      '3',
    ]);
    expect(r.status, r.stderr).toBe(0);
    const volumes = virsh(['vol-list', '--pool', pool]);
    expect(volumes).not.toContain(oldRootfs);
    const newRootfs =
      volumes
        .split('\n')
        .find((l) => l.includes(`${name}-rootfs-`))
        ?.trim()
        .split(/\s+/)[1] ?? '';
    expect(virsh(['dumpxml', name])).toContain(`<source file='${newRootfs}'`);
    expect((await execAsync('sha256sum', [dataPath])).split(' ')[0]).toBe(dataSum);
    expect(
      JSON.parse((await runCliAsync(['vm', 'status', '--config', cfg, '--connect', uri, '--json'])).stdout)
        .state,
    ).toBe('running');
    expect((await runCliAsync(['vm', 'destroy', '--config', cfg, '--connect', uri])).status).toBe(0);
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
    expect(virsh(['vol-list', '--pool', pool])).not.toContain(`${name}-rootfs-`);
  }, 600_000);

  it('without the filter the same guest reaches the gateway (so the block above is the filter)', async () => {
    const log = await bootGuest(`${tag}-u`, false);
    expect(log).toMatch(/TINY-GUEST: ping gateway ok/);
  }, 600_000);

  it('works on a remote host through qemu+ssh (an sshd on 127.0.0.1 started here)', async () => {
    if (!existsSync('/usr/sbin/sshd')) {
      process.stderr.write('\n[skip] qemu+ssh part: /usr/sbin/sshd is not installed (openssh-server)\n');
      return;
    }
    const dir = tempDir('appliance-ssh-');
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'key')]);
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'hostkey')]);
    execFileSync('cp', [join(dir, 'key.pub'), join(dir, 'authorized_keys')]);
    const port = 20000 + (process.pid % 20000);
    writeFileSync(
      join(dir, 'sshd_config'),
      [
        `Port ${port}`,
        'ListenAddress 127.0.0.1',
        `HostKey ${dir}/hostkey`,
        'PermitRootLogin prohibit-password',
        `AuthorizedKeysFile ${dir}/authorized_keys`,
        `PidFile ${dir}/sshd.pid`,
        'StrictModes no',
        '',
      ].join('\n'),
    );
    execFileSync('mkdir', ['-p', '/run/sshd']);
    execFileSync('/usr/sbin/sshd', ['-f', join(dir, 'sshd_config')]);
    for (let i = 0; i < 50 && !existsSync(join(dir, 'sshd.pid')); i++)
      await new Promise((r) => setTimeout(r, 100));
    const sshd = Number(readFileSync(join(dir, 'sshd.pid'), 'utf8').trim());
    try {
      const remote = `qemu+ssh://root@127.0.0.1:${port}/system?keyfile=${dir}/key&no_verify=1`;
      const name = `${tag}-r`;
      const cfg = join(work, `${name}.yaml`);
      writeFileSync(cfg, `name: ${name}\nvm: {memory: 512M, vcpus: 1}\ndataDisk: {size: 1G}\n`);
      defined.push(name);
      const define = await runCliAsync([
        'vm',
        'define',
        '--config',
        cfg,
        '--connect',
        remote,
        '--pool',
        pool,
        '--kernel',
        g.kernel,
        '--initrd',
        g.initrd,
        '--rootfs',
        g.rootfs,
        '--network',
        network,
        '--accel',
        'tcg',
      ]);
      expect(define.status, define.stderr).toBe(0);
      expect((await runCliAsync(['vm', 'start', '--config', cfg, '--connect', remote])).status).toBe(0);
      const log = await serialUntilDone(name, 180);
      expect(log).toMatch(/TINY-GUEST: dhcp ok/);
      const status = JSON.parse(
        (await runCliAsync(['vm', 'status', '--config', cfg, '--connect', remote, '--json'])).stdout,
      );
      expect(status).toMatchObject({ uri: remote, defined: true });
      expect((await runCliAsync(['vm', 'destroy', '--config', cfg, '--connect', remote])).status).toBe(0);
    } finally {
      process.kill(sshd, 'SIGTERM');
    }
  }, 600_000);

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
