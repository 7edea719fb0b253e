/**
 * libvirt tier, IPv6-only: the stand-in appliance image (test/fixtures/standin) defined with `vm
 * define` behind the isolation filter on a libvirt network that has IPv6 only (no IPv4 `<ip>`, no
 * `<forward>`: nothing leaves this machine), documentation prefix 2001:db8:6:1::/64 on the host
 * side, router advertisements, DHCPv6 and DNS from libvirt's dnsmasq, one DNS host entry. One
 * boot under TCG proves: the VM gets an IPv6 address; it resolves the host entry through the
 * gateway's IPv6 DNS (the filter's GATEWAY6, read from the network by `vm define`); it reaches an
 * HTTP server bound to an allowed 2001:db8 address on the host side; a server in a prefix of
 * `network.blockPrefixes` (2001:db8:6:bad::/64, also on the bridge) is unreachable, and the
 * filter's drop rule for it counts the tries; a container in the VM reaches the allowed server
 * through Docker's IPv6 NAT (the server sees the VM's address, not the container's ULA). SSH from
 * the host reaches the guest over IPv6 through the filter. Everything made here is removed.
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { libvirtSerialLog } from '../../src/guest/index.js';
import { commandExists, processRunning, runCliAsync, skipReason, tempDir } from '../helpers.js';
import {
  defineIsolatedNetwork,
  guestSsh,
  networkDnsmasqConf,
  removeTierObjects,
  standinDefineArgs,
  standinImages,
  standinTierMissing,
  startTier,
  stopTier,
  type TierDaemons,
  tierVirsh,
  systemUri as uri,
} from './tier.js';

const tag = `raipv6${process.pid}`;
const pool = `${tag}-pool`;
const network = `${tag}-net`;
const bridge = `ra6${process.pid % 100000}br`;
const name = `${tag}-vm`;
// Documentation addresses only (RFC 3849), on a bridge made here.
const subnet = '2001:db8:6:1';
const gateway6 = `${subnet}::1`;
// The allowed server is on another host-side subnet: an address on the network's own /64 would be
// what dnsmasq advertises as the DNS server instead of the gateway's.
const allowedPrefix = '2001:db8:6:2::/64';
const allowed = '2001:db8:6:2::80';
const allowedName = 'allowed-http.ipv6-tier.test';
const blockedPrefix = '2001:db8:6:bad::/64';
const blocked = '2001:db8:6:bad::1';
const port = 8086;

const skip = skipReason(
  'libvirt IPv6-only tier',
  standinTierMissing() ??
    (existsSync('/bin/busybox')
      ? undefined
      : 'busybox-static is not installed (the container image is made from it)') ??
    (commandExists('ip6tables') ? undefined : 'ip6tables is missing (the filter is enforced through it)'),
);

/**
 * A shell snippet for BusyBox in a container: an HTTP GET of the test server at `address` with
 * `nc` (BusyBox's static wget from Debian 12 segfaults in a FROM-scratch root), then its exit.
 */
const httpGet = (address: string, seconds: number) =>
  `printf "GET / HTTP/1.0\\r\\nHost: x\\r\\n\\r\\n" | /bin/busybox nc -w ${seconds} ${address} ${port}; echo "nc exit $?"`;

/** Sum of the packet counters of the ip6tables rules that drop `prefix` (libvirt's filter chains). */
function dropCount(prefix: string): number {
  const out = execFileSync('ip6tables', ['-w', '-L', '-v', '-n', '-x'], { encoding: 'utf8' });
  return out
    .split('\n')
    .filter((l) => /\bDROP\b/.test(l) && l.includes(prefix))
    .reduce((sum, l) => sum + Number(l.trim().split(/\s+/)[0] ?? 0), 0);
}

describe.skipIf(skip)('libvirt tier: the VM on an IPv6-only network behind the filter', () => {
  let daemons: TierDaemons;
  let work: string;
  let key: string;
  const servers: number[] = [];
  const timings: string[] = [];
  let t0 = Date.now();
  const mark = (what: string) => {
    const line = `${what}: ${((Date.now() - t0) / 1000).toFixed(1)} s`;
    timings.push(line);
    process.stderr.write(`[ipv6 tier] ${line}\n`);
  };

  /** An HTTP server on `address` only, answering `body` and logging each client address. */
  function startServer(address: string, body: string): string {
    const log = join(work, `${body}.clients`);
    const child = spawn(
      process.execPath,
      [
        '-e',
        `const fs=require('fs');require('http').createServer((q,s)=>{fs.appendFileSync(${JSON.stringify(log)},q.socket.remoteAddress+'\\n');s.end(${JSON.stringify(`${body}\n`)})}).listen(${port},${JSON.stringify(address)},()=>console.log('listening'))`,
      ],
      { stdio: ['ignore', 'pipe', 'inherit'], detached: false },
    );
    if (child.pid) servers.push(child.pid);
    return log;
  }

  function serialTail(): string {
    const log = libvirtSerialLog(name);
    return existsSync(log) ? readFileSync(log, 'utf8').split('\n').slice(-40).join('\n') : '(no serial log)';
  }

  /**
   * A command in the guest over SSH; a connection that fails (exit 255: on a loaded host, sshd in
   * a TCG guest may miss the banner timeout) is tried again, up to 8 times, 10 s apart.
   */
  function ssh(command: string, input?: Buffer) {
    let r = guestSsh(name, key, command, input);
    for (let i = 0; i < 8 && r.status === 255; i++) {
      execFileSync('sleep', ['10']);
      r = guestSsh(name, key, command, input);
    }
    return r;
  }

  beforeAll(async () => {
    t0 = Date.now();
    daemons = startTier();
    work = tempDir('appliance-ipv6-tier-');
    const images = await standinImages(work);
    mark('stand-in image ready');
    defineIsolatedNetwork(network, bridge, subnet, work, [{ ip: allowed, name: allowedName }]);
    // The allowed server's address (on the network's /64) and another documentation subnet, the
    // blocked one, both on the bridge made here; nodad: usable at once.
    execFileSync('ip', ['-6', 'addr', 'add', `${allowed}/64`, 'dev', bridge, 'nodad']);
    execFileSync('ip', ['-6', 'addr', 'add', `${blocked}/64`, 'dev', bridge, 'nodad']);
    startServer(allowed, 'allowed-ok');
    startServer(blocked, 'blocked-reached');
    key = join(work, 'key');
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', key]);
    const cfg = join(work, 'appliance.yaml');
    writeFileSync(
      cfg,
      [
        `name: ${name}`,
        'vm: {memory: 1G, vcpus: 2}',
        'dataDisk: {size: 2G}',
        `network: {blockPrefixes: ["${blockedPrefix}", "203.0.113.128/25"]}`,
        '',
      ].join('\n'),
    );
    const define = await runCliAsync(standinDefineArgs({ config: cfg, pool, images, network, key }));
    if (define.status !== 0) throw new Error(`vm define failed: ${define.stderr}`);
    mark('defined');
    const start = await runCliAsync(['vm', 'start', '--config', cfg, '--connect', uri]);
    if (start.status !== 0) throw new Error(`vm start failed: ${start.stderr}`);
    t0 = Date.now();
    timings.push('(times below are from vm start)');
  }, 1_800_000);

  afterAll(() => {
    process.stderr.write(`\n[ipv6 tier] timings:\n${timings.join('\n')}\n`);
    for (const pid of servers)
      if (processRunning(pid))
        try {
          process.kill(pid, 'SIGTERM');
        } catch {
          // already gone
        }
    removeTierObjects({ domains: [name], pool, network });
    if (daemons) stopTier(daemons);
    if (work && !process.env.APPLIANCE_KEEP_TEST_WORK) rmSync(work, { recursive: true, force: true });
  });

  it('IPv6-only: address, DNS through the IPv6 gateway, the allowed server from the VM and from a container (Docker IPv6 NAT), the blocked prefix unreachable', async () => {
    // The network's dnsmasq answers from what it knows and forwards nothing off this machine.
    const dnsmasq = networkDnsmasqConf(network);
    expect(dnsmasq).toMatch(/^no-resolv$/m);
    expect(dnsmasq).toMatch(/^local=\/ipv6-tier\.test\/$/m);
    // vm define read the network's IPv6 address as the filter's DNS gateway; there is no IPv4 one.
    const xml = tierVirsh(['dumpxml', name]);
    expect(xml).toContain(`<filterref filter='${name}-isolate'>`);
    expect(xml).toContain(`<parameter name='GATEWAY6' value='${gateway6}'/>`);
    expect(xml).not.toContain("name='GATEWAY'");
    const filter = tierVirsh(['nwfilter-dumpxml', `${name}-isolate`]);
    expect(filter).toMatch(/<udp-ipv6 dstipaddr='\$GATEWAY6' dstportstart='53'\/>/);
    expect(filter).toMatch(/<all-ipv6 dstipaddr='2001:db8:6:bad::' dstipmask='64'\/>/);
    expect(filter).toMatch(/<all dstipaddr='203\.0\.113\.128' dstipmask='25'\/>/);
    expect(filter).not.toContain("$GATEWAY'");

    // SSH over IPv6 (the DHCPv6 lease address) through the filter: the boot is done when it answers.
    const deadline = Date.now() + 900_000;
    let up = guestSsh(name, key, 'true');
    while (up.status !== 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 5000));
      up = guestSsh(name, key, 'true');
    }
    expect(up.status, `${up.stderr}\n--- serial ---\n${serialTail()}`).toBe(0);
    mark('SSH over IPv6 answers');

    const addr = ssh('ip -6 -o addr show scope global; ip -4 -o addr show scope global; ip -6 route');
    process.stderr.write(`[ipv6 tier] guest addresses and routes:\n${addr.stdout}`);
    expect(addr.stdout).toMatch(/inet6 2001:db8:6:1:[0-9a-f:]+\/\d+/);
    expect(addr.stdout).not.toMatch(/\binet (?!127\.)(?!172\.17\.)/); // no IPv4 from the network
    const guestAddress = /inet6 (2001:db8:6:1:[0-9a-f:]+)\//.exec(addr.stdout)?.[1] ?? '';

    // libvirt's dnsmasq advertises no router on an isolated network (router lifetime 0), so the
    // host-side subnets are routed through the gateway by hand.
    const routes = ssh(
      [allowedPrefix, '2001:db8:6:bad::/64']
        .map((p) => `ip -6 route replace ${p} via ${gateway6}`)
        .join(' && '),
    );
    expect(routes.status, routes.stderr).toBe(0);

    // The name resolves through the network's DNS, which is the gateway's IPv6 address.
    const dns = ssh(`resolvectl dns; getent ahostsv6 ${allowedName}`);
    process.stderr.write(`[ipv6 tier] DNS:\n${dns.stdout}${dns.stderr}`);
    expect(dns.stdout).toContain(gateway6);
    expect(dns.stdout).toMatch(new RegExp(`^${allowed.replaceAll(':', '\\:')}\\s+STREAM`, 'm'));
    mark('name resolved through the IPv6 gateway');

    // The allowed server, by name (bash's /dev/tcp resolves it), answers the VM.
    const get = (host: string, seconds: number) =>
      ssh(
        `timeout ${seconds} bash -c 'exec 3<>/dev/tcp/${host}/${port} && printf "GET / HTTP/1.0\\r\\nHost: x\\r\\n\\r\\n" >&3 && cat <&3'`,
      );
    const ok = get(allowedName, 20);
    expect(ok.stdout, ok.stderr).toContain('allowed-ok');
    mark('allowed server reached from the VM');

    // The blocked prefix: its server answers the host, but not the VM; the filter's rule drops it.
    const fromHost = execFileSync(
      process.execPath,
      [
        '-e',
        `require('http').get('http://[${blocked}]:${port}/',(r)=>r.pipe(process.stdout)).setTimeout(5000,function(){this.destroy()})`,
      ],
      { encoding: 'utf8' },
    );
    expect(fromHost).toContain('blocked-reached');
    const hostTries = readFileSync(join(work, 'blocked-reached.clients'), 'utf8');
    const before = dropCount('2001:db8:6:bad::/64');
    // Dropped, so the try lasts its whole timeout: a few seconds are enough to see the drop.
    const bad = get(blocked, 5);
    expect(bad.stdout).not.toContain('blocked-reached');
    expect(bad.status).not.toBe(0);
    expect(dropCount('2001:db8:6:bad::/64')).toBeGreaterThan(before);
    mark('blocked prefix unreachable');

    // A container: busybox-static as an image, imported without a registry.
    const root = join(work, 'image');
    mkdirSync(join(root, 'bin'), { recursive: true });
    execFileSync('cp', ['/bin/busybox', join(root, 'bin', 'busybox')]);
    const tar = execFileSync('tar', ['-C', root, '-c', '.'], { maxBuffer: 64 * 1024 * 1024 });
    let imported = ssh('docker import - ipv6-tier:local', tar);
    for (let i = 0; i < 6 && imported.status !== 0; i++) {
      // Docker may still be starting under TCG.
      await new Promise((r) => setTimeout(r, 10_000));
      imported = ssh('docker import - ipv6-tier:local', tar);
    }
    expect(imported.status, imported.stderr).toBe(0);
    mark('image imported');

    // One container on Docker's bridge (each `docker run` costs seconds under TCG): the name asked
    // of the gateway's IPv6 address, the allowed server through Docker's IPv6 NAT, and the
    // blocked one, which the filter on the host drops after the NAT.
    const dropsBefore = dropCount('2001:db8:6:bad::/64');
    const inside = ssh(
      `docker run --rm ipv6-tier:local /bin/busybox sh -c 'ip -6 addr show scope global; ip -6 route; nslookup ${allowedName} ${gateway6}; ${httpGet(allowed, 20)}; echo ---blocked---; ${httpGet(blocked, 5)}'`,
    );
    process.stderr.write(`[ipv6 tier] container:\n${inside.stdout}${inside.stderr}`);
    const [toAllowed = '', toBlocked = ''] = inside.stdout.split('---blocked---');
    if (!toAllowed.includes('allowed-ok')) {
      // What the VM did with the container's packets: its forwarding, NAT and routes.
      const why = ssh(
        `sysctl net.ipv6.conf.all.forwarding net.ipv6.conf.enp1s0.accept_ra; ip -6 route; ip -6 route get ${allowed} from fd00:d0c:0:1::2 iif docker0; ip6tables -w -t nat -L POSTROUTING -v -n; ip6tables -w -L FORWARD -v -n; ip6tables -w -L DOCKER-USER -v -n`,
      );
      process.stderr.write(`[ipv6 tier] the VM's forwarding:\n${why.stdout}${why.stderr}\n`);
      process.stderr.write(
        `[ipv6 tier] allowed server's clients: ${readFileSync(join(work, 'allowed-ok.clients'), 'utf8')}\n`,
      );
    }
    expect(toAllowed).toMatch(/inet6 fd00:d0c:0:1:/);
    // nslookup prints the server it asked, then the answer.
    expect(toAllowed).toMatch(new RegExp(`Server:\\s+${gateway6.replaceAll(':', '\\:')}`));
    expect(toAllowed).toMatch(new RegExp(`Address:\\s+${allowed.replaceAll(':', '\\:')}`));
    expect(toAllowed, inside.stderr).toContain('allowed-ok');
    // Through NAT: the server saw the VM's address, not the container's unique local one.
    const clients = readFileSync(join(work, 'allowed-ok.clients'), 'utf8').trim().split('\n');
    expect(clients.at(-1)).toBe(guestAddress);
    expect(clients.join('\n')).not.toMatch(/fd00:d0c/);
    expect(toBlocked).not.toContain('blocked-reached');
    expect(toBlocked).toMatch(/^nc exit [1-9]/m);
    // Dropped by the filter on the host (after the VM's NAT), not lost inside the VM.
    expect(dropCount('2001:db8:6:bad::/64')).toBeGreaterThan(dropsBefore);
    mark('container reached the allowed server through Docker IPv6 NAT, not the blocked one');
    // The blocked server saw only the host's own try.
    expect(readFileSync(join(work, 'blocked-reached.clients'), 'utf8')).toBe(hostTries);
  }, 1_800_000);
});
