/**
 * Fleet plan, status and rollout, written against a small interface of per-host operations
 * (`HostOps`: status, update) that the command line implements with the libvirt stage. The loop:
 * hosts in fleet.yaml order, at most `maxParallel` at a time; the first host that fails stops
 * the rollout (hosts already updating finish; no further host is touched), and the summary says
 * which host is on which image. A host already on the image is left alone, so applying the same
 * artifacts again changes nothing.
 */
import { isApplianceError } from '../errors.js';
import type { FleetMember } from './load.js';

/** One VM's state as `vm status --json` and `fleet status --json` print it. */
export interface VmReport {
  uri: string;
  name: string;
  state: string;
  healthy: boolean;
  /** sha256 of the root filesystem the domain boots; null when unknown. */
  image: string | null;
  /** When the health verdict last changed (guest clock); null when unknown. */
  since: string | null;
  reasons?: string[];
  defined?: boolean;
}

export interface HostOps {
  /** The VM's state, health and image; throws when the host cannot be reached. */
  status(m: FleetMember): Promise<VmReport>;
  /**
   * Bring the VM to the image: a health-gated update (rolled back on failure), or for a VM that
   * is not defined yet a define, start and wait for health. Throws when it fails.
   */
  update(m: FleetMember, action: 'update' | 'define'): Promise<void>;
}

export type PlanAction = 'nothing' | 'update' | 'define' | 'unreachable';

export interface PlanEntry {
  member: FleetMember;
  status?: VmReport;
  /** Why the host could not be asked (action 'unreachable'). */
  error?: string;
  action: PlanAction;
}

const message = (e: unknown) => (e instanceof Error ? e.message : String(e));
/** An ApplianceError's multi-line details, when it has them. */
const detailsOf = (e: unknown): { details?: string } =>
  isApplianceError(e) && e.details ? { details: e.details } : {};

/** What apply would do to one host, given its status and the image's sha256. */
export function actionFor(status: VmReport, image: string): Exclude<PlanAction, 'unreachable'> {
  if (status.defined === false || status.state === 'undefined') return 'define';
  return status.image === image ? 'nothing' : 'update';
}

/** The status of one host; an unreachable host is a report saying so, never a throw. */
export async function hostReport(ops: HostOps, m: FleetMember): Promise<VmReport & { error?: string }> {
  try {
    return await ops.status(m);
  } catch (e) {
    return {
      uri: m.uri,
      name: m.name,
      state: 'unreachable',
      healthy: false,
      image: null,
      since: null,
      reasons: [message(e)],
      error: message(e),
    };
  }
}

/** `fleet status`: every VM's report, in fleet.yaml order (unreachable hosts included). */
export async function fleetStatus(members: FleetMember[], ops: HostOps): Promise<VmReport[]> {
  const out: VmReport[] = [];
  for (const m of members) {
    const { error: _error, ...r } = await hostReport(ops, m);
    out.push(r);
  }
  return out;
}

/** `fleet plan`: per host, the image it runs and what apply would do. */
export async function planFleet(members: FleetMember[], ops: HostOps, image: string): Promise<PlanEntry[]> {
  const out: PlanEntry[] = [];
  for (const member of members) {
    const r = await hostReport(ops, member);
    if (r.error !== undefined) out.push({ member, error: r.error, action: 'unreachable' });
    else out.push({ member, status: r, action: actionFor(r, image) });
  }
  return out;
}

export type Outcome = 'updated' | 'defined' | 'unchanged' | 'failed' | 'untouched';

export interface HostResult {
  member: FleetMember;
  outcome: Outcome;
  /** The image the host runs after the rollout (its status then), null when unknown. */
  image: string | null;
  healthy: boolean;
  error?: string;
  /** What the failure carries besides its line (the failed boot's serial log tail). */
  details?: string;
}

export interface ApplyResult {
  ok: boolean;
  /** Nothing was changed on any host (all were on the image already). */
  unchanged: boolean;
  hosts: HostResult[];
}

/**
 * `fleet apply`: bring every host to `image`, in order, at most `maxParallel` at a time. The first
 * failure (an update that was rolled back, a host that cannot be reached) starts no further
 * host; hosts updating at that moment finish. Each host's status is read again at the end.
 */
export async function applyFleet(
  members: FleetMember[],
  ops: HostOps,
  image: string,
  o: { maxParallel?: number; onStart?: (m: FleetMember, action: PlanAction) => void } = {},
): Promise<ApplyResult> {
  const limit = Math.max(1, o.maxParallel ?? 1);
  const outcome = new Map<number, { outcome: Outcome; error?: string; details?: string }>();
  let failed = false;
  let next = 0;
  const one = async (m: FleetMember): Promise<void> => {
    const r = await hostReport(ops, m);
    if (r.error !== undefined) {
      o.onStart?.(m, 'unreachable');
      failed = true;
      outcome.set(m.index, { outcome: 'failed', error: r.error });
      return;
    }
    const action = actionFor(r, image);
    o.onStart?.(m, action);
    if (action === 'nothing') {
      outcome.set(m.index, { outcome: 'unchanged' });
      return;
    }
    try {
      await ops.update(m, action);
      outcome.set(m.index, { outcome: action === 'define' ? 'defined' : 'updated' });
    } catch (e) {
      failed = true;
      outcome.set(m.index, { outcome: 'failed', error: message(e), ...detailsOf(e) });
    }
  };
  const worker = async () => {
    while (!failed && next < members.length) {
      const m = members[next++];
      if (m) await one(m);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, members.length) }, worker));
  const hosts: HostResult[] = [];
  for (const m of members) {
    const done = outcome.get(m.index) ?? { outcome: 'untouched' as const };
    const after = await hostReport(ops, m);
    hosts.push({
      member: m,
      ...done,
      image: after.image,
      healthy: after.healthy,
    });
  }
  return {
    ok: !failed,
    unchanged: !failed && hosts.every((h) => h.outcome === 'unchanged'),
    hosts,
  };
}

const short = (image: string | null | undefined) =>
  image ? `rootfs ${image.slice(0, 12)}` : 'no known image';
const where = (m: FleetMember) => `${m.name} on ${m.uri}`;

export function formatPlan(plan: PlanEntry[], image: string): string {
  const lines = [`target image: ${short(image)}`];
  for (const p of plan) {
    const s = p.status;
    const runs =
      p.action === 'unreachable'
        ? `unreachable (${p.error})`
        : p.action === 'define'
          ? 'not defined'
          : `${s?.state}, ${s?.healthy ? 'healthy' : 'not healthy'}, runs ${short(s?.image)}`;
    const would = {
      nothing: 'nothing to do',
      update: `update to ${short(image)}`,
      define: `define and start on ${short(image)}`,
      unreachable: 'cannot be updated until it answers',
    }[p.action];
    lines.push(`${where(p.member)}: ${runs}; apply would: ${would}`);
  }
  return `${lines.join('\n')}\n`;
}

export function formatSummary(r: ApplyResult): string {
  const lines = r.hosts.map((h) => {
    const state = `now on ${short(h.image)}${h.image ? (h.healthy ? ', healthy' : ', not healthy') : ''}`;
    const what = {
      updated: 'updated',
      defined: 'defined and started',
      unchanged: 'already on the image, not touched',
      failed: `FAILED (${(h.error ?? '').split('\n')[0]})`,
      untouched: 'not touched (the rollout stopped)',
    }[h.outcome];
    return `  ${where(h.member)}: ${what}; ${state}`;
  });
  const head = !r.ok
    ? 'fleet apply stopped at the first failure:'
    : r.unchanged
      ? 'fleet apply: every host is on the image already, nothing changed:'
      : 'fleet apply: every host is on the image:';
  return `${head}\n${lines.join('\n')}\n`;
}

export function formatFleetStatus(reports: VmReport[]): string {
  return `${reports
    .map(
      (r) =>
        `${r.name} on ${r.uri}: ${r.state}, ${r.healthy ? 'healthy' : 'not healthy'}${r.since ? ` since ${r.since}` : ''}, ${short(r.image)}${!r.healthy && r.reasons?.length ? ` (${r.reasons.join('; ')})` : ''}`,
    )
    .join('\n')}\n`;
}
