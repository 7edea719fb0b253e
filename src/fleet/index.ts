export { type FleetMember, fleetMembers, hostConfig, loadFleet, parseFleet } from './load.js';
export {
  type ApplyResult,
  actionFor,
  applyFleet,
  fleetStatus,
  formatFleetStatus,
  formatPlan,
  formatSummary,
  type HostOps,
  type HostResult,
  hostReport,
  type PlanAction,
  type PlanEntry,
  planFleet,
  type VmReport,
} from './rollout.js';
export { type FleetHost, fleetJsonSchema, fleetSchema } from './schema.js';
