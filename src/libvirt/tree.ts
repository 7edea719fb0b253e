/** The libvirt/ folder of a repository: the default appliance's XML, with the guest model's paths. */
import type { ApplianceConfig } from '../config/index.js';
import { defaultImagePaths, libvirtSerialLog } from '../guest/index.js';
import type { Tree } from '../tree.js';
import { domainXml, type FilterGateways, filterName, nwfilterXml } from './xml.js';

/** The committed libvirt/ folder: the default appliance's XML with the paths `vm define` uses. */
export function libvirtTree(config: ApplianceConfig, gateways: FilterGateways): Tree {
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
      ...gateways,
      serialLog: libvirtSerialLog(config.name),
    });
    tree.set(`${config.name}.${accel}.xml`, { content: Buffer.from(xml), mode: 0o644 });
  }
  tree.set(`${filterName(config)}.nwfilter.xml`, {
    content: Buffer.from(nwfilterXml(config, gateways)),
    mode: 0o644,
  });
  return tree;
}
