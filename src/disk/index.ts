/**
 * The data disk stage (`appliance disk …`). Making and reading the labelled ext4 image is part
 * of the guest model, because `smoke` and `vm define` make data disks too; this is its command
 * surface.
 */
export { createDataDisk, type DiskInfo, formatDiskInfo, inspectDataDisk } from '../guest/index.js';
