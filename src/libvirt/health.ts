/**
 * The VM's health as the guest judges it, read without SSH or network: the guest's health judge
 * keeps a small JSON verdict in a state file (guest model: healthStateFile), and the host reads
 * that file through the QEMU guest agent over libvirt's own connection (`virsh
 * qemu-agent-command`: guest-get-time, guest-file-open/read/close). Works behind the isolation
 * filter, on a guest without network, and for qemu+ssh:// hosts with nothing of ours on them.
 * Every call is bounded; a guest that does not answer is "not healthy, not reachable", never a hang.
 */
import { healthIntervalSeconds, healthStateFile } from '../guest/index.js';
import { runCommand } from '../run/index.js';
import type { Connection, VmStatus } from './vm.js';

export interface Health {
  healthy: boolean;
  reasons: string[];
  /** When the guest's verdict last changed (ISO 8601, the guest's clock). */
  since?: string;
  /** When the guest last judged itself (ISO 8601, the guest's clock). */
  checked?: string;
  /** The guest agent answered and the state file was read. */
  reachable: boolean;
  /** Why the health could not be read (or was not believed), for people. */
  detail?: string;
}

/** How long the agent may take to answer one command, in seconds (virsh's --timeout). */
const agentTimeoutSeconds = 5;

/** A verdict older than this (guest clock) is stale: the judge stopped running. */
const staleSeconds = healthIntervalSeconds * 4;

/** The agent's reply to one command: `return`, or an error text (virsh's or the agent's). */
export type AgentReply = { ok: true; value: unknown } | { ok: false; error: string };

/** Parse what `virsh qemu-agent-command` printed (stdout on success, stderr on failure). */
export function parseAgentReply(exitCode: number, stdout: string, stderr: string): AgentReply {
  if (exitCode !== 0) {
    const line =
      stderr
        .split('\n')
        .map((l) => l.trim())
        .find((l) => l.startsWith('error:') && !/^error: Failed to /.test(l)) ??
      stderr
        .split('\n')
        .map((l) => l.trim())
        .find((l) => l.length > 0) ??
      `virsh exited with status ${exitCode}`;
    return { ok: false, error: line.replace(/^error:\s*/, '') };
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(stdout);
  } catch {
    return { ok: false, error: `the agent's reply is not JSON: ${stdout.trim().slice(0, 120)}` };
  }
  if (parsed && typeof parsed === 'object' && 'return' in parsed)
    return { ok: true, value: (parsed as { return: unknown }).return };
  const err = (parsed as { error?: { desc?: string } } | null)?.error?.desc;
  return { ok: false, error: err ?? `the agent's reply has no "return": ${stdout.trim().slice(0, 120)}` };
}

/** A short reason for people from an agent error (virsh's wording differs between versions). */
export function explainAgentError(error: string): string {
  if (/domain is not running/i.test(error)) return 'the VM is not running';
  if (/failed to get domain|domain not found|no domain with matching name/i.test(error)) return 'no such VM';
  if (
    /agent is not (responding|connected|available)|not connected|agent unavailable|timed out|timeout/i.test(
      error,
    )
  )
    return `the guest agent does not answer (the guest is still booting, or qemu-ga is not running): ${error}`;
  if (/No such file or directory/i.test(error))
    return `the guest has no health verdict yet (${healthStateFile} is missing: the judge has not run)`;
  if (/has been disabled|not allowed|CommandNotFound/i.test(error))
    return `the guest agent refused the command: ${error}`;
  return error;
}

export interface HealthState {
  healthy: boolean;
  reasons: string[];
  since?: string;
  checked?: string;
  bootId?: string;
}

/** Parse the guest's state file (written by the health judge). Throws a readable Error when malformed. */
export function parseHealthState(text: string): HealthState {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw new Error(`${healthStateFile} is not JSON: ${text.trim().slice(0, 120)}`);
  }
  if (!v || typeof v !== 'object') throw new Error(`${healthStateFile} is not a JSON object`);
  const o = v as Record<string, unknown>;
  if (typeof o.healthy !== 'boolean') throw new Error(`${healthStateFile} has no boolean "healthy"`);
  const reasons = Array.isArray(o.reasons) ? o.reasons.filter((r): r is string => typeof r === 'string') : [];
  const str = (k: string) => (typeof o[k] === 'string' && o[k] ? (o[k] as string) : undefined);
  return { healthy: o.healthy, reasons, since: str('since'), checked: str('checked'), bootId: str('bootId') };
}

/**
 * Combine the guest's verdict with the guest's clock: a verdict whose `checked` is older than
 * `staleSeconds` is not believed (the judge or its timer stopped), whatever it says.
 */
export function healthFromState(state: HealthState, guestNowMs?: number): Health {
  const base: Health = {
    healthy: state.healthy,
    reasons: state.reasons,
    since: state.since,
    checked: state.checked,
    reachable: true,
  };
  if (!state.healthy && state.reasons.length === 0) base.reasons = ['the guest says it is not healthy'];
  const checkedMs = state.checked ? Date.parse(state.checked) : Number.NaN;
  if (guestNowMs !== undefined && Number.isFinite(checkedMs)) {
    const age = Math.round((guestNowMs - checkedMs) / 1000);
    if (age > staleSeconds) {
      return {
        ...base,
        healthy: false,
        reasons: [
          `the health verdict is ${age} s old (the judge runs every ${healthIntervalSeconds} s)`,
          ...base.reasons,
        ],
        detail: `stale verdict from ${state.checked}`,
      };
    }
  }
  return base;
}

async function agent(conn: Connection, name: string, command: string, args?: object): Promise<AgentReply> {
  const json = JSON.stringify(args ? { execute: command, arguments: args } : { execute: command });
  const r = await runCommand(
    'virsh',
    ['-q', '-c', conn.uri, 'qemu-agent-command', '--timeout', String(agentTimeoutSeconds), name, json],
    {
      allowFailure: true,
      // virsh's own timeout covers the agent; this covers a libvirtd (or ssh) that hangs.
      timeoutMs: (agentTimeoutSeconds + 25) * 1000,
      purpose: `asking the guest agent of ${name} (${command})`,
      hint: `check that libvirtd answers on ${conn.uri} ('appliance doctor')`,
    },
  );
  return parseAgentReply(r.exitCode, r.stdout, r.stderr);
}

function unreachable(detail: string): Health {
  return { healthy: false, reasons: [detail], reachable: false, detail };
}

/** Read the guest's state file through the agent: open, read (one bounded chunk), close. */
async function readStateFile(conn: Connection, name: string): Promise<{ text: string } | { error: string }> {
  const open = await agent(conn, name, 'guest-file-open', { path: healthStateFile, mode: 'r' });
  if (!open.ok) return { error: open.error };
  const handle = open.value;
  if (typeof handle !== 'number') return { error: `guest-file-open returned ${JSON.stringify(handle)}` };
  try {
    const read = await agent(conn, name, 'guest-file-read', { handle, count: 65536 });
    if (!read.ok) return { error: read.error };
    const b64 = (read.value as { 'buf-b64'?: unknown } | null)?.['buf-b64'];
    if (typeof b64 !== 'string') return { error: 'guest-file-read returned no buf-b64' };
    return { text: Buffer.from(b64, 'base64').toString('utf8') };
  } finally {
    await agent(conn, name, 'guest-file-close', { handle });
  }
}

/**
 * The VM's health now. Never throws for a guest that does not answer (stopped, booting, no
 * agent, no verdict yet): that is `healthy: false, reachable: false` with `detail` saying why.
 * Throws only when the host tool itself is missing or libvirtd hangs past the bounds.
 */
export async function readHealth(conn: Connection, name: string): Promise<Health> {
  const time = await agent(conn, name, 'guest-get-time');
  if (!time.ok) return unreachable(explainAgentError(time.error));
  const guestNowMs = typeof time.value === 'number' ? time.value / 1e6 : undefined;
  const file = await readStateFile(conn, name);
  if ('error' in file) return unreachable(explainAgentError(file.error));
  try {
    return healthFromState(parseHealthState(file.text), guestNowMs);
  } catch (e) {
    const detail = (e as Error).message;
    return { healthy: false, reasons: [detail], reachable: true, detail };
  }
}

/** `vm status` for people: state, health and since when, the reasons, the image. */
export function formatVmStatus(s: VmStatus): string {
  if (!s.defined) return `${s.name} on ${s.uri}: not defined\n`;
  const verdict = s.healthy ? 'healthy' : s.reachable === false ? 'health unknown' : 'not healthy';
  const lines = [`${s.name} on ${s.uri}: ${s.state}, ${verdict}${s.since ? ` since ${s.since}` : ''}`];
  if (!s.healthy && s.state === 'running') for (const r of s.reasons ?? []) lines.push(`  - ${r}`);
  if (s.image) lines.push(`  image: rootfs sha256 ${s.image}`);
  return `${lines.join('\n')}\n`;
}
