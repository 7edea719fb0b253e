/**
 * Where an appliance's images live on the libvirt host: one naming rule, used by `vm define` for
 * the volumes it creates and by `libvirt render`/`libvirt domain` for the paths they show, and the
 * libvirt/ folder of a repository rendered with it.
 */
import type { ApplianceConfig } from '../config/index.js';
import type { Tree } from '../render/index.js';
import { domainXml, filterName, nwfilterXml } from './xml.js';

export const defaultPool = 'runner-appliance';

/** The folder of a storage pool that `vm define` creates (a `dir` pool). */
export function poolPath(pool: string): string {
  return `/var/lib/libvirt/images/${pool}`;
}

/** The volume names of an appliance's images in its pool. */
export function imageVolumes(name: string) {
  return {
    kernel: `${name}-kernel`,
    initrd: `${name}-initrd`,
    rootfs: `${name}-rootfs`,
    data: `${name}-data`,
    credential: (credential: string) => `${name}-credential-${credential}`,
  };
}

/** The paths of those volumes in a pool created by `vm define`; what the committed libvirt/ XML shows. */
export function defaultImagePaths(name: string, pool = defaultPool) {
  const dir = poolPath(pool);
  const v = imageVolumes(name);
  return {
    kernel: `${dir}/${v.kernel}`,
    initrd: `${dir}/${v.initrd}`,
    rootfs: `${dir}/${v.rootfs}`,
    dataDisk: `${dir}/${v.data}`,
    credential: (credential: string) => `${dir}/${v.credential(credential)}`,
    dir,
  };
}

/** The committed libvirt/ folder: the default appliance's XML with the paths `vm define` uses. */
export function libvirtTree(config: ApplianceConfig, gateway: string): Tree {
  const paths = defaultImagePaths(config.name);
  const tree: Tree = new Map();
  for (const accel of ['kvm', 'tcg'] as const) {
    const xml = domainXml(config, {
      arch: config.arch,
      accel,
      kernel: paths.kernel,
      rootfs: paths.rootfs,
      dataDisk: paths.dataDisk,
      credentials: [
        { name: config.runner.tokenCredential, file: paths.credential(config.runner.tokenCredential) },
      ],
      network: { type: 'network', name: 'default' },
      gateway,
      serialLog: `/var/log/libvirt/qemu/${config.name}-serial.log`,
    });
    tree.set(`${config.name}.${accel}.xml`, { content: Buffer.from(xml), mode: 0o644 });
  }
  tree.set(`${filterName(config)}.nwfilter.xml`, { content: Buffer.from(nwfilterXml(config)), mode: 0o644 });
  return tree;
}
