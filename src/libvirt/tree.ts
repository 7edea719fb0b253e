/** The libvirt/ folder of a repository: an appliance's XML with the image paths `vm define` uses. */
import type { ApplianceConfig } from '../config/index.js';
import type { Tree } from '../render/index.js';
import { domainXml, filterName, nwfilterXml } from './xml.js';

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
        {
          name: config.runner.tokenCredential,
          file: `${paths.dir}/${config.name}-credential-${config.runner.tokenCredential}`,
        },
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

/** Where `vm define` puts the images on the libvirt host; also what the committed libvirt/ XML shows. */
export function defaultImagePaths(name: string) {
  const dir = '/var/lib/libvirt/images/runner-appliance';
  return {
    kernel: `${dir}/${name}-kernel`,
    rootfs: `${dir}/${name}-rootfs`,
    dataDisk: `${dir}/${name}-data`,
    dir,
  };
}
