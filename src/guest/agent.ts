/**
 * The guest's health channel, written once: the QEMU guest agent on a virtio-serial port, and
 * the state file the guest's health judge keeps (rootfs-overlay/usr/libexec/appliance/health-judge
 * writes it; test/libvirt/health.test.ts checks the two agree). The host reads the file through
 * libvirt (`virsh qemu-agent-command`), so it needs no network and nothing of ours on the host.
 */

/** The virtio-serial port name qemu-ga opens (its default, and the one libvirt connects to). */
export const guestAgentChannel = 'org.qemu.guest_agent.0';

/** The JSON verdict the guest's health judge writes atomically (tmpfs: one per boot). */
export const healthStateFile = '/run/appliance/health.json';

/** The only agent commands qemu-ga answers in the appliance (its --allow-rpcs list). */
export const guestAgentRpcs = [
  'guest-sync',
  'guest-sync-delimited',
  'guest-ping',
  'guest-info',
  'guest-get-time',
  'guest-file-open',
  'guest-file-read',
  'guest-file-close',
  'guest-shutdown',
] as const;

/** How often the guest judges itself, in seconds (its systemd timer). */
export const healthIntervalSeconds = 15;
