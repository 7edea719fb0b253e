export { type KvmProbe, kvmDeviceUsable, probeKvm, qemuBinary } from './accel.js';
