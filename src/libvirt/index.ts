export { defaultImagePaths, libvirtTree } from './tree.js';
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
  type Accel,
  blockedIPv4,
  blockedIPv6,
  type DomainOptions,
  domainUuid,
  domainXml,
  filterName,
  kernelCmdline,
  nwfilterXml,
} from './xml.js';
