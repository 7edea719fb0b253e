/**
 * The data disk stage (`appliance disk …`). Making and reading the labelled ext4 image is part
 * of the guest model, because `smoke` and `vm define` make data disks too; growing one is here.
 */
export { createDataDisk, type DiskInfo, formatDiskInfo, inspectDataDisk } from '../guest/index.js';
export { type GrowResult, growDataDisk } from './grow.js';
