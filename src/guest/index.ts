/**
 * The guest model: what several stages need to know about the appliance VM, derived from the
 * config and written once. `smoke`, `libvirt`, `fleet`, `doctor` and the CLI import it; it
 * imports only `config`, the process runner and the shared helpers.
 */
export {
  type Accel,
  type AccelChoice,
  acceleratorChoices,
  accelerators,
  accelTimeoutScale,
  chooseAccelerator,
  type KvmProbe,
  kvmDeviceUsable,
  probeKvm,
} from './accel.js';
export {
  guestAgentChannel,
  guestAgentRpcs,
  healthIntervalSeconds,
  healthStateFile,
} from './agent.js';
export {
  createDataDisk,
  type DiskInfo,
  formatDiskInfo,
  growthNeeded,
  inspectDataDisk,
} from './data-disk.js';
export {
  defaultImagePaths,
  defaultPool,
  imageVolumes,
  libvirtSerialLog,
  poolPath,
  smokeSerialLogName,
} from './images.js';
export { kernelImageArch, requireKernelArch } from './kernel-image.js';
export {
  consoleBaud,
  type GuestMachine,
  guestMachine,
  hostArch,
  kernelCmdline,
  memoryMiB,
} from './machine.js';
