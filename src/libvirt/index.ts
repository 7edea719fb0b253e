export { libvirtTree } from './tree.js';
export {
  type Connection,
  connection,
  consoleVm,
  type DefineOptions,
  defineVm,
  destroyVm,
  startVm,
  stopVm,
  undefineVm,
  updateVm,
  type VmStatus,
  vmStatus,
} from './vm.js';
export {
  blockedIPv4,
  blockedIPv6,
  type DomainOptions,
  defaultNetworkGateway,
  domainUuid,
  domainXml,
  filterGateway,
  filterName,
  type ImageDigests,
  metadataNamespace,
  nwfilterXml,
  recordedDigests,
} from './xml.js';
