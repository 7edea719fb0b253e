/** fleet.yaml: read, validated, and each host's appliance settings (appliance.yaml + its overrides). */
import { type ApplianceConfig, parseSize, parseYamlWith } from '../config/index.js';
import { ApplianceError } from '../errors.js';
import { readInputFile } from '../fsguard.js';
import { type FleetHost, fleetSchema } from './schema.js';

/** One VM of the fleet: where it lives, the settings it is defined with, and the fleet.yaml entry. */
export interface FleetMember {
  /** Position in fleet.yaml (rollout order). */
  index: number;
  uri: string;
  /** The VM's name on that host. */
  name: string;
  entry: FleetHost;
  /** appliance.yaml with this host's overrides (name, vm.vcpus, vm.memory, vm.gateway, vm.gateway6). */
  config: ApplianceConfig;
}

/** Parse and validate fleet.yaml text; `origin` names the file in errors (one line, exit 2). */
export function parseFleet(text: string, origin: string): FleetHost[] {
  return parseYamlWith(fleetSchema, text, origin, 'fleet.yaml').hosts;
}

/** Read fleet.yaml (a regular file) and validate it. */
export function loadFleet(path: string): FleetHost[] {
  const text = readInputFile('--fleet', path, 'pass a fleet.yaml with --fleet').toString('utf8');
  return parseFleet(text, path);
}

/** The appliance settings of one host: `base` with the entry's overrides. */
export function hostConfig(base: ApplianceConfig, h: FleetHost): ApplianceConfig {
  const memory = h.memory ?? base.vm.memory;
  return {
    ...base,
    name: h.name ?? base.name,
    vm: {
      ...base.vm,
      vcpus: h.vcpus ?? base.vm.vcpus,
      memory,
      ...(h.gateway !== undefined ? { gateway: h.gateway } : {}),
      ...(h.gateway6 !== undefined ? { gateway6: h.gateway6 } : {}),
    },
    memoryBytes: parseSize(memory) ?? base.memoryBytes,
  };
}

/**
 * The fleet's VMs with their settings. Two entries that name the same VM (same URI, same
 * effective name: an entry without `name` has appliance.yaml's) are a config error.
 */
export function fleetMembers(base: ApplianceConfig, hosts: FleetHost[], origin: string): FleetMember[] {
  const seen = new Map<string, number>();
  return hosts.map((entry, index) => {
    const config = hostConfig(base, entry);
    const key = `${entry.uri} ${config.name}`;
    const first = seen.get(key);
    if (first !== undefined)
      throw new ApplianceError(
        `${origin}: hosts[${index}]: the same VM as hosts[${first}] (${config.name} on ${entry.uri}): entries sharing a URI need different names`,
        { hint: 'give each entry on that URI its own name' },
      );
    seen.set(key, index);
    return { index, uri: entry.uri, name: config.name, entry, config };
  });
}
