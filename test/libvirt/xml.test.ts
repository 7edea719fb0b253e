/** The emitted libvirt XML: valid for libvirt's own schema in every variant, and safe with odd values. */
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadAppliance, parseAppliance } from '../../src/config/index.js';
import { ApplianceError, ExitCode } from '../../src/errors.js';
import { defaultImagePaths, imageVolumes } from '../../src/guest/index.js';
import {
  blockedIPv4,
  blockedIPv6,
  type DomainOptions,
  domainFiles,
  domainUuid,
  domainXml,
  filterGateway,
  libvirtTree,
  networkGateways,
  networkIPv4,
  nwfilterXml,
  recordedDigests,
} from '../../src/libvirt/index.js';
import { diffTree } from '../../src/render/index.js';

import { commandExists, repoRoot, runCli, skipReason, tempDir } from '../helpers.js';

/** The rules of a filter as [action, direction, priority, protocol element with attributes]. */
function filterRules(xml: string): { action: string; direction: string; priority: number; body: string }[] {
  return [...xml.matchAll(/<rule action="(\w+)" direction="(\w+)" priority="(\d+)"[^>]*>\s*(<[^>]+>)/g)].map(
    (m) => ({ action: m[1] ?? '', direction: m[2] ?? '', priority: Number(m[3]), body: m[4] ?? '' }),
  );
}

const config = parseAppliance('name: edge\n', join(repoRoot, 'x.yaml'));
const noValidator = skipReason(
  'virt-xml-validate checks',
  commandExists('virt-xml-validate') ? undefined : 'virt-xml-validate is not installed (libvirt-clients)',
);

function options(over: Partial<DomainOptions> = {}): DomainOptions {
  return {
    arch: 'x86_64',
    accel: 'tcg',
    kernel: '/srv/images/bzImage',
    rootfs: '/srv/images/rootfs.squashfs',
    dataDisk: '/srv/images/data.img',
    credentials: [],
    network: { type: 'network', name: 'default' },
    serialLog: '/var/log/libvirt/qemu/edge-serial.log',
    ...over,
  };
}

function validate(xml: string): { ok: boolean; output: string } {
  const file = join(tempDir(), 'x.xml');
  writeFileSync(file, xml);
  const r = spawnSync('virt-xml-validate', [file], { encoding: 'utf8' });
  return { ok: r.status === 0, output: `${r.stdout}${r.stderr}` };
}

describe.skipIf(noValidator)('virt-xml-validate accepts every variant', () => {
  for (const arch of ['x86_64', 'aarch64'] as const) {
    for (const accel of ['kvm', 'tcg'] as const) {
      for (const creds of [false, true]) {
        it(`${arch} ${accel} ${creds ? 'with' : 'without'} credentials`, () => {
          const xml = domainXml(
            config,
            options({
              arch,
              accel,
              credentials: creds
                ? [
                    { name: 'gitlab-runner.token', file: '/srv/secrets/token' },
                    { name: 'ssh.authorized_keys.root', file: '/srv/secrets/keys' },
                  ]
                : [],
              gateway: creds ? '192.168.122.1' : undefined,
            }),
          );
          const v = validate(xml);
          expect(v.ok, v.output).toBe(true);
          expect(xml).toContain(accel === 'kvm' ? '<domain type="kvm"' : '<domain type="qemu"');
          expect(xml).toContain(accel === 'kvm' ? 'mode="host-passthrough"' : 'mode="maximum"');
          expect(xml).toContain(arch === 'x86_64' ? 'machine="q35"' : 'machine="virt"');
          expect(xml).toContain(arch === 'x86_64' ? 'console=ttyS0' : 'console=ttyAMA0');
          if (arch === 'aarch64') {
            expect(xml).toContain('<gic version="3"/>');
            expect(xml).not.toContain('<acpi/>');
          }
          if (creds)
            expect(xml).toContain(
              '<entry name="opt/io.systemd.credentials/gitlab-runner.token" file="/srv/secrets/token"/>',
            );
        });
      }
    }
  }

  it('the nwfilter', () => {
    const v = validate(nwfilterXml(config));
    expect(v.ok, v.output).toBe(true);
  });
  it('the nwfilter with IPv6 and IPv4 block prefixes and both gateways, or the IPv6 one only', () => {
    const blocking = parseAppliance(
      'name: edge\nnetwork: {blockPrefixes: ["2001:db8:42::/48", "203.0.113.128/25"]}\n',
      join(repoRoot, 'x.yaml'),
    );
    for (const gateways of [{ gateway: '10.0.0.1', gateway6: 'fd00::1' }, { gateway6: '2001:db8:1::1' }]) {
      const v = validate(nwfilterXml(blocking, gateways));
      expect(v.ok, v.output).toBe(true);
    }
  });
  it('a domain attached with an IPv6 gateway only', () => {
    const v = validate(domainXml(config, options({ gateway6: '2001:db8:1::1' })));
    expect(v.ok, v.output).toBe(true);
  });
});

describe('domain XML content', () => {
  const xml = domainXml(config, options({ gateway: '10.0.0.1' }));
  it('boots the kernel directly with a read-only squashfs root and a writable data disk with discard', () => {
    expect(xml).toContain('<kernel>/srv/images/bzImage</kernel>');
    expect(xml).toMatch(
      /<cmdline>console=ttyS0,115200 root=\/dev\/vda ro rootfstype=squashfs rootwait panic=-1<\/cmdline>/,
    );
    expect(xml).toMatch(
      /<source file="\/srv\/images\/rootfs.squashfs"\/>\s*<target dev="vda" bus="virtio"\/>\s*<readonly\/>/,
    );
    expect(xml).toMatch(
      /<driver name="qemu" type="raw" discard="unmap"\/>\s*<source file="\/srv\/images\/data.img"\/>/,
    );
  });
  it('has balloon, rng, panic with on_crash, a logged serial console and no graphics', () => {
    expect(xml).toContain('<memballoon model="virtio" autodeflate="on" freePageReporting="on"/>');
    expect(xml).toContain('<rng model="virtio">');
    expect(xml).toContain('<panic model="isa"/>');
    expect(xml).toContain('<on_crash>restart</on_crash>');
    expect(xml).toContain('<log file="/var/log/libvirt/qemu/edge-serial.log" append="off"/>');
    expect(xml).not.toMatch(/<graphics|<video/);
    expect(xml).toContain('<filterref filter="edge-isolate">');
    expect(xml).toContain('<parameter name="GATEWAY" value="10.0.0.1"/>');
  });
  it('takes vCPUs, memory and a stable UUID from the config', () => {
    expect(xml).toContain('<vcpu placement="static">2</vcpu>');
    expect(xml).toContain('<memory unit="KiB">2097152</memory>');
    expect(xml).toContain(`<uuid>${domainUuid('edge')}</uuid>`);
    expect(domainUuid('edge')).toMatch(
      /^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/,
    );
    expect(domainUuid('edge')).not.toBe(domainUuid('edge2'));
    const noBalloon = domainXml(
      parseAppliance('name: edge\nvm: {balloon: false, vcpus: 3, memory: 1G}\n', join(repoRoot, 'x.yaml')),
      options(),
    );
    expect(noBalloon).toContain('<memballoon model="none"/>');
    expect(noBalloon).toContain('<vcpu placement="static">3</vcpu>');
  });
});

describe('odd values are escaped or refused, never emitted as invalid XML', () => {
  it('escapes quotes, ampersands, spaces and non-ASCII in paths', () => {
    const xml = domainXml(
      config,
      options({ kernel: `/srv/ä "odd" & <dir>/it's bzImage`, serialLog: '/var/log/a&b.log' }),
    );
    expect(xml).toContain('<kernel>/srv/ä "odd" &amp; &lt;dir&gt;/it\'s bzImage</kernel>');
    expect(xml).toContain('file="/var/log/a&amp;b.log"');
    if (!noValidator) expect(validate(xml).ok).toBe(true);
  });
  it.each([
    ['a relative path', { kernel: 'images/bzImage' }, /kernel "images\/bzImage" is not an absolute path/],
    ['a newline in a path', { rootfs: '/srv/a\nb' }, /root filesystem .* contains control characters/],
    ['a comma in a path', { dataDisk: '/srv/a,b.img' }, /contains a comma/],
    [
      'a bad credential name',
      { credentials: [{ name: 'a/b', file: '/x' }] },
      /credential name "a\/b" is not usable/,
    ],
    [
      'a too long credential name',
      { credentials: [{ name: 'x'.repeat(40), file: '/x' }] },
      /is not usable through fw_cfg/,
    ],
    ['a bad gateway', { gateway: '192.168.1' }, /gateway "192.168.1" is not an IPv4 address/],
    [
      'a network name with quotes',
      { network: { type: 'network', name: 'a"b' } },
      /network name "a\\"b" is not valid/,
    ],
    ['white space in a kernel argument', { cmdline: ['a b'] }, /kernel argument "a b" contains white space/],
  ] as [string, Partial<DomainOptions>, RegExp][])('refuses %s', (_t, over, message) => {
    expect(() => domainXml(config, options(over))).toThrow(message);
  });
  it('the CLI refuses with one line and exit 2', () => {
    const r = runCli(['libvirt', 'domain', '--kernel', 'relative/bzImage']);
    expect(r.status).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stdout).toBe('');
  });
});

describe('libvirt/ in the repository', () => {
  it('is the render of the default appliance.yaml', () => {
    const tree = libvirtTree(loadAppliance(), { gateway: '192.168.122.1' });
    expect(diffTree(join(repoRoot, 'libvirt'), tree)).toEqual({ changed: [], missing: [], extra: [] });
  });
  it('names the volumes vm define creates (one naming rule, imageVolumes)', () => {
    const config = loadAppliance();
    const paths = defaultImagePaths(config.name);
    const v = imageVolumes(config.name);
    for (const accel of ['kvm', 'tcg']) {
      const xml = readFileSync(join(repoRoot, 'libvirt', `${config.name}.${accel}.xml`), 'utf8');
      expect(xml).toContain(`<kernel>${paths.dir}/${v.kernel}</kernel>`);
      expect(xml).toContain(`<source file="${paths.dir}/${v.rootfs}"/>`);
      expect(xml).toContain(`<source file="${paths.dir}/${v.data}"/>`);
      expect(xml).toContain(`file="${paths.dir}/${v.credential(config.runner.tokenCredential)}"`);
      expect(xml).toContain('<filterref filter="runner-appliance-isolate">');
    }
  });
});

describe('the isolation filter', () => {
  const rules = filterRules(nwfilterXml(config));
  it('uses only the stateful iptables layer (no stateless ebtables <ip>/<ipv6> rules)', () => {
    expect(rules.length).toBeGreaterThan(0);
    for (const r of rules) expect(r.body).not.toMatch(/^<(ip|ipv6|mac|arp)\b/);
  });
  it('lets connections to the VM in, and so its replies out, before any drop', () => {
    const firstDrop = Math.min(...rules.filter((r) => r.action === 'drop').map((r) => r.priority));
    for (const proto of ['all', 'all-ipv6']) {
      const accept = rules.find(
        (r) => r.action === 'accept' && r.direction === 'in' && r.body === `<${proto}/>`,
      );
      expect(accept, proto).toBeDefined();
      expect(accept?.priority).toBeLessThan(firstDrop);
    }
    // The drop rules carry no state match: everything else the VM sends there is dropped.
    for (const r of rules.filter((r) => r.action === 'drop')) {
      expect(r.direction).toBe('out');
      expect(r.body).not.toContain('state=');
    }
  });
  it("drops the VM's traffic to every blocked range; DHCP and DNS to $GATEWAY pass first", () => {
    const drops = rules.filter((r) => r.action === 'drop').map((r) => r.body);
    for (const [addr, mask] of blockedIPv4)
      expect(drops).toContain(`<all dstipaddr="${addr}" dstipmask="${mask}"/>`);
    for (const [addr, mask] of blockedIPv6)
      expect(drops).toContain(`<all-ipv6 dstipaddr="${addr}" dstipmask="${mask}"/>`);
    const firstDrop = Math.min(...rules.filter((r) => r.action === 'drop').map((r) => r.priority));
    const before = rules.filter((r) => r.priority < firstDrop && r.action === 'accept').map((r) => r.body);
    expect(before).toContain('<udp srcportstart="68" dstportstart="67"/>');
    expect(before).toContain('<udp dstipaddr="$GATEWAY" dstportstart="53"/>');
    expect(before).toContain('<tcp dstipaddr="$GATEWAY" dstportstart="53"/>');
    expect(before).toContain('<icmpv6 type="135"/>');
  });
});

describe('the isolation filter on IPv6 networks and with network.blockPrefixes', () => {
  const blocking = parseAppliance(
    'name: edge\nnetwork: {blockPrefixes: ["2001:db8:42::/48", "203.0.113.128/25", "2001:db8:6:bad::/64"]}\n',
    join(repoRoot, 'x.yaml'),
  );
  const drops = (xml: string) => filterRules(xml).filter((r) => r.action === 'drop');
  it('drops every block prefix, IPv4 and IPv6, after the built-in ranges and in the order given', () => {
    const rules = drops(nwfilterXml(blocking));
    const extra = rules.slice(-3).map((r) => r.body);
    expect(extra).toEqual([
      '<all-ipv6 dstipaddr="2001:db8:42::" dstipmask="48"/>',
      '<all dstipaddr="203.0.113.128" dstipmask="25"/>',
      '<all-ipv6 dstipaddr="2001:db8:6:bad::" dstipmask="64"/>',
    ]);
    expect(rules).toHaveLength(blockedIPv4.length + blockedIPv6.length + 3);
    expect(Math.max(...rules.map((r) => r.priority))).toBeLessThanOrEqual(1000);
  });
  it('without block prefixes, only the built-in drops (the IPv4 rules unchanged)', () => {
    expect(drops(nwfilterXml(config)).map((r) => r.body)).toEqual([
      ...blockedIPv4.map(([a, m]) => `<all dstipaddr="${a}" dstipmask="${m}"/>`),
      ...blockedIPv6.map(([a, m]) => `<all-ipv6 dstipaddr="${a}" dstipmask="${m}"/>`),
    ]);
  });
  it('drops unique local, link-local and site (every) multicast IPv6 destinations', () => {
    const bodies = drops(nwfilterXml(config)).map((r) => r.body);
    expect(bodies).toContain('<all-ipv6 dstipaddr="fc00::" dstipmask="7"/>');
    expect(bodies).toContain('<all-ipv6 dstipaddr="fe80::" dstipmask="10"/>');
    expect(bodies).toContain('<all-ipv6 dstipaddr="ff00::" dstipmask="8"/>');
  });
  it('lets DNS to $GATEWAY6 through before the drops, and RA/NDP/MLD and DHCPv6 both ways', () => {
    const rules = filterRules(nwfilterXml(blocking, { gateway6: '2001:db8:1::1' }));
    const firstDrop = Math.min(...rules.filter((r) => r.action === 'drop').map((r) => r.priority));
    const before = rules.filter((r) => r.priority < firstDrop && r.action === 'accept');
    const out = before.filter((r) => r.direction === 'out').map((r) => r.body);
    expect(out).toContain('<udp-ipv6 dstipaddr="$GATEWAY6" dstportstart="53"/>');
    expect(out).toContain('<tcp-ipv6 dstipaddr="$GATEWAY6" dstportstart="53"/>');
    expect(out).toContain('<udp-ipv6 srcportstart="546" dstportstart="547"/>');
    // Router solicitation/advertisement, neighbour solicitation/advertisement, MLDv2 reports.
    for (const type of ['133', '134', '135', '136', '143'])
      for (const dir of ['in', 'out'])
        expect(
          before.some((r) => r.direction === dir && r.body === `<icmpv6 type="${type}"/>`),
          `${dir} ${type}`,
        ).toBe(true);
    // No IPv4 gateway given: no rule names $GATEWAY (libvirt would refuse to start the domain).
    expect(rules.map((r) => r.body).join('\n')).not.toContain('$GATEWAY"');
  });
  it('the IPv4-only filter (the default) names no $GATEWAY6; both gateways give both sets of DNS rules', () => {
    expect(nwfilterXml(config)).not.toContain('$GATEWAY6');
    const both = nwfilterXml(config, { gateway: '10.0.0.1', gateway6: 'fd00::1' });
    expect(both).toContain('<udp dstipaddr="$GATEWAY" dstportstart="53"/>');
    expect(both).toContain('<udp-ipv6 dstipaddr="$GATEWAY6" dstportstart="53"/>');
  });
  it('the domain passes GATEWAY6 (and GATEWAY when there is one) to the filter', () => {
    const v6 = domainXml(config, options({ gateway6: '2001:db8:1::1' }));
    expect(v6).toContain('<filterref filter="edge-isolate">');
    expect(v6).toContain('<parameter name="GATEWAY6" value="2001:db8:1::1"/>');
    expect(v6).not.toContain('name="GATEWAY"');
    const both = domainXml(config, options({ gateway: '10.0.0.1', gateway6: 'fd00::1' }));
    expect(both).toContain('<parameter name="GATEWAY" value="10.0.0.1"/>');
    expect(both).toContain('<parameter name="GATEWAY6" value="fd00::1"/>');
    expect(() => domainXml(config, options({ gateway6: '10.0.0.1' }))).toThrow(/is not an IPv6 address/);
  });
  it("reads both of a network's addresses; an IPv6-only network has only gateway6", () => {
    const net = (ips: string) => `<network><name>n</name>${ips}</network>`;
    expect(networkGateways(net(`<ip family='ipv6' address='2001:db8:1::1' prefix='64'/>`))).toEqual({
      gateway6: '2001:db8:1::1',
    });
    expect(
      networkGateways(
        net(
          `<ip address='10.7.0.1' netmask='255.255.255.0'/><ip family='ipv6' address='fd00:7::1' prefix='64'/>`,
        ),
      ),
    ).toEqual({ gateway: '10.7.0.1', gateway6: 'fd00:7::1' });
  });
  it('takes the gateways from flags or config first, then from the network (both families)', () => {
    const where = 'network n';
    const fallback = { gateway: '10.7.0.1', gateway6: 'fd00:7::1' };
    expect(filterGateway(config, { fallback, where })).toEqual(fallback);
    expect(filterGateway(config, { gateway6: '2001:db8::1', fallback, where })).toEqual({
      gateway6: '2001:db8::1',
    });
    const withV6 = parseAppliance('name: edge\nvm: {gateway6: "2001:db8::53"}\n', join(repoRoot, 'x.yaml'));
    expect(filterGateway(withV6, { gateway: '10.0.0.1', where })).toEqual({
      gateway: '10.0.0.1',
      gateway6: '2001:db8::53',
    });
    expect(filterGateway(config, { filter: false, fallback, where })).toBeUndefined();
    expect(() => filterGateway(config, { fallback: {}, where })).toThrow(
      /needs the DHCP\/DNS address of network n/,
    );
  });
  it('libvirt domain --gateway6 attaches the filter with GATEWAY6', () => {
    const r = runCli(['libvirt', 'domain', '--network', 'v6only', '--gateway6', '2001:db8:1::1']);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain('<parameter name="GATEWAY6" value="2001:db8:1::1"/>');
    expect(r.stdout).not.toContain('name="GATEWAY"');
  });
});

describe('the filter is on by default everywhere', () => {
  it('libvirt domain attaches it with 192.168.122.1 on the default network', () => {
    const r = runCli(['libvirt', 'domain']);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain('<filterref filter="runner-appliance-isolate">');
    expect(r.stdout).toContain('<parameter name="GATEWAY" value="192.168.122.1"/>');
  });
  it('takes the gateway from vm.gateway, and --gateway over it', () => {
    const file = join(tempDir(), 'a.yaml');
    writeFileSync(file, 'vm: {gateway: 10.20.30.1}\n');
    const fromConfig = runCli(['libvirt', 'domain', '-c', file, '--bridge', 'br0']);
    expect(fromConfig.status, fromConfig.stderr).toBe(0);
    expect(fromConfig.stdout).toContain('<parameter name="GATEWAY" value="10.20.30.1"/>');
    const fromFlag = runCli(['libvirt', 'domain', '-c', file, '--gateway', '10.0.0.1']);
    expect(fromFlag.stdout).toContain('<parameter name="GATEWAY" value="10.0.0.1"/>');
    const render = runCli(['libvirt', 'render', '-c', file, '--out', join(tempDir(), 'lv')]);
    expect(render.status, render.stderr).toBe(0);
  });
  it('--no-filter is the way out', () => {
    const r = runCli(['libvirt', 'domain', '--no-filter']);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).not.toContain('filterref');
  });
  it.each([
    [['--bridge', 'br0'], /the LAN behind bridge br0: pass --gateway IP or set vm.gateway/],
    [['--network', 'isolated'], /network isolated: pass --gateway IP or set vm.gateway/],
  ])('refuses %j without a known gateway, with one line and exit 2', (args, message) => {
    const r = runCli(['libvirt', 'domain', ...args]);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(message);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stdout).toBe('');
  });
  it('refuses a vm.gateway that is not an IPv4 address', () => {
    const file = join(tempDir(), 'a.yaml');
    writeFileSync(file, 'vm: {gateway: 10.0.0}\n');
    const r = runCli(['libvirt', 'domain', '-c', file]);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/vm\.gateway: expected an IPv4 address/);
  });
});

describe('image digests in the domain metadata', () => {
  it('are recorded and read back', () => {
    const kernel = 'a'.repeat(64);
    const rootfs = 'b'.repeat(64);
    const xml = domainXml(config, options({ digests: { kernel, rootfs } }));
    expect(xml).toContain('<appliance:images xmlns:appliance="urn:runner-appliance:images:1">');
    expect(recordedDigests(xml)).toEqual({ kernel, rootfs });
    // libvirt gives the XML back with single quotes.
    expect(recordedDigests(xml.replaceAll('"', "'"))).toEqual({ kernel, rootfs });
    if (!noValidator) expect(validate(xml).ok, validate(xml).output).toBe(true);
  });
});

describe('XML that libvirt gives back is parsed, not matched with regular expressions', () => {
  const kernel = 'a'.repeat(64);
  const rootfs = 'b'.repeat(64);
  const initrd = 'c'.repeat(64);
  // As `virsh dumpxml` prints it: single quotes, its own indentation, the prefix it stored.
  const dumped = (images: string) => `<domain type='qemu' id='3'>
  <name>edge</name>
  <metadata>
    ${images}
  </metadata>
  <os>
    <type arch='x86_64' machine='pc-q35-7.2'>hvm</type>
    <kernel>/var/lib/libvirt/images/p/edge-kernel</kernel>
    <initrd>/var/lib/libvirt/images/p/edge-initrd</initrd>
  </os>
  <devices>
    <disk type='file' device='disk'>
      <source file='/var/lib/libvirt/images/p/edge-rootfs' index='2'/>
    </disk>
    <disk type='file' device='disk'>
      <source file="/var/lib/libvirt/images/p/it&apos;s-data"/>
    </disk>
  </devices>
</domain>
`;

  it('reads the digests under any prefix, quoting and white space', () => {
    for (const images of [
      `<appliance:images xmlns:appliance='urn:runner-appliance:images:1'><appliance:kernel sha256='${kernel}'/><appliance:rootfs sha256='${rootfs}'/></appliance:images>`,
      `<ra:images xmlns:ra="urn:runner-appliance:images:1">\n      <ra:kernel   sha256 = "${kernel}" />\n      <ra:rootfs\n sha256="${rootfs}"></ra:rootfs>\n    </ra:images>`,
      `<images xmlns='urn:runner-appliance:images:1'><kernel sha256='${kernel}'/><rootfs sha256='${rootfs}'/></images>`,
    ])
      expect(recordedDigests(dumped(images)), images).toEqual({ kernel, rootfs });
    const withInitrd = `<x:images xmlns:x='urn:runner-appliance:images:1'><x:initrd sha256='${initrd}'/></x:images>`;
    expect(recordedDigests(dumped(withInitrd))).toEqual({ initrd });
  });

  it('ignores elements of the same name in another namespace, outside <metadata>, or without a sha256', () => {
    const other = `<appliance:images xmlns:appliance='urn:someone-else:1'><appliance:kernel sha256='${kernel}'/></appliance:images>`;
    expect(recordedDigests(dumped(other))).toEqual({});
    const bad = `<a:images xmlns:a='urn:runner-appliance:images:1'><a:kernel sha256='not-a-digest'/><a:rootfs/></a:images>`;
    expect(recordedDigests(dumped(bad))).toEqual({});
    expect(recordedDigests("<domain type='kvm'><name>edge</name></domain>")).toEqual({});
    // A regular expression read the prefix "appliance:" anywhere, even inside a description.
    const description = `<domain><description>&lt;appliance:kernel sha256='${kernel}'/&gt;</description></domain>`;
    expect(recordedDigests(description)).toEqual({});
  });

  it('reads the files a domain boots from and attaches (entities decoded)', () => {
    expect(domainFiles(dumped(''))).toEqual([
      '/var/lib/libvirt/images/p/edge-kernel',
      '/var/lib/libvirt/images/p/edge-initrd',
      '/var/lib/libvirt/images/p/edge-rootfs',
      "/var/lib/libvirt/images/p/it's-data",
    ]);
    const ours = domainXml(config, options({ initrd: '/srv/images/initrd' }));
    expect(domainFiles(ours)).toEqual([
      '/srv/images/bzImage',
      '/srv/images/initrd',
      '/srv/images/rootfs.squashfs',
      '/srv/images/data.img',
    ]);
  });

  it("reads a network's IPv4 address as net-dumpxml prints it", () => {
    const network = (ips: string) => `<network connections='1'>
  <name>isolated</name>
  <uuid>0b4b3b8e-1d0a-4bba-a2c1-2c6f4f0e8a41</uuid>
  <bridge name='virbr1' stp='on' delay='0'/>
  <mac address='52:54:00:12:34:56'/>
  ${ips}
</network>`;
    const v4 = `<ip address='10.77.0.1' netmask='255.255.255.0'>\n    <dhcp><range start='10.77.0.2' end='10.77.0.254'/></dhcp>\n  </ip>`;
    const v6 = `<ip family="ipv6" address="fd00:77::1" prefix="64"/>`;
    expect(networkIPv4(network(v4))).toBe('10.77.0.1');
    expect(networkIPv4(network(`${v6}\n  ${v4}`))).toBe('10.77.0.1');
    expect(networkIPv4(network(`<ip family='ipv4' address = "10.9.0.1" prefix='24'/>`))).toBe('10.9.0.1');
    expect(networkIPv4(network(v6))).toBeUndefined();
    expect(networkIPv4(network(''))).toBeUndefined();
    // An address elsewhere (a DNS host entry) is not the network's.
    expect(
      networkIPv4(network(`<dns><host ip='10.1.1.1'><hostname>a</hostname></host></dns>`)),
    ).toBeUndefined();
  });

  it('refuses malformed XML or the wrong document with one clear error (a libvirt host problem, exit 3)', () => {
    for (const [xml, root] of [
      ["<domain><metadata><a:images xmlns:a='urn:runner-appliance:images:1'><a:kernel sha256='", 'domain'],
      ['error: failed to get domain', 'domain'],
      ['', 'domain'],
      ['<network><name>n</name></network>', 'domain'],
      ['<domain><name>d</name></domain>', 'network'],
    ] as const) {
      let caught: unknown;
      try {
        if (root === 'domain') recordedDigests(xml, 'virsh dumpxml edge');
        else networkIPv4(xml, 'virsh net-dumpxml n');
      } catch (e) {
        caught = e;
      }
      expect(caught, xml).toBeInstanceOf(ApplianceError);
      const e = caught as ApplianceError;
      expect(e.exitCode).toBe(ExitCode.hostProblem);
      expect(e.oneLine()).toMatch(
        new RegExp(
          `^virsh (net-)?dumpxml \\w+ is not a libvirt <${root}> XML document \\(.+\\): check the libvirt host`,
        ),
      );
      expect(e.oneLine()).not.toContain('\n');
    }
  });
});
