/**
 * Shared set-up of the libvirt tier (the same steps libvirt.test.ts takes inline): a libvirtd
 * and virtlogd that answer on qemu:///system (started here when none does, stopped again only
 * if started here and no other domain is left on it), and /dev/kvm usable by libvirt's QEMU
 * user, so that `virsh define` does not re-probe every QEMU binary (≈ 50 s each time).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  copyFileSync,
  existsSync,
  readFileSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { request } from 'node:http';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { commandExists, execAsync, processRunning, repoRoot } from '../helpers.js';

export const systemUri = 'qemu:///system';

export interface TierDaemons {
  /** PIDs of the daemons started here. */
  started: number[];
  kvm?: { gid: number; mode: number };
}

const answers = () => spawnSync('virsh', ['-c', systemUri, 'version'], { timeout: 15_000 }).status === 0;

export function startTier(): TierDaemons {
  const t: TierDaemons = { started: [] };
  if (existsSync('/dev/kvm')) {
    const st = statSync('/dev/kvm');
    const gid = /^kvm:[^:]*:(\d+):/m.exec(readFileSync('/etc/group', 'utf8'))?.[1];
    if (gid !== undefined && !(st.gid === Number(gid) && (st.mode & 0o060) === 0o060)) {
      t.kvm = { gid: st.gid, mode: st.mode & 0o7777 };
      chownSync('/dev/kvm', st.uid, Number(gid));
      chmodSync('/dev/kvm', 0o660);
    }
  }
  if (answers()) return t;
  for (const [daemon, pidfile] of [
    ['virtlogd', '/run/virtlogd.pid'],
    ['libvirtd', '/run/libvirtd.pid'],
  ] as const) {
    if (existsSync(pidfile) && processRunning(Number(readFileSync(pidfile, 'utf8').trim()))) continue;
    execFileSync(daemon, ['-d']);
    for (let i = 0; i < 50 && !existsSync(pidfile); i++) execFileSync('sleep', ['0.1']);
    if (existsSync(pidfile)) t.started.push(Number(readFileSync(pidfile, 'utf8').trim()));
  }
  for (let i = 0; i < 50 && !answers(); i++) execFileSync('sleep', ['0.2']);
  if (!answers()) throw new Error('libvirtd did not come up');
  return t;
}

export function stopTier(t: TierDaemons): void {
  const others = spawnSync('virsh', ['-q', '-c', systemUri, 'list', '--all', '--name'], {
    encoding: 'utf8',
    timeout: 30_000,
  }).stdout?.trim();
  // Another test's domains still live on this libvirtd: leave it (and virtlogd) running.
  if (!others)
    for (const pid of [...t.started].reverse()) {
      try {
        process.kill(pid, 'SIGTERM');
      } catch {
        // already gone
      }
    }
  if (t.kvm && existsSync('/dev/kvm')) {
    chownSync('/dev/kvm', 0, t.kvm.gid);
    chmodSync('/dev/kvm', t.kvm.mode);
  }
}

/** Remove what a test defined: its domains (and their filters), every volume of its pool, the pool, its network. */
export function removeTierObjects(o: { domains: string[]; pool: string; network: string }): void {
  const virsh = (args: string[]) =>
    spawnSync('virsh', ['-q', '-c', systemUri, ...args], { encoding: 'utf8', timeout: 120_000 }).stdout ?? '';
  for (const name of o.domains) {
    virsh(['destroy', name]);
    virsh(['undefine', name]);
    virsh(['nwfilter-undefine', `${name}-isolate`]);
  }
  for (const vol of virsh(['vol-list', '--pool', o.pool]).split('\n')) {
    const name = vol.trim().split(/\s+/)[0];
    if (name) virsh(['vol-delete', '--pool', o.pool, name]);
  }
  for (const step of ['pool-destroy', 'pool-delete', 'pool-undefine']) virsh([step, o.pool]);
  virsh(['net-destroy', o.network]);
  virsh(['net-undefine', o.network]);
}

/** virsh on the system URI; throws with virsh's message unless `allowFailure`. */
export function tierVirsh(args: string[], allowFailure = false): string {
  const r = spawnSync('virsh', ['-q', '-c', systemUri, ...args], { encoding: 'utf8', timeout: 120_000 });
  if (r.status !== 0 && !allowFailure) throw new Error(`virsh ${args.join(' ')}: ${r.stderr}`);
  return r.stdout ?? '';
}

/** Why the stand-in tiers (a stand-in image booted through libvirt) cannot run here, or undefined. */
export function standinTierMissing(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root (debootstrap for the stand-in, libvirt system daemon)';
  const tools = [
    'virsh',
    'libvirtd',
    'virtlogd',
    'qemu-system-x86_64',
    'dnsmasq',
    'debootstrap',
    'mksquashfs',
    'ssh',
  ];
  const absent = tools.filter((t) => !commandExists(t));
  if (absent.length > 0) return `missing ${absent.join(', ')}`;
  if (process.arch !== 'x64') return 'the stand-in image is x86_64 only';
  return undefined;
}

/**
 * A libvirt network without <forward> (it never reaches the host's LAN). With an IPv4 `subnet`
 * ("192.168.237"): `subnet`.0/24, gateway .1, DHCP. With an IPv6 one (the first four words of a
 * /64, "2001:db8:6:1"): IPv6 only, no IPv4 `<ip>` at all, gateway `subnet`::1, where libvirt's
 * dnsmasq sends router advertisements and serves DHCPv6 (::100-::1ff) and DNS. `hosts` are DNS
 * entries the network's dnsmasq answers.
 */
export function defineIsolatedNetwork(
  network: string,
  bridge: string,
  subnet: string,
  dir: string,
  hosts: { ip: string; name: string }[] = [],
): void {
  writeFileSync(join(dir, `${network}.xml`), isolatedNetworkXml(network, bridge, subnet, hosts));
  tierVirsh(['net-define', join(dir, `${network}.xml`)]);
  tierVirsh(['net-start', network]);
}

/** The configuration libvirt wrote for `network`'s dnsmasq (the tiers assert what it forwards). */
export function networkDnsmasqConf(network: string): string {
  return readFileSync(`/var/lib/libvirt/dnsmasq/${network}.conf`, 'utf8');
}

/**
 * The XML of defineIsolatedNetwork's network. Its dnsmasq answers only from what the network
 * knows (no-resolv: it never forwards a guest's query to the host's resolvers, which may be off
 * this machine), and the domain of `hosts` is local: asked for a record the network lacks (an A
 * record of a name it has only an IPv6 address for), it says "no such record" at once instead of
 * failing, which would fail the whole lookup of a resolver asking for both.
 */
export function isolatedNetworkXml(
  network: string,
  bridge: string,
  subnet: string,
  hosts: { ip: string; name: string }[] = [],
): string {
  const ip = subnet.includes(':')
    ? `<ip family="ipv6" address="${subnet}::1" prefix="64"><dhcp><range start="${subnet}::100" end="${subnet}::1ff"/></dhcp></ip>`
    : `<ip address="${subnet}.1" netmask="255.255.255.0"><dhcp><range start="${subnet}.10" end="${subnet}.50"/></dhcp></ip>`;
  const domains = [...new Set(hosts.map((h) => h.name.split('.').slice(1).join('.')).filter(Boolean))];
  if (domains.length > 1)
    throw new Error(`a libvirt network has one <domain>; hosts are in ${domains.join(', ')}`);
  const dns = hosts.length
    ? `<dns>${hosts.map((h) => `<host ip="${h.ip}"><hostname>${h.name}</hostname></host>`).join('')}</dns>`
    : '';
  return [
    `<network xmlns:dnsmasq="http://libvirt.org/schemas/network/dnsmasq/1.0"><name>${network}</name>`,
    `<bridge name="${bridge}" stp="on" delay="0"/>`,
    ...domains.map((d) => `<domain name="${d}" localOnly="yes"/>`),
    dns,
    ip,
    '<dnsmasq:options><dnsmasq:option value="no-resolv"/></dnsmasq:options></network>',
  ].join('');
}

/**
 * Run `command` in the guest `domain` over SSH as root with `key`, at its DHCP lease address
 * (IPv4; on an IPv6-only network its DHCPv6 lease), with `input` on its stdin.
 */
export function guestSsh(
  domain: string,
  key: string,
  command: string,
  input?: Buffer,
): { status: number | null; stdout: string; stderr: string } {
  const leases = tierVirsh(['domifaddr', domain, '--source', 'lease'], true);
  const ip = /(\d+\.\d+\.\d+\.\d+)\/\d+/.exec(leases)?.[1] ?? /\bipv6\s+([0-9a-f:]+)\/\d+/i.exec(leases)?.[1];
  if (!ip) return { status: 255, stdout: '', stderr: 'no DHCP lease yet' };
  return spawnSync(
    'ssh',
    [
      '-i',
      key,
      '-o',
      'BatchMode=yes',
      '-o',
      'StrictHostKeyChecking=no',
      '-o',
      'UserKnownHostsFile=/dev/null',
      '-o',
      'ConnectTimeout=15',
      `root@${ip}`,
      command,
    ],
    { encoding: 'utf8', timeout: 90_000, input },
  );
}

/** `vm define` of the stand-in under TCG on `network`, root's SSH key from `key`.pub as a credential. */
export function standinDefineArgs(o: {
  config: string;
  pool: string;
  images: { kernel: string; rootfs: string };
  network: string;
  key: string;
}): string[] {
  return [
    'vm',
    'define',
    '--config',
    o.config,
    '--connect',
    systemUri,
    '--pool',
    o.pool,
    '--kernel',
    o.images.kernel,
    '--rootfs',
    o.images.rootfs,
    '--network',
    o.network,
    '--accel',
    'tcg',
    '--credential',
    `ssh.authorized_keys.root=${o.key}.pub`,
  ];
}

/**
 * The stand-in image (test/fixtures/standin/build-standin.sh, cached), copied into `dir`: the
 * stand-in cache keeps only its newest images, and other tests may build others meanwhile.
 */
export async function standinImages(dir: string): Promise<{ kernel: string; rootfs: string }> {
  const out = await execAsync('bash', [join(repoRoot, 'test/fixtures/standin/build-standin.sh')], {
    env: { ...process.env, PATH: `${process.env.PATH}:/usr/sbin:/sbin` },
  });
  const built = JSON.parse(out.trim().split('\n').pop() ?? '{}') as { kernel: string; rootfs: string };
  const images = { kernel: join(dir, 'bzImage'), rootfs: join(dir, 'rootfs.squashfs') };
  copyFileSync(built.kernel, images.kernel);
  copyFileSync(built.rootfs, images.rootfs);
  return images;
}

/**
 * An sshd on 127.0.0.1:`port` that lets root in with a key made here, for qemu+ssh:// URIs that
 * reach this machine's libvirtd as a remote host would. Returns its PID (kill it when done) and
 * the URI (keyfile and no_verify in its query, so no known_hosts is needed).
 */
export async function startLocalSshd(dir: string, port: number): Promise<{ pid: number; uri: string }> {
  execFileSync('mkdir', ['-p', dir, '/run/sshd']);
  if (!existsSync(join(dir, 'key')))
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'key')]);
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, `hostkey-${port}`)]);
  copyFileSync(join(dir, 'key.pub'), join(dir, 'authorized_keys'));
  const config = join(dir, `sshd-${port}.conf`);
  const pidFile = join(dir, `sshd-${port}.pid`);
  writeFileSync(
    config,
    [
      `Port ${port}`,
      'ListenAddress 127.0.0.1',
      `HostKey ${dir}/hostkey-${port}`,
      'PermitRootLogin prohibit-password',
      `AuthorizedKeysFile ${dir}/authorized_keys`,
      `PidFile ${pidFile}`,
      'StrictModes no',
      '',
    ].join('\n'),
  );
  execFileSync('/usr/sbin/sshd', ['-f', config]);
  for (let i = 0; i < 50 && !existsSync(pidFile); i++) await new Promise((r) => setTimeout(r, 100));
  const pid = Number(readFileSync(pidFile, 'utf8').trim());
  return { pid, uri: `qemu+ssh://root@127.0.0.1:${port}/system?keyfile=${dir}/key&no_verify=1` };
}

/** The serial log of tiny-guest domain `name` once its init says "done" (or what there is after `seconds`). */
export async function serialUntilDone(name: string, seconds: number): Promise<string> {
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

/** GET http://ip:port/ from the host; the body, or the error's name on failure/timeout. */
export function httpGet(ip: string, port: number, timeoutMs = 10_000): Promise<string> {
  return new Promise((resolve) => {
    const req = request({ host: ip, port, path: '/', timeout: timeoutMs }, (res) => {
      let body = '';
      res.on('data', (d) => {
        body += d;
      });
      res.on('end', () => resolve(body));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (e) => resolve(`error: ${e.message}`));
    req.end();
  });
}

/** The address the tiny guest says it listens on. */
export function guestIp(log: string): string {
  return /TINY-GUEST: listening ip=(\S+) port=8080/.exec(log)?.[1] ?? '';
}

/** Packets the filter dropped towards 192.168.0.0/16 on the domain's interface (iptables, host-in chain). */
export function droppedToPrivate(name: string): number {
  const dev = /^\s*(\S+)\s+network\s/m.exec(tierVirsh(['domiflist', name]))?.[1];
  if (!dev) return 0;
  const chain = spawnSync('iptables', ['-L', `HI-${dev}`, '-n', '-v', '-x'], { encoding: 'utf8' }).stdout;
  return chain
    .split('\n')
    .filter((l) => /\bDROP\b/.test(l) && /192\.168\.0\.0\/16/.test(l))
    .reduce((n, l) => n + Number(l.trim().split(/\s+/)[0] ?? 0), 0);
}

/**
 * The tiny guest's network (test/fixtures/tiny-guest.sh): defineIsolatedNetwork's network with
 * the DNS entry the guest asks for (probe.test → 192.0.2.7), refused when its dnsmasq would
 * forward queries off this machine, and a listener on the gateway's port 8099 that answers
 * "host-hello" to the guest's TCP probe and counts the connections it gets.
 */
export async function tinyGuestNetwork(
  network: string,
  bridge: string,
  subnet: string,
  dir: string,
): Promise<{ connections: () => number; close: () => void }> {
  defineIsolatedNetwork(network, bridge, subnet, dir, [{ ip: '192.0.2.7', name: 'probe.test' }]);
  if (!/^no-resolv$/m.test(networkDnsmasqConf(network)))
    throw new Error(`the dnsmasq of ${network} would forward guests' queries to the host's resolvers`);
  let connections = 0;
  const listener = createServer((socket) => {
    connections++;
    socket.end('host-hello\n');
  });
  await new Promise<void>((resolve, reject) => {
    listener.once('error', reject);
    listener.listen(8099, `${subnet}.1`, resolve);
  });
  return { connections: () => connections, close: () => listener.close() };
}
