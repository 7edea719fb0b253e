/**
 * Where an appliance's images and logs live on a libvirt host: one naming rule, used by `vm
 * define`/`vm update` for the volumes they create, by `libvirt render` for the paths the
 * committed XML shows, and by `fleet` for what it compares.
 */

/** The storage pool `vm define` creates and uses unless told otherwise. */
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
    /** The volume `vm update` uploads an image to: named by its content, so kept pairs never collide. */
    byDigest: (kind: 'kernel' | 'initrd' | 'rootfs', sha256: string) =>
      `${name}-${kind}-${sha256.slice(0, 16)}`,
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

/** The file libvirt's QEMU writes the guest's serial console to, on the libvirt host. */
export function libvirtSerialLog(name: string): string {
  return `/var/log/libvirt/qemu/${name}-serial.log`;
}

/** The serial console log's name inside a smoke report folder. */
export const smokeSerialLogName = 'serial.log';
