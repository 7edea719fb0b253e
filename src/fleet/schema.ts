/**
 * The one definition of fleet.yaml: the libvirt hosts one image is rolled out to. Types,
 * validation and fleet.schema.json come from this schema. The per-host settings reuse the
 * rules of the appliance.yaml settings they override (vm.vcpus, vm.memory, vm.gateway, vm.gateway6, name),
 * taken from that schema, so both files accept exactly the same values.
 */
import { z } from 'zod';
import { isLibvirtUri } from '../cli-input.js';
import { applianceSchema } from '../config/index.js';
import { shownValue } from '../fsguard.js';

/** The vm.* settings of appliance.yaml, without their defaults: a fleet entry overrides them. */
const vmShape = applianceSchema.shape.vm.unwrap().shape;

/** A libvirt object name (network, bridge, pool): no spaces, slashes or quotes. */
const objectName = (what: string) =>
  z.string().superRefine((text, ctx) => {
    if (!/^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$/.test(text))
      ctx.addIssue({
        code: 'custom',
        message: `expected a ${what} name of letters, digits, ".", "_", ":" or "-", got ${shownValue(text)}`,
      });
  });

export const fleetHostSchema = z
  .strictObject({
    uri: z
      .string()
      .superRefine((text, ctx) => {
        if (!isLibvirtUri(text))
          ctx.addIssue({
            code: 'custom',
            message: `expected a libvirt URI such as "qemu:///system" or "qemu+ssh://root@host/system", got ${shownValue(text)}`,
          });
      })
      .meta({ description: 'libvirt URI of the host: qemu:///system, qemu+ssh://user@host/system, …' }),
    name: applianceSchema.shape.name.unwrap().optional().meta({
      description:
        "The VM's name on this host (default: name in appliance.yaml). Two entries may share a URI only with different names.",
    }),
    network: objectName('libvirt network')
      .optional()
      .meta({ description: 'libvirt network of the VM (default: "default"); not with bridge.' }),
    bridge: objectName('host bridge')
      .optional()
      .meta({ description: 'host bridge instead of a libvirt network; not with network.' }),
    pool: objectName('storage pool')
      .optional()
      .meta({ description: 'storage pool for the images on this host (default: the one vm define uses).' }),
    vcpus: vmShape.vcpus.unwrap().optional().meta({ description: 'Virtual CPUs (default: vm.vcpus).' }),
    memory: vmShape.memory.unwrap().optional().meta({ description: 'Memory (default: vm.memory).' }),
    gateway: vmShape.gateway
      .unwrap()
      .optional()
      .meta({ description: 'DHCP/DNS address the isolation filter lets through (default: vm.gateway).' }),
    gateway6: vmShape.gateway6
      .unwrap()
      .optional()
      .meta({ description: 'IPv6 DNS server the isolation filter lets through (default: vm.gateway6).' }),
    credential: z.string().min(1).optional().meta({
      description:
        "File with this host's runner token, uploaded as the runner.tokenCredential systemd credential (read where appliance runs, like --credential).",
    }),
  })
  .superRefine((h, ctx) => {
    if (h.network !== undefined && h.bridge !== undefined)
      ctx.addIssue({ code: 'custom', path: ['bridge'], message: 'give network or bridge, not both' });
  });

export const fleetSchema = z
  .strictObject({
    hosts: z.array(fleetHostSchema).min(1).meta({ description: 'The libvirt hosts, in rollout order.' }),
  })
  .superRefine((f, ctx) => {
    const seen = new Map<string, number>();
    f.hosts.forEach((h, i) => {
      const key = `${h.uri} ${h.name ?? ''}`;
      const first = seen.get(key);
      if (first !== undefined)
        ctx.addIssue({
          code: 'custom',
          path: ['hosts', i, h.name === undefined ? 'uri' : 'name'],
          message: `the same VM as hosts[${first}] (${h.uri}${h.name ? `, name ${h.name}` : ', no name'}): entries sharing a URI need different names`,
        });
      else seen.set(key, i);
    });
  })
  .meta({
    title: 'runner-appliance fleet',
    description: 'The libvirt hosts `appliance fleet` brings to one image, one at a time.',
  });

export type FleetHostInput = z.input<typeof fleetHostSchema>;
export type FleetHost = z.output<typeof fleetHostSchema>;
export type FleetSettings = z.output<typeof fleetSchema>;

/** fleet.schema.json: the schema of what users write, for editor completion. */
export function fleetJsonSchema(): Record<string, unknown> {
  return z.toJSONSchema(fleetSchema, { io: 'input', unrepresentable: 'any' }) as Record<string, unknown>;
}
