/**
 * The VM's lifecycle through virsh, locally or on a remote host (qemu+ssh://…). Images travel
 * as volumes of a storage pool over the libvirt connection itself, so the same code serves both.
 * Volumes are named by one rule (tree.ts: `<name>-kernel`, `<name>-rootfs`, `<name>-data`, …), the
 * same the committed libvirt/ XML shows; the domain's metadata records the sha256 of what was
 * uploaded, so an unchanged image is not uploaded again. The data disk volume is created once and
 * never replaced.
 */
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ApplianceConfig } from '../config/index.js';
import { sha256File } from '../digest.js';
import { ApplianceError, ExitCode } from '../errors.js';
import { inputFile } from '../fsguard.js';
import {
  type Accel,
  type AccelChoice,
  chooseAccelerator,
  createDataDisk,
  defaultPool,
  growthNeeded,
  imageVolumes,
  inspectDataDisk,
  libvirtSerialLog,
  poolPath,
  requireKernelArch,
} from '../guest/index.js';
import { info } from '../log.js';
import { type RunResult, runCommand, runInteractive } from '../run/index.js';
import { type Health, readHealth } from './health.js';
import { type ImagePair, unusedImageVolumes } from './pairs.js';
import {
  domainXml,
  type FilterGateways,
  filterGateway,
  filterName,
  hasGateway,
  type ImageDigests,
  networkGateways,
  nwfilterXml,
  recordedDigests,
} from './xml.js';

export interface Connection {
  uri: string;
  pool: string;
  poolPath: string;
}

/** The libvirt connection used unless told otherwise: the local system daemon. */
export const defaultConnectUri = 'qemu:///system';

export function connection(uri = defaultConnectUri, pool = defaultPool): Connection {
  return { uri, pool, poolPath: poolPath(pool) };
}

export async function virsh(
  conn: Connection,
  args: string[],
  options: { allowFailure?: boolean; purpose?: string; timeoutMs?: number } = {},
): Promise<RunResult> {
  return runCommand('virsh', ['-q', '-c', conn.uri, ...args], {
    allowFailure: options.allowFailure,
    purpose: options.purpose ?? `virsh ${args[0]}`,
    timeoutMs: options.timeoutMs ?? 120_000,
    hint: `check that libvirtd answers on ${conn.uri} ('appliance doctor')`,
  });
}

/** An image file named by `flag` (the shared path checker: a regular, readable, real file). */
function requireFile(flag: string, path: string | undefined): string {
  if (!path) throw new ApplianceError(`no ${flag} given`, { hint: `pass ${flag} FILE` });
  return inputFile(flag, path);
}

export async function ensurePool(conn: Connection): Promise<void> {
  const infoResult = await virsh(conn, ['pool-info', conn.pool], { allowFailure: true });
  if (infoResult.exitCode !== 0) {
    await virsh(conn, ['pool-define-as', conn.pool, 'dir', '--target', conn.poolPath]);
    await virsh(conn, ['pool-build', conn.pool]);
    await virsh(conn, ['pool-autostart', conn.pool]);
  }
  if (!/State:\s+running/.test(infoResult.stdout))
    await virsh(conn, ['pool-start', conn.pool], { allowFailure: true });
}

export async function volumeExists(conn: Connection, name: string): Promise<boolean> {
  return (await virsh(conn, ['vol-info', '--pool', conn.pool, name], { allowFailure: true })).exitCode === 0;
}

export async function volumePath(conn: Connection, name: string): Promise<string> {
  return (await virsh(conn, ['vol-path', '--pool', conn.pool, name])).stdout.trim();
}

export async function uploadVolume(
  conn: Connection,
  name: string,
  file: string,
  options: { sparse?: boolean } = {},
): Promise<string> {
  await virsh(conn, ['vol-create-as', conn.pool, name, String(statSync(file).size), '--format', 'raw']);
  await virsh(
    conn,
    ['vol-upload', ...(options.sparse ? ['--sparse'] : []), '--pool', conn.pool, name, file],
    {
      timeoutMs: 60 * 60_000,
      purpose: `uploading ${file}`,
    },
  );
  return volumePath(conn, name);
}

/**
 * Upload an image as the volume `name` (the one naming rule of tree.ts), unless the domain's
 * metadata says that volume already holds this content. Returns its path and the file's sha256.
 */
async function imageVolume(
  conn: Connection,
  name: string,
  file: string,
  recorded: string | undefined,
  running: boolean,
): Promise<{ path: string; sha256: string }> {
  const sha256 = await sha256File(file);
  const exists = await volumeExists(conn, name);
  if (exists && recorded === sha256) return { path: await volumePath(conn, name), sha256 };
  if (exists && running)
    throw new ApplianceError(`${file} differs from ${conn.pool}/${name}, which the running VM uses`, {
      hint: "use 'appliance vm update', which stops the VM first",
    });
  if (exists) await virsh(conn, ['vol-delete', '--pool', conn.pool, name]);
  info(`uploading ${file} as ${conn.pool}/${name}`);
  return { path: await uploadVolume(conn, name, file), sha256 };
}

export interface DefineOptions {
  kernel?: string;
  initrd?: string;
  rootfs?: string;
  /** An existing data disk image to upload when the VM has none yet. */
  dataDisk?: string;
  credentials: { name: string; file: string }[];
  network: string;
  bridge?: string;
  /** The DHCP/DNS address the filter lets through (default: vm.gateway, then the network's address). */
  gateway?: string;
  /** The IPv6 DNS server the filter lets through (default: vm.gateway6, then the network's IPv6 address). */
  gateway6?: string;
  /** Attach the isolation filter (default true; a bridge needs a gateway from the flag or config). */
  filter?: boolean;
  accel: AccelChoice;
  cmdline?: string[];
}

export function isLocal(conn: Connection): boolean {
  return /^qemu:\/\/\/(system|session)$/.test(conn.uri);
}

async function chooseAccel(
  config: ApplianceConfig,
  conn: Connection,
  wanted: DefineOptions['accel'],
  kernel: string,
): Promise<Accel> {
  if (wanted !== 'auto') return wanted;
  const caps = await virsh(conn, ['domcapabilities', '--virttype', 'kvm', '--arch', config.arch], {
    allowFailure: true,
  });
  if (caps.exitCode !== 0) return 'tcg';
  if (!isLocal(conn)) return 'kvm';
  return chooseAccelerator(config.arch, kernel, 'auto');
}

/** The network's IPv4 and IPv6 addresses (an IPv6-only network has only the second). */
async function networkGateway(conn: Connection, network: string): Promise<FilterGateways> {
  const r = await virsh(conn, ['net-dumpxml', network], { allowFailure: true });
  if (r.exitCode !== 0)
    throw new ApplianceError(`libvirt network ${network} does not exist on ${conn.uri}`, {
      hint: 'pass --network NAME (virsh net-list --all)',
    });
  const gateways = networkGateways(r.stdout, `virsh net-dumpxml ${network} on ${conn.uri}`);
  if (!hasGateway(gateways))
    throw new ApplianceError(`libvirt network ${network} has no IPv4 or IPv6 address`, {
      hint: 'pass --gateway IP or --gateway6 IP',
    });
  return gateways;
}

export async function defineXml(conn: Connection, kind: 'domain' | 'nwfilter', xml: string): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'appliance-xml-'));
  try {
    const file = join(dir, `${kind}.xml`);
    writeFileSync(file, xml);
    await virsh(conn, [kind === 'domain' ? 'define' : 'nwfilter-define', '--validate', file], {
      purpose: `defining the ${kind}`,
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Install the filter, the images and the domain. Returns the domain XML that was defined. With
 * `boot` (vm update), the images are volumes already in the pool: the domain boots `boot.pair`
 * and its metadata records `boot.pairs`, the pairs kept.
 */
export async function defineVm(
  config: ApplianceConfig,
  conn: Connection,
  o: DefineOptions,
  boot?: { pair: ImagePair; pairs: ImagePair[] },
): Promise<string> {
  const kernel = requireFile('--kernel', o.kernel);
  const rootfs = requireFile('--rootfs', o.rootfs);
  requireKernelArch(kernel, config.arch, 'arch in appliance.yaml');
  const accel = await chooseAccel(config, conn, o.accel, kernel);
  const gateways = filterGateway(config, {
    filter: o.filter,
    gateway: o.gateway,
    gateway6: o.gateway6,
    fallback:
      o.filter === false || o.gateway || config.vm.gateway || o.gateway6 || config.vm.gateway6 || o.bridge
        ? undefined
        : await networkGateway(conn, o.network),
    where: o.bridge ? `the LAN behind bridge ${o.bridge}` : `network ${o.network}`,
  });
  await ensurePool(conn);
  const volumes = imageVolumes(config.name);
  const existing = await virsh(conn, ['dumpxml', config.name], { allowFailure: true });
  const recorded =
    existing.exitCode === 0
      ? recordedDigests(existing.stdout, `virsh dumpxml ${config.name} on ${conn.uri}`)
      : {};
  const running = existing.exitCode === 0 && (await vmStatus(config, conn)).state === 'running';
  const digests: ImageDigests = {};
  let kernelPath: string;
  let initrdPath: string | undefined;
  let rootfsPath: string;
  if (boot) {
    kernelPath = await volumePath(conn, boot.pair.kernel.volume);
    rootfsPath = await volumePath(conn, boot.pair.rootfs.volume);
    if (boot.pair.initrd) initrdPath = await volumePath(conn, boot.pair.initrd.volume);
    digests.kernel = boot.pair.kernel.sha256;
    digests.initrd = boot.pair.initrd?.sha256;
    digests.rootfs = boot.pair.rootfs.sha256;
  } else {
    const kernelVolume = await imageVolume(conn, volumes.kernel, kernel, recorded.kernel, running);
    digests.kernel = kernelVolume.sha256;
    kernelPath = kernelVolume.path;
    if (o.initrd) {
      const v = await imageVolume(
        conn,
        volumes.initrd,
        requireFile('--initrd', o.initrd),
        recorded.initrd,
        running,
      );
      digests.initrd = v.sha256;
      initrdPath = v.path;
    }
    const rootfsVolume = await imageVolume(conn, volumes.rootfs, rootfs, recorded.rootfs, running);
    digests.rootfs = rootfsVolume.sha256;
    rootfsPath = rootfsVolume.path;
  }
  const dataName = volumes.data;
  let dataPath: string;
  if (await volumeExists(conn, dataName)) {
    dataPath = await volumePath(conn, dataName);
    if (o.dataDisk)
      info(`${conn.pool}/${dataName} exists and is kept; --data-disk ${o.dataDisk} was not uploaded`);
  } else if (o.dataDisk) {
    const disk = await inspectDataDisk(o.dataDisk);
    if (disk.label !== config.dataDisk.label) {
      throw new ApplianceError(
        `data disk ${o.dataDisk} is labelled ${JSON.stringify(disk.label)}, not ${JSON.stringify(config.dataDisk.label)}`,
        {
          hint: "the appliance mounts its data disk by label; make one with 'appliance disk create'",
        },
      );
    }
    dataPath = await uploadVolume(conn, dataName, o.dataDisk, { sparse: true });
  } else {
    const dir = mkdtempSync(join(tmpdir(), 'appliance-disk-'));
    try {
      const made = await createDataDisk(join(dir, 'data.img'), {
        sizeBytes: config.dataDiskBytes,
        label: config.dataDisk.label,
      });
      dataPath = await uploadVolume(conn, dataName, made.path, { sparse: true });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
  const credentials: { name: string; file: string }[] = [];
  for (const c of o.credentials) {
    const file = requireFile(`--credential ${c.name}`, c.file);
    const name = volumes.credential(c.name);
    if (await volumeExists(conn, name)) await virsh(conn, ['vol-delete', '--pool', conn.pool, name]);
    credentials.push({ name: c.name, file: await uploadVolume(conn, name, file) });
  }
  if (gateways) await defineXml(conn, 'nwfilter', nwfilterXml(config, gateways));
  const xml = domainXml(config, {
    arch: config.arch,
    accel,
    kernel: kernelPath,
    initrd: initrdPath,
    rootfs: rootfsPath,
    dataDisk: dataPath,
    credentials,
    network: o.bridge ? { type: 'bridge', name: o.bridge } : { type: 'network', name: o.network },
    ...gateways,
    digests,
    pairs: boot?.pairs,
    serialLog: libvirtSerialLog(config.name),
    cmdline: o.cmdline,
  });
  await defineXml(conn, 'domain', xml);
  return xml;
}

export type VmState =
  | 'running'
  | 'shut off'
  | 'paused'
  | 'crashed'
  | 'in shutdown'
  | 'pmsuspended'
  | 'undefined'
  | string;

export interface VmStatus {
  name: string;
  uri: string;
  state: VmState;
  defined: boolean;
  vcpus?: number;
  memoryKiB?: number;
  autostart?: boolean;
  /** With `{ health: true }`: the guest's own verdict (health.ts); false whenever it is not running. */
  healthy?: boolean;
  reasons?: string[];
  /** When the verdict last changed (guest clock), null when unknown. */
  since?: string | null;
  checked?: string;
  reachable?: boolean;
  detail?: string;
  /** With `{ health: true }`: sha256 of the root filesystem the domain boots (its metadata), null when unknown. */
  image?: string | null;
}

/** The VM's state; with `health`, also its health (read through the guest agent) and image. */
export async function vmStatus(
  config: ApplianceConfig,
  conn: Connection,
  o: { health?: boolean } = {},
): Promise<VmStatus> {
  const r = await virsh(conn, ['dominfo', config.name], { allowFailure: true });
  if (r.exitCode !== 0) {
    const none = { name: config.name, uri: conn.uri, state: 'undefined', defined: false };
    return o.health ? { ...none, ...healthFields(notRunning('the VM is not defined')), image: null } : none;
  }
  const field = (n: string) => new RegExp(`^${n}:\\s*(.*)$`, 'm').exec(r.stdout)?.[1]?.trim();
  const s: VmStatus = {
    name: config.name,
    uri: conn.uri,
    state: field('State') ?? 'unknown',
    defined: true,
    vcpus: Number(field('CPU\\(s\\)')),
    memoryKiB: Number((field('Max memory') ?? '').split(' ')[0]),
    autostart: field('Autostart') === 'enable',
  };
  if (!o.health) return s;
  const xml = await virsh(conn, ['dumpxml', config.name], { allowFailure: true });
  const image =
    xml.exitCode === 0
      ? (recordedDigests(xml.stdout, `virsh dumpxml ${config.name} on ${conn.uri}`).rootfs ?? null)
      : null;
  const health =
    s.state === 'running' ? await readHealth(conn, config.name) : notRunning(`the VM is ${s.state}`);
  return { ...s, ...healthFields(health), image };
}

function notRunning(why: string): Health {
  return { healthy: false, reasons: [why], reachable: false, detail: why };
}

function healthFields(h: Health): Partial<VmStatus> {
  return {
    healthy: h.healthy,
    reasons: h.reasons,
    since: h.since ?? null,
    checked: h.checked,
    reachable: h.reachable,
    detail: h.detail,
  };
}

export async function requireDefined(config: ApplianceConfig, conn: Connection): Promise<VmStatus> {
  const s = await vmStatus(config, conn);
  if (!s.defined)
    throw new ApplianceError(`no VM named ${config.name} on ${conn.uri}`, {
      hint: "define it with 'appliance vm define'",
    });
  return s;
}

export async function startVm(config: ApplianceConfig, conn: Connection): Promise<void> {
  const s = await requireDefined(config, conn);
  if (s.state === 'running') return info(`${config.name} is already running`);
  await virsh(conn, ['start', config.name], { purpose: `starting ${config.name}` });
}

export async function destroyVm(config: ApplianceConfig, conn: Connection): Promise<void> {
  const s = await requireDefined(config, conn);
  if (s.state === 'shut off') return;
  const r = await virsh(conn, ['destroy', config.name], { allowFailure: true });
  // The guest may have powered off between the two calls.
  if (r.exitCode !== 0 && (await vmStatus(config, conn)).state !== 'shut off') {
    throw new ApplianceError(`virsh destroy ${config.name} failed: ${r.stderr.trim().split('\n')[0]}`, {
      exitCode: ExitCode.hostProblem,
    });
  }
}

/** Remove the domain definition. Volumes stay (the data disk always does) unless `deleteImages`. */
export async function undefineVm(
  config: ApplianceConfig,
  conn: Connection,
  deleteImages = false,
): Promise<void> {
  const s = await requireDefined(config, conn);
  if (s.state !== 'shut off')
    throw new ApplianceError(`${config.name} is ${s.state}`, {
      hint: "stop it first ('appliance vm stop' or 'destroy')",
    });
  await virsh(conn, ['undefine', '--nvram', config.name], { allowFailure: true }).then(async (r) => {
    if (r.exitCode !== 0) await virsh(conn, ['undefine', config.name]);
  });
  if (deleteImages) await deleteUnusedImages(config, conn, []);
}

/** Delete the appliance's kernel, initrd and rootfs volumes (any naming) that no pair in `keep` names. */
export async function deleteUnusedImages(
  config: ApplianceConfig,
  conn: Connection,
  keep: ImagePair[],
): Promise<string[]> {
  const list = await virsh(conn, ['vol-list', '--pool', conn.pool], { allowFailure: true });
  const names = list.stdout
    .split('\n')
    .map((line) => line.trim().split(/\s+/)[0] ?? '')
    .filter((name) => name !== '');
  const unused = unusedImageVolumes(config.name, names, keep);
  for (const name of unused)
    await virsh(conn, ['vol-delete', '--pool', conn.pool, name], { allowFailure: true });
  return unused;
}

export async function consoleVm(config: ApplianceConfig, conn: Connection): Promise<number> {
  await requireDefined(config, conn);
  return runInteractive('virsh', ['-c', conn.uri, 'console', config.name]);
}

export { filterName };

export interface GrowResult {
  volume: string;
  beforeBytes: number;
  afterBytes: number;
  /** The VM was running: its device grew at once and the guest grows /data now, not at its next boot. */
  online: boolean;
  changed: boolean;
}

/** The capacity of a volume in bytes, or undefined when there is none. */
async function volumeCapacity(conn: Connection, name: string): Promise<number | undefined> {
  const r = await virsh(conn, ['vol-info', '--bytes', '--pool', conn.pool, name], { allowFailure: true });
  if (r.exitCode !== 0) return undefined;
  return Number(/^Capacity:\s*(\d+)/m.exec(r.stdout)?.[1]);
}

/**
 * Enlarge the VM's data disk volume to `sizeBytes`: with `virsh blockresize` while the VM runs
 * (QEMU grows the device, the guest's udev rule grows the filesystem online), with `vol-resize`
 * while it is off (the guest grows the filesystem at its next boot). Never shrinks; the volume is
 * never replaced or detached.
 */
export async function growVm(
  config: ApplianceConfig,
  conn: Connection,
  sizeBytes: number,
): Promise<GrowResult> {
  const volume = imageVolumes(config.name).data;
  const beforeBytes = await volumeCapacity(conn, volume);
  if (beforeBytes === undefined)
    throw new ApplianceError(`no data disk volume ${conn.pool}/${volume} on ${conn.uri}`, {
      hint: "define the VM with 'appliance vm define' first (or pass the --pool it was defined in)",
    });
  const needed = growthNeeded(`${conn.pool}/${volume}`, beforeBytes, sizeBytes);
  const state = (await vmStatus(config, conn)).state;
  const online = state === 'running' || state === 'paused';
  if (!needed) return { volume, beforeBytes, afterBytes: beforeBytes, online, changed: false };
  if (online) {
    const path = await volumePath(conn, volume);
    await virsh(conn, ['blockresize', config.name, path, `${sizeBytes}B`], {
      purpose: `growing the data disk of the running ${config.name}`,
    });
  } else {
    await virsh(conn, ['vol-resize', '--pool', conn.pool, volume, `${sizeBytes}B`], {
      purpose: `growing ${conn.pool}/${volume}`,
    });
  }
  const afterBytes = (await volumeCapacity(conn, volume)) ?? Number.NaN;
  if (afterBytes !== sizeBytes)
    throw new ApplianceError(
      `${conn.pool}/${volume} is ${afterBytes} bytes after growing, not the ${sizeBytes} asked for`,
      { exitCode: ExitCode.hostProblem, hint: `see 'virsh vol-info --pool ${conn.pool} ${volume}'` },
    );
  return { volume, beforeBytes, afterBytes, online, changed: true };
}
