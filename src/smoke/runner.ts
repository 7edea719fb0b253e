/**
 * The one loop that runs a table of checks: each starts as soon as the checks it depends on (or
 * is ordered after) have finished, independent ones at the same time (at most `parallel` at once:
 * sshd allows 10 sessions on one connection), each under its own timeout.
 */
import type { CheckContext, SmokeCheck } from './checks.js';
import type { TestCase } from './junit.js';
import type { ExecResult } from './ssh.js';

/** Runs a command in the guest (one SSH channel); never rejects. */
export type Exec = (command: string, timeoutMs: number, input?: Buffer) => Promise<ExecResult>;

export interface CheckRun {
  check: SmokeCheck;
  case: TestCase;
  result?: ExecResult;
  /** Milliseconds since the epoch when the command was sent and when its result came back. */
  startedAt?: number;
  endedAt?: number;
}

export interface RunnerOptions {
  /** Milliseconds since the epoch by which everything must be done. */
  deadline: number;
  /** Multiplies numeric timeouts (3 under TCG). */
  timeoutScale: number;
  parallel?: number;
  now?: () => number;
}

export async function runChecks(
  checks: readonly SmokeCheck[],
  exec: Exec,
  ctx: CheckContext,
  o: RunnerOptions,
): Promise<CheckRun[]> {
  const now = o.now ?? Date.now;
  const byName = validTable(checks);
  const runs = new Map<string, Promise<CheckRun>>();
  let slots = o.parallel ?? 8;
  const waiting: (() => void)[] = [];
  const acquire = async () => {
    while (slots === 0) await new Promise<void>((r) => waiting.push(r));
    slots--;
  };
  const release = () => {
    slots++;
    waiting.shift()?.();
  };
  const skipped = (check: SmokeCheck, message: string): CheckRun => ({
    check,
    case: { name: check.name, seconds: 0, status: 'skipped', message },
  });
  const start = (check: SmokeCheck): Promise<CheckRun> => {
    const known = runs.get(check.name);
    if (known) return known;
    const deps = (check.dependsOn ?? []).map((d) => start(byName.get(d) as SmokeCheck));
    const order = (check.after ?? []).map((d) => start(byName.get(d) as SmokeCheck));
    const run = (async (): Promise<CheckRun> => {
      const [needed] = await Promise.all([Promise.all(deps), Promise.all(order)]);
      const broken = needed.find((d) => d.case.status !== 'passed');
      if (broken) return skipped(check, `needs ${broken.check.name}, which ${broken.case.status}`);
      const input = check.stdin?.(ctx);
      if (input && !Buffer.isBuffer(input)) return skipped(check, input.skip);
      await acquire();
      try {
        const timeoutMs =
          check.timeout === 'deadline'
            ? Math.max(5000, o.deadline - now())
            : Math.min((check.timeout ?? 30) * o.timeoutScale * 1000, Math.max(5000, o.deadline - now()));
        const startedAt = now();
        const result = await exec(check.command, timeoutMs, input);
        const endedAt = now();
        const verdict = result.timedOut
          ? `timed out after ${Math.round(timeoutMs / 1000)} s: ${check.command}`
          : check.judge(result, ctx);
        const skip = typeof verdict === 'object' ? verdict.skip : undefined;
        const problem = typeof verdict === 'string' ? verdict : undefined;
        return {
          check,
          result,
          startedAt,
          endedAt,
          case: {
            name: check.name,
            seconds: (endedAt - startedAt) / 1000,
            status: skip ? 'skipped' : problem ? 'failed' : 'passed',
            message: skip ?? problem,
            output: `$ ${check.command}\n${result.stdout}${result.stderr ? `\n${result.stderr}` : ''}`.trim(),
          },
        };
      } finally {
        release();
      }
    })();
    runs.set(check.name, run);
    return run;
  };
  for (const check of checks) start(check);
  // In table order, whatever order they finished in.
  return Promise.all(checks.map((c) => runs.get(c.name) as Promise<CheckRun>));
}

/** The checks by name; refuses duplicate names, unknown dependencies and circles. */
function validTable(checks: readonly SmokeCheck[]): Map<string, SmokeCheck> {
  const byName = new Map<string, SmokeCheck>();
  for (const c of checks) {
    if (byName.has(c.name)) throw new Error(`two smoke checks are called ${c.name}`);
    byName.set(c.name, c);
  }
  const needs = (c: SmokeCheck) => [...(c.dependsOn ?? []), ...(c.after ?? [])];
  const done = new Set<string>();
  const visit = (c: SmokeCheck, path: string[]) => {
    if (done.has(c.name)) return;
    if (path.includes(c.name))
      throw new Error(`smoke checks depend on each other in a circle: ${[...path, c.name].join(' -> ')}`);
    for (const dep of needs(c)) {
      const d = byName.get(dep);
      if (!d) throw new Error(`smoke check ${c.name} depends on unknown check ${dep}`);
      visit(d, [...path, c.name]);
    }
    done.add(c.name);
  };
  for (const c of checks) visit(c, []);
  return byName;
}
