/** libvirt domain and nwfilter XML for an appliance (xmlbuilder2 escapes every value). */
import { isIPv4, isIPv6 } from 'node:net';
import { isAbsolute } from 'node:path';
import { create } from 'xmlbuilder2';
import type { XMLBuilder } from 'xmlbuilder2/lib/interfaces.js';
import { type ApplianceConfig, type Arch, parseCidr } from '../config/index.js';
import { uuidV5 } from '../digest.js';
import { ApplianceError, ExitCode } from '../errors.js';
import { type Accel, guestAgentChannel, guestMachine, kernelCmdline, memoryMiB } from '../guest/index.js';

export interface DomainOptions {
  arch: Arch;
  accel: Accel;
  kernel: string;
  initrd?: string;
  rootfs: string;
  dataDisk: string;
  /** systemd credentials handed over through fw_cfg, each read by QEMU from a host file. */
  credentials: { name: string; file: string }[];
  /** A libvirt network name, or a host bridge. */
  network: { type: 'network' | 'bridge'; name: string };
  /** Attach the isolation filter with this IPv4 gateway (the network's DHCP/DNS server). */
  gateway?: string;
  /** Attach the isolation filter with this IPv6 DNS server; neither gateway: no filter. */
  gateway6?: string;
  /** sha256 of the image files behind kernel/initrd/rootfs, recorded in the domain's metadata. */
  digests?: ImageDigests;
  /** The image pairs `vm update` keeps, newest first (the booted one among them), recorded in the metadata. */
  pairs?: ImagePair[];
  serialLog: string;
  /** Extra kernel command-line words. */
  cmdline?: string[];
}

export interface ImageDigests {
  kernel?: string;
  initrd?: string;
  rootfs?: string;
}

/** One image file of a kept pair: its sha256 and the pool volume holding it. */
export interface ImageRef {
  sha256: string;
  volume: string;
}

/** A kernel + root filesystem (+ initrd) that `vm update` keeps, so `vm rollback` can boot it again. */
export interface ImagePair {
  kernel: ImageRef;
  rootfs: ImageRef;
  initrd?: ImageRef;
}

const pairKinds = ['kernel', 'rootfs', 'initrd'] as const;

/** Namespace of the domain metadata in which `vm define` records what it uploaded. */
export const metadataNamespace = 'urn:runner-appliance:images:1';

/** An element of a parsed document (the DOM node behind xmlbuilder2's builder). */
interface XmlElement {
  readonly nodeType: number;
  readonly localName: string;
  readonly namespaceURI: string | null;
  readonly textContent: string | null;
  getAttribute(name: string): string | null;
}
const elementNode = 1;

/**
 * Parse XML that libvirt gave back (`virsh dumpxml`, `net-dumpxml`): any quoting, white space,
 * namespace prefix or entity, parsed by xmlbuilder2, not matched by regular expressions. XML that
 * does not parse, or holds no `<root>` element, is a libvirt host problem (exit 3).
 */
export function parseLibvirtXml(xml: string, root: string, what: string): XMLBuilder {
  let doc: XMLBuilder | undefined;
  let why = `no <${root}> element`;
  try {
    doc = create(xml).root();
  } catch (e) {
    why = (e as Error).message.split('\n')[0] ?? 'not XML';
    doc = undefined;
  }
  const el = doc?.node as unknown as XmlElement | undefined;
  if (!doc || el?.nodeType !== elementNode || el.localName !== root || el.namespaceURI !== null)
    throw new ApplianceError(`${what} is not a libvirt <${root}> XML document (${why})`, {
      exitCode: ExitCode.hostProblem,
      hint: 'check the libvirt host (virsh answers with the XML it stores); rerun with --verbose',
    });
  return doc;
}

/** The DOM element behind a builder node, or undefined for text, comments and the like. */
function elementOf(n: XMLBuilder): XmlElement | undefined {
  const node = n.node as unknown as XmlElement;
  return node.nodeType === elementNode ? node : undefined;
}

/** The element children of `parent` (descendants with `deep`) that `match` accepts. */
function elements(parent: XMLBuilder, match: (el: XmlElement) => boolean, deep = false): XMLBuilder[] {
  return parent.filter(
    (n) => {
      const el = elementOf(n);
      return el !== undefined && match(el);
    },
    false,
    deep,
  );
}

/** Elements of no namespace called `name`: libvirt's own. */
const named = (name: string) => (el: XmlElement) => el.localName === name && el.namespaceURI === null;

/** The digests recorded in a domain XML by `domainXml` (as libvirt gives it back, under any prefix). */
export function recordedDigests(xml: string, what = 'the domain XML'): ImageDigests {
  const domain = parseLibvirtXml(xml, 'domain', what);
  const out: ImageDigests = {};
  for (const images of elements(domain, named('metadata'))) {
    for (const n of elements(images, (el) => el.namespaceURI === metadataNamespace, true)) {
      const el = elementOf(n);
      const kind = el?.localName;
      const sha256 = el?.getAttribute('sha256')?.trim();
      if (
        (kind === 'kernel' || kind === 'initrd' || kind === 'rootfs') &&
        sha256 &&
        /^[0-9a-f]{64}$/.test(sha256)
      )
        out[kind] = sha256;
    }
  }
  return out;
}

/**
 * The kept image pairs recorded by `vm update` (`<appliance:pair kernel=… kernelVolume=… …/>`,
 * newest first), or [] when none are. Entries that are incomplete or malformed are skipped.
 */
export function recordedPairs(xml: string, what = 'the domain XML'): ImagePair[] {
  const domain = parseLibvirtXml(xml, 'domain', what);
  const pairs: ImagePair[] = [];
  for (const metadata of elements(domain, named('metadata')))
    for (const n of elements(
      metadata,
      (el) => el.namespaceURI === metadataNamespace && el.localName === 'pair',
      true,
    )) {
      const el = elementOf(n);
      const ref = (kind: (typeof pairKinds)[number]): ImageRef | undefined => {
        const sha256 = el?.getAttribute(kind)?.trim();
        const volume = el?.getAttribute(`${kind}Volume`)?.trim();
        return sha256 && /^[0-9a-f]{64}$/.test(sha256) && volume && /^[A-Za-z0-9_.-]+$/.test(volume)
          ? { sha256, volume }
          : undefined;
      };
      const kernel = ref('kernel');
      const rootfs = ref('rootfs');
      if (!kernel || !rootfs) continue;
      const initrd = ref('initrd');
      pairs.push(initrd ? { kernel, rootfs, initrd } : { kernel, rootfs });
    }
  return pairs;
}

/** The DOM of a parsed document, as far as switchImages edits it. */
interface DomNode {
  readonly localName: string | null;
  readonly namespaceURI: string | null;
  readonly childNodes: ArrayLike<DomNode>;
  readonly ownerDocument: {
    createElement(name: string): DomNode;
    createElementNS(ns: string, name: string): DomNode;
  };
  nextSibling: DomNode | null;
  textContent: string | null;
  getAttribute(name: string): string | null;
  setAttribute(name: string, value: string): void;
  appendChild(child: DomNode): DomNode;
  insertBefore(child: DomNode, before: DomNode | null): DomNode;
  removeChild(child: DomNode): DomNode;
}
const children = (n: DomNode, name: string, ns: string | null = null) =>
  Array.from(n.childNodes).filter((c) => c.localName === name && c.namespaceURI === ns);

/**
 * The domain XML (`virsh dumpxml --inactive`) switched to other images: kernel, initrd and the
 * root filesystem disk (target vda) point at `paths`, the metadata records `digests` and `pairs`.
 * Everything else (MAC address, data disk, credentials, network, filter) stays as it is: the
 * data disk is never touched by a switch.
 */
export function switchImages(
  xml: string,
  paths: { kernel: string; initrd?: string; rootfs: string },
  digests: ImageDigests,
  pairs: ImagePair[],
  what = 'the domain XML',
): string {
  for (const [kind, path] of Object.entries(paths)) if (path !== undefined) checkPath(kind, path);
  const doc = parseLibvirtXml(xml, 'domain', what);
  const domain = doc.node as unknown as DomNode;
  const os = children(domain, 'os')[0];
  const kernel = os && children(os, 'kernel')[0];
  const rootfs = children(domain, 'devices')
    .flatMap((d) => children(d, 'disk'))
    .find((d) => children(d, 'target').some((t) => t.getAttribute('dev') === 'vda'));
  const rootfsSource = rootfs && children(rootfs, 'source')[0];
  if (!os || !kernel || !rootfsSource)
    throw new ApplianceError(`${what} has no kernel or no root filesystem disk (vda) to switch`, {
      exitCode: ExitCode.hostProblem,
      hint: "redefine the VM with 'appliance vm define'",
    });
  kernel.textContent = paths.kernel;
  rootfsSource.setAttribute('file', paths.rootfs);
  let initrd = children(os, 'initrd')[0];
  if (paths.initrd === undefined && initrd) os.removeChild(initrd);
  else if (paths.initrd !== undefined) {
    if (!initrd) {
      initrd = os.ownerDocument.createElement('initrd');
      os.insertBefore(initrd, kernel.nextSibling);
    }
    initrd.textContent = paths.initrd;
  }
  // The metadata: ours replaced, anybody else's kept.
  let metadata = children(domain, 'metadata')[0];
  if (!metadata) {
    metadata = os.ownerDocument.createElement('metadata');
    domain.insertBefore(metadata, os);
  }
  for (const old of children(metadata, 'images', metadataNamespace)) metadata.removeChild(old);
  const fresh = create().ele('x').ele('appliance:images', { 'xmlns:appliance': metadataNamespace });
  writeImageMetadata(fresh, digests, pairs);
  const images = os.ownerDocument.createElementNS(metadataNamespace, 'appliance:images');
  for (const c of Array.from((fresh.node as unknown as DomNode).childNodes)) {
    const el = os.ownerDocument.createElementNS(metadataNamespace, `appliance:${c.localName}`);
    for (const attr of [
      'kernel',
      'kernelVolume',
      'rootfs',
      'rootfsVolume',
      'initrd',
      'initrdVolume',
      'sha256',
    ]) {
      const v = c.getAttribute(attr);
      if (v !== null) el.setAttribute(attr, v);
    }
    images.appendChild(el);
  }
  metadata.appendChild(images);
  return `${doc.end({ prettyPrint: true, headless: true })}\n`;
}

/** Our metadata's children: the booted images' digests, then the kept pairs. */
function writeImageMetadata(images: XMLBuilder, digests: ImageDigests, pairs: ImagePair[]): void {
  for (const [kind, sha256] of Object.entries(digests).filter(([, v]) => v)) {
    if (!/^[0-9a-f]{64}$/.test(sha256)) throw new ApplianceError(`${kind} digest ${sha256} is not a sha256`);
    images.ele(`appliance:${kind}`, { sha256 });
  }
  for (const pair of pairs) {
    const attrs: Record<string, string> = {};
    for (const kind of pairKinds) {
      const ref = pair[kind];
      if (!ref) continue;
      if (!/^[0-9a-f]{64}$/.test(ref.sha256) || !/^[A-Za-z0-9_.-]+$/.test(ref.volume))
        throw new ApplianceError(`${kind} ${ref.volume} (${ref.sha256}) is not a valid image pair entry`);
      attrs[kind] = ref.sha256;
      attrs[`${kind}Volume`] = ref.volume;
    }
    images.ele('appliance:pair', attrs);
  }
}

/** The IPv4 address of a libvirt network (its first IPv4 `<ip address=…>`), from `net-dumpxml`. */
export function networkIPv4(xml: string, what = 'the network XML'): string | undefined {
  return networkGateways(xml, what).gateway;
}

/**
 * The addresses of a libvirt network, as the filter's gateways: its first IPv4 `<ip address=…>`
 * (gateway) and its first IPv6 one (gateway6, where libvirt's dnsmasq answers DNS), from `net-dumpxml`.
 */
export function networkGateways(xml: string, what = 'the network XML'): FilterGateways {
  const network = parseLibvirtXml(xml, 'network', what);
  const out: FilterGateways = {};
  for (const n of elements(network, named('ip'))) {
    const el = elementOf(n);
    const family = el?.getAttribute('family')?.trim() || 'ipv4';
    const address = el?.getAttribute('address')?.trim();
    if (!address) continue;
    if (family === 'ipv4' && isIPv4(address)) out.gateway ??= address;
    if (family === 'ipv6' && isIPv6(address)) out.gateway6 ??= address;
  }
  return out;
}

/** The host files a domain XML boots from and attaches: kernel, initrd and each disk's source file. */
export function domainFiles(xml: string, what = 'the domain XML'): string[] {
  const domain = parseLibvirtXml(xml, 'domain', what);
  const files: string[] = [];
  for (const os of elements(domain, named('os')))
    for (const n of elements(os, (el) => named('kernel')(el) || named('initrd')(el))) {
      const path = elementOf(n)?.textContent?.trim();
      if (path) files.push(path);
    }
  for (const devices of elements(domain, named('devices')))
    for (const disk of elements(devices, named('disk')))
      for (const source of elements(disk, named('source'))) {
        const file = elementOf(source)?.getAttribute('file');
        if (file) files.push(file);
      }
  return files;
}

/** libvirt's default NAT network's address, the gateway when the default network is used. */
export const defaultNetworkGateway = '192.168.122.1';

/**
 * The DHCP/DNS servers the isolation filter lets the VM reach: an IPv4 `gateway` (filter
 * parameter GATEWAY) and an IPv6 `gateway6` (GATEWAY6); the filter holds DNS rules only for those
 * it is given.
 */
export interface FilterGateways {
  gateway?: string;
  gateway6?: string;
}

/** True when a filter is given at least one gateway. */
export const hasGateway = (g: FilterGateways | undefined): g is FilterGateways =>
  g !== undefined && (g.gateway !== undefined || g.gateway6 !== undefined);

/**
 * The gateways the isolation filter is attached with, or undefined for no filter (only when
 * asked with `filter: false`). Flags first, then `vm.gateway`/`vm.gateway6`; only when neither
 * family is given that way, `fallback` (what the caller knows about the network: both families);
 * with none of them the filter cannot be built and this refuses.
 */
export function filterGateway(
  config: Pick<ApplianceConfig, 'vm'>,
  o: { filter?: boolean; gateway?: string; gateway6?: string; fallback?: FilterGateways; where: string },
): FilterGateways | undefined {
  if (o.filter === false) return undefined;
  const given: FilterGateways = {};
  const gateway = o.gateway ?? config.vm.gateway;
  const gateway6 = o.gateway6 ?? config.vm.gateway6;
  if (gateway !== undefined) given.gateway = gateway;
  if (gateway6 !== undefined) given.gateway6 = gateway6;
  const gateways = hasGateway(given) ? given : (o.fallback ?? {});
  if (!hasGateway(gateways))
    throw new ApplianceError(`the isolation filter needs the DHCP/DNS address of ${o.where}`, {
      hint: 'pass --gateway IP or set vm.gateway in the config (--gateway6/vm.gateway6 for an IPv6 DNS server; or --no-filter to attach none)',
    });
  return gateways;
}

/** fw_cfg file names are at most 55 bytes. */
const credentialPrefix = 'opt/io.systemd.credentials/';

function checkPath(what: string, path: string): string {
  if (!isAbsolute(path))
    throw new ApplianceError(`${what} ${JSON.stringify(path)} is not an absolute path`, {
      hint: 'libvirt needs absolute paths',
    });
  // biome-ignore lint/suspicious/noControlCharactersInRegex: refusing control characters is the point
  if (/[\u0000-\u001f\u007f]/.test(path))
    throw new ApplianceError(`${what} ${JSON.stringify(path)} contains control characters`, {
      hint: 'rename it',
    });
  if (path.includes(',') && what !== 'serial log') {
    throw new ApplianceError(
      `${what} ${JSON.stringify(path)} contains a comma, which QEMU's option syntax cannot carry`,
      { hint: 'rename it' },
    );
  }
  return path;
}

/** A stable UUID for an appliance name (RFC 4122 version 5 layout), so machine-id survives redefinition. */
export function domainUuid(name: string): string {
  return uuidV5(`runner-appliance:${name}`, Buffer.alloc(0));
}

export function filterName(config: Pick<ApplianceConfig, 'name'>): string {
  return `${config.name}-isolate`;
}

export function domainXml(config: ApplianceConfig, o: DomainOptions): string {
  for (const [what, p] of [
    ['kernel', o.kernel],
    ['root filesystem', o.rootfs],
    ['data disk', o.dataDisk],
    ['serial log', o.serialLog],
    ...(o.initrd ? [['initrd', o.initrd]] : []),
  ] as [string, string][]) {
    checkPath(what, p);
  }
  for (const c of o.credentials) {
    if (!/^[A-Za-z0-9_.-]+$/.test(c.name) || credentialPrefix.length + c.name.length > 55) {
      throw new ApplianceError(`credential name ${JSON.stringify(c.name)} is not usable through fw_cfg`, {
        hint: `use letters, digits, ".", "_", "-" and at most ${55 - credentialPrefix.length} characters`,
      });
    }
    checkPath(`credential file for ${c.name}`, c.file);
  }
  if (o.gateway !== undefined && !isIPv4(o.gateway)) {
    throw new ApplianceError(`gateway ${JSON.stringify(o.gateway)} is not an IPv4 address`, {
      hint: "pass the libvirt network's address, e.g. 192.168.122.1",
    });
  }
  if (o.gateway6 !== undefined && (!isIPv6(o.gateway6) || o.gateway6.includes('%'))) {
    throw new ApplianceError(`IPv6 gateway ${JSON.stringify(o.gateway6)} is not an IPv6 address`, {
      hint: "pass the libvirt network's IPv6 address, e.g. 2001:db8:1::1",
    });
  }
  if (!/^[A-Za-z0-9_.:-]+$/.test(o.network.name))
    throw new ApplianceError(`network name ${JSON.stringify(o.network.name)} is not valid`);
  for (const word of o.cmdline ?? []) {
    // biome-ignore lint/suspicious/noControlCharactersInRegex: refusing control characters is the point
    if (/[\s\u0000-\u001f]/.test(word))
      throw new ApplianceError(
        `kernel argument ${JSON.stringify(word)} contains white space or control characters`,
      );
  }
  const machine = guestMachine(o.arch);
  const x86 = o.arch === 'x86_64';
  const kib = memoryMiB(config) * 1024;
  const doc = create({ version: '1.0' });
  const dom = doc.ele('domain', {
    type: o.accel === 'kvm' ? 'kvm' : 'qemu',
    ...(x86 ? {} : { 'xmlns:qemu': 'http://libvirt.org/schemas/domain/qemu/1.0' }),
  });
  dom.ele('name').txt(config.name);
  dom.ele('uuid').txt(domainUuid(config.name));
  dom.ele('description').txt(`${config.name}: GitLab Runner with Docker (runner-appliance)`);
  const digests = Object.entries(o.digests ?? {}).filter(([, v]) => v);
  if (digests.length > 0 || (o.pairs ?? []).length > 0) {
    const images = dom.ele('metadata').ele('appliance:images', { 'xmlns:appliance': metadataNamespace });
    writeImageMetadata(images, o.digests ?? {}, o.pairs ?? []);
  }
  dom.ele('memory', { unit: 'KiB' }).txt(String(kib));
  dom.ele('currentMemory', { unit: 'KiB' }).txt(String(kib));
  dom.ele('vcpu', { placement: 'static' }).txt(String(config.vm.vcpus));
  if (o.credentials.length > 0) {
    const sysinfo = dom.ele('sysinfo', { type: 'fwcfg' });
    for (const c of o.credentials)
      sysinfo.ele('entry', { name: `${credentialPrefix}${c.name}`, file: c.file });
  }
  const os = dom.ele('os');
  os.ele('type', { arch: o.arch, machine: machine.libvirtMachine }).txt('hvm');
  os.ele('kernel').txt(o.kernel);
  if (o.initrd) os.ele('initrd').txt(o.initrd);
  os.ele('cmdline').txt(kernelCmdline(o.arch, o.cmdline).join(' '));
  const features = dom.ele('features');
  if (x86) features.ele('acpi');
  if (machine.gicVersion) features.ele('gic', { version: String(machine.gicVersion) });
  if (o.accel === 'kvm') dom.ele('cpu', { mode: 'host-passthrough', check: 'none' });
  else dom.ele('cpu', { mode: 'maximum', check: 'none' });
  dom.ele('clock', { offset: 'utc' });
  dom.ele('on_poweroff').txt('destroy');
  dom.ele('on_reboot').txt('restart');
  dom.ele('on_crash').txt('restart');
  const dev = dom.ele('devices');
  disk(dev, o.rootfs, 'vda', true);
  disk(dev, o.dataDisk, 'vdb', false);
  const nic = dev.ele('interface', { type: o.network.type });
  nic.ele('source', o.network.type === 'network' ? { network: o.network.name } : { bridge: o.network.name });
  nic.ele('model', { type: 'virtio' });
  if (hasGateway(o)) {
    const ref = nic.ele('filterref', { filter: filterName(config) });
    if (o.gateway) ref.ele('parameter', { name: 'GATEWAY', value: o.gateway });
    if (o.gateway6) ref.ele('parameter', { name: 'GATEWAY6', value: o.gateway6 });
  }
  const serial = dev.ele('serial', { type: 'pty' });
  serial.ele('log', { file: o.serialLog, append: 'off' });
  serial.ele('target', x86 ? { type: 'isa-serial', port: '0' } : { port: '0' });
  dev.ele('console', { type: 'pty' }).ele('target', { type: 'serial', port: '0' });
  // The QEMU guest agent's port (libvirt picks the host socket): the host reads the guest's
  // health through it, over libvirt's own connection (health.ts).
  dev.ele('channel', { type: 'unix' }).ele('target', { type: 'virtio', name: guestAgentChannel });
  if (config.vm.balloon)
    dev.ele('memballoon', { model: 'virtio', autodeflate: 'on', freePageReporting: 'on' });
  else dev.ele('memballoon', { model: 'none' });
  dev.ele('rng', { model: 'virtio' }).ele('backend', { model: 'random' }).txt('/dev/urandom');
  // A guest panic reaches libvirt (GUEST_PANICKED) and on_crash applies. libvirt 9.0 (Debian 12)
  // knows no panic model for aarch64 'virt', so there QEMU's pvpanic-pci is passed through, at a
  // fixed slot of the root bus: without an address QEMU put it in slot 1 before libvirt's own
  // devices and refused to start the domain (libvirt's first pcie-root-port is at 0x1).
  if (x86) dev.ele('panic', { model: 'isa' });
  else
    dom
      .ele('qemu:commandline')
      .ele('qemu:arg', { value: '-device' })
      .up()
      .ele('qemu:arg', { value: aarch64PanicDevice });
  return `${doc.end({ prettyPrint: true, headless: true })}\n`;
}

/** QEMU's pvpanic-pci on aarch64 'virt', at the last slot of the root bus (libvirt fills it from slot 1). */
export const aarch64PanicDevice = 'pvpanic-pci,bus=pcie.0,addr=0x1f';

function disk(devices: XMLBuilder, file: string, target: string, readonly: boolean): void {
  const d = devices.ele('disk', { type: 'file', device: 'disk' });
  d.ele('driver', readonly ? { name: 'qemu', type: 'raw' } : { name: 'qemu', type: 'raw', discard: 'unmap' });
  d.ele('source', { file });
  d.ele('target', { dev: target, bus: 'virtio' });
  if (readonly) d.ele('readonly');
}

/** IPv4 destinations the VM must not reach: private, shared, link-local, loopback, multicast, reserved. */
export const blockedIPv4: [string, number][] = [
  ['0.0.0.0', 8],
  ['10.0.0.0', 8],
  ['100.64.0.0', 10],
  ['127.0.0.0', 8],
  ['169.254.0.0', 16],
  ['172.16.0.0', 12],
  ['192.0.0.0', 24],
  ['192.0.2.0', 24],
  ['192.168.0.0', 16],
  ['198.18.0.0', 15],
  ['198.51.100.0', 24],
  ['203.0.113.0', 24],
  ['224.0.0.0', 4],
  ['240.0.0.0', 4],
];

/**
 * IPv6 destinations the VM must not reach: unique local, link-local, and multicast of every scope
 * (site-local ff05:: among them) once ND, MLD and DHCPv6 have passed: the counterparts of the
 * IPv4 private, link-local and multicast ranges.
 */
export const blockedIPv6: [string, number][] = [
  ['fc00::', 7],
  ['fe80::', 10],
  ['ff00::', 8],
];

/** ICMPv6 types conntrack does not track: MLD query/report/done, RS, RA, NS, NA, redirect, MLDv2 report. */
const icmpv6Untracked = ['130', '131', '132', '133', '134', '135', '136', '137', '143'];

/**
 * The isolation filter. The VM may not open connections to non-public address space (the host,
 * its LAN, other VMs), but it answers connections made to it (SSH, metrics from the LAN): every
 * rule is in libvirt's iptables/ip6tables layer (protocols `udp`, `tcp`, `all`, `icmpv6`, …),
 * which tracks connections: an inbound accept rule lets the VM's replies out before the drops.
 * (`<ip>`/`<ipv6>` rules would go to ebtables, which is stateless and drops the replies too.)
 * DHCP and DNS to the gateway, IPv6 neighbour discovery, DHCPv6 and DNS to the IPv6 gateway
 * pass before the drops; `network.blockPrefixes` are dropped after the built-in ranges.
 * The DNS rules are there for the gateways given (parameters GATEWAY and GATEWAY6 of the
 * domain's `<filterref>`: libvirt refuses to start a domain whose filter names a parameter it
 * does not pass); with the IPv4 gateway only, the rules are those of the IPv4-only filter.
 * Needs iptables/ip6tables on the host and bridge netfilter (`br_netfilter`,
 * `net.bridge.bridge-nf-call-iptables=1`, `…-ip6tables=1`). Only attributes libvirt knows,
 * so `nwfilter-define --validate` accepts it.
 */
export function nwfilterXml(
  config: Pick<ApplianceConfig, 'name' | 'network'>,
  gateways: FilterGateways = { gateway: defaultNetworkGateway },
): string {
  const doc = create({ version: '1.0' });
  const f = doc.ele('filter', { name: filterName(config), chain: 'root' });
  // A fixed UUID lets the filter be redefined (libvirt refuses a same-named filter with a new UUID).
  f.ele('uuid').txt(domainUuid(filterName(config)));
  let priority = 100;
  const rule = (
    action: 'accept' | 'drop',
    direction: 'in' | 'out',
    proto: 'udp' | 'tcp' | 'all' | 'udp-ipv6' | 'tcp-ipv6' | 'icmpv6' | 'all-ipv6',
    attrs: Record<string, string> = {},
    ruleAttrs: Record<string, string> = {},
  ) => f.ele('rule', { action, direction, priority: String(priority++), ...ruleAttrs }).ele(proto, attrs);
  // DHCP (client 68 → server 67, often broadcast); the server's answers are new inbound flows.
  rule('accept', 'out', 'udp', { srcportstart: '68', dstportstart: '67' });
  // DNS to the gateway only.
  if (gateways.gateway !== undefined) {
    rule('accept', 'out', 'udp', { dstipaddr: '$GATEWAY', dstportstart: '53' });
    rule('accept', 'out', 'tcp', { dstipaddr: '$GATEWAY', dstportstart: '53' });
  }
  // Connections made to the VM (SSH, metrics): libvirt accepts them NEW/ESTABLISHED inbound and
  // lets the VM's ESTABLISHED replies out, ahead of the drops below.
  rule('accept', 'in', 'all');
  rule('accept', 'in', 'all-ipv6');
  // IPv6 neighbour discovery and MLD, both ways: conntrack leaves them untracked, so no state
  // rule covers them, and they use link-local addresses. Then DHCPv6 (546 → 547).
  for (const type of icmpv6Untracked) {
    rule('accept', 'out', 'icmpv6', { type }, { statematch: 'false' });
    rule('accept', 'in', 'icmpv6', { type }, { statematch: 'false' });
  }
  rule('accept', 'out', 'udp-ipv6', { srcportstart: '546', dstportstart: '547' });
  // DNS to the IPv6 gateway (on an IPv6 network, libvirt's dnsmasq on the network's address).
  if (gateways.gateway6 !== undefined) {
    rule('accept', 'out', 'udp-ipv6', { dstipaddr: '$GATEWAY6', dstportstart: '53' });
    rule('accept', 'out', 'tcp-ipv6', { dstipaddr: '$GATEWAY6', dstportstart: '53' });
  }
  // Everything else the VM starts towards non-public space is dropped, then the extra prefixes.
  priority = 500;
  for (const [addr, mask] of blockedIPv4)
    rule('drop', 'out', 'all', { dstipaddr: addr, dstipmask: String(mask) });
  for (const [addr, mask] of blockedIPv6)
    rule('drop', 'out', 'all-ipv6', { dstipaddr: addr, dstipmask: String(mask) });
  for (const text of config.network.blockPrefixes) {
    const { cidr } = parseCidr(text);
    if (!cidr) continue; // the schema refused it already
    rule('drop', 'out', cidr.family === 'ipv4' ? 'all' : 'all-ipv6', {
      dstipaddr: cidr.address,
      dstipmask: String(cidr.prefix),
    });
  }
  return `${doc.end({ prettyPrint: true, headless: true })}\n`;
}
