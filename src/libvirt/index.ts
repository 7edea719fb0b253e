export {
  formatVmStatus,
  type Health,
  readHealth,
} from './health.js';
export {
  type ImagePair,
  keptPairs,
  pairLabel,
  unusedImageVolumes,
} from './pairs.js';
export { libvirtTree } from './tree.js';
export {
  bootFailure,
  deployVm,
  drainMarginSeconds,
  rollbackVm,
  type StopOptions,
  stopVm,
  type UpdateResult,
  updateVm,
} from './update.js';
export {
  type Connection,
  connection,
  consoleVm,
  type DefineOptions,
  defaultConnectUri,
  defineVm,
  destroyVm,
  type GrowResult,
  growVm,
  startVm,
  undefineVm,
  type VmStatus,
  vmStatus,
} from './vm.js';
export {
  blockedIPv4,
  blockedIPv6,
  type DomainOptions,
  defaultNetworkGateway,
  domainFiles,
  domainUuid,
  domainXml,
  type FilterGateways,
  filterGateway,
  filterName,
  hasGateway,
  type ImageDigests,
  metadataNamespace,
  networkGateways,
  networkIPv4,
  nwfilterXml,
  parseLibvirtXml,
  recordedDigests,
  recordedPairs,
  switchImages,
} from './xml.js';
