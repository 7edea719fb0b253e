/**
 * The smoke's check runner with a fake guest (no VM): dependencies, skipping, concurrency,
 * timeouts, stdin and the table's own consistency.
 */
import { describe, expect, it } from 'vitest';
import { loadAppliance } from '../../src/config/index.js';
import {
  builtinChecks,
  type CheckContext,
  configChecks,
  type Exec,
  runChecks,
  type SmokeCheck,
} from '../../src/smoke/index.js';
import { repoRoot } from '../helpers.js';

const config = loadAppliance(`${repoRoot}/appliance.yaml`);
const ctx: CheckContext = { config };
const options = { deadline: Date.now() + 60_000, timeoutScale: 1 };
const check = (name: string, more: Partial<SmokeCheck> = {}): SmokeCheck => ({
  name,
  command: name,
  judge: (r) => (r.code === 0 ? undefined : `exit ${r.code}`),
  ...more,
});

/** A guest whose commands take `ms[command]` milliseconds (default 10) and exit `codes[command]`. */
function fakeGuest(ms: Record<string, number> = {}, codes: Record<string, number> = {}) {
  const log: { command: string; event: 'start' | 'end'; input?: string }[] = [];
  let running = 0;
  let most = 0;
  const exec: Exec = async (command, timeoutMs, input) => {
    log.push({ command, event: 'start', input: input?.toString() });
    running++;
    most = Math.max(most, running);
    const took = ms[command] ?? 10;
    await new Promise((r) => setTimeout(r, Math.min(took, timeoutMs)));
    running--;
    log.push({ command, event: 'end' });
    return { code: codes[command] ?? 0, stdout: `${command} out`, stderr: '', timedOut: took > timeoutMs };
  };
  return { exec, log, most: () => most };
}

describe('the smoke check runner', () => {
  it('runs independent checks at the same time, and a dependent one only after its dependency', async () => {
    const g = fakeGuest({ slow: 200, a: 50, b: 50 });
    const runs = await runChecks(
      [check('slow'), check('a'), check('b'), check('after-a', { dependsOn: ['a'] })],
      g.exec,
      ctx,
      options,
    );
    expect(runs.map((r) => [r.case.name, r.case.status])).toEqual([
      ['slow', 'passed'],
      ['a', 'passed'],
      ['b', 'passed'],
      ['after-a', 'passed'],
    ]);
    expect(g.most()).toBe(3);
    const at = (command: string, event: 'start' | 'end') =>
      g.log.findIndex((l) => l.command === command && l.event === event);
    expect(at('after-a', 'start')).toBeGreaterThan(at('a', 'end'));
    // It did not wait for the slow one it does not depend on.
    expect(at('after-a', 'end')).toBeLessThan(at('slow', 'end'));
  });

  it('skips a check whose dependency failed or was skipped, naming it; `after` only orders', async () => {
    const g = fakeGuest({}, { broken: 1 });
    const runs = await runChecks(
      [
        check('broken'),
        check('needs-broken', { dependsOn: ['broken'] }),
        check('needs-skipped', { dependsOn: ['needs-broken'] }),
        check('after-broken', { after: ['broken'] }),
      ],
      g.exec,
      ctx,
      options,
    );
    expect(runs.map((r) => [r.case.name, r.case.status, r.case.message])).toEqual([
      ['broken', 'failed', 'exit 1'],
      ['needs-broken', 'skipped', 'needs broken, which failed'],
      ['needs-skipped', 'skipped', 'needs needs-broken, which skipped'],
      ['after-broken', 'passed', undefined],
    ]);
    expect(g.log.map((l) => l.command)).not.toContain('needs-broken');
  });

  it('a check that outlives its timeout fails as timed out and its dependents are skipped', async () => {
    const g = fakeGuest({ hangs: 5000 });
    const t0 = Date.now();
    const runs = await runChecks(
      [check('hangs', { timeout: 0.5 }), check('then', { dependsOn: ['hangs'] })],
      g.exec,
      ctx,
      { ...options, timeoutScale: 2 },
    );
    expect(runs[0]?.case.status).toBe('failed');
    expect(runs[0]?.case.message).toBe('timed out after 1 s: hangs');
    expect(runs[1]?.case.status).toBe('skipped');
    expect(Date.now() - t0).toBeLessThan(2000);
  });

  it("'deadline' checks get what is left of the budget; numeric timeouts are capped by it", async () => {
    const seen: Record<string, number> = {};
    const exec: Exec = async (command, timeoutMs) => {
      seen[command] = timeoutMs;
      return { code: 0, stdout: '', stderr: '', timedOut: false };
    };
    const now = () => 1_000_000;
    await runChecks([check('waits', { timeout: 'deadline' }), check('short', { timeout: 30 })], exec, ctx, {
      deadline: 1_000_000 + 20_000,
      timeoutScale: 3,
      now,
    });
    expect(seen).toEqual({ waits: 20_000, short: 20_000 });
    await runChecks([check('short', { timeout: 5 })], exec, ctx, {
      deadline: 1_000_000 + 600_000,
      timeoutScale: 3,
      now,
    });
    expect(seen.short).toBe(15_000);
  });

  it('passes stdin, and skips with the reason when there is none', async () => {
    const g = fakeGuest();
    const runs = await runChecks(
      [
        check('with-input', { stdin: () => Buffer.from('tarball') }),
        check('without', { stdin: () => ({ skip: 'no test image' }) }),
      ],
      g.exec,
      ctx,
      options,
    );
    expect(g.log.find((l) => l.command === 'with-input')?.input).toBe('tarball');
    expect(runs[1]?.case).toEqual({
      name: 'without',
      seconds: 0,
      status: 'skipped',
      message: 'no test image',
    });
  });

  it('a judge may find the check could not run: skipped, and so are its dependents', async () => {
    const g = fakeGuest({}, { gated: 3 });
    const runs = await runChecks(
      [
        check('gated', { judge: (r) => (r.code === 3 ? { skip: 'docker.service is failed' } : undefined) }),
        check('then', { dependsOn: ['gated'] }),
      ],
      g.exec,
      ctx,
      options,
    );
    expect(runs.map((r) => [r.case.status, r.case.message])).toEqual([
      ['skipped', 'docker.service is failed'],
      ['skipped', 'needs gated, which skipped'],
    ]);
    const dockerRun = builtinChecks.find((c) => c.name === 'docker.run-imported-image');
    expect(
      dockerRun?.judge({ code: 3, stdout: '', stderr: 'docker.service is failed\n', timedOut: false }, ctx),
    ).toEqual({ skip: 'needs docker.active, which failed (docker.service is failed)' });
  });

  it('runs at most `parallel` commands at once', async () => {
    const g = fakeGuest();
    const many = Array.from({ length: 12 }, (_, i) => check(`c${i}`));
    await runChecks(many, g.exec, ctx, { ...options, parallel: 4 });
    expect(g.most()).toBe(4);
  });

  it('refuses a table with an unknown dependency, a circle or a repeated name', async () => {
    const g = fakeGuest();
    await expect(runChecks([check('a', { dependsOn: ['nope'] })], g.exec, ctx, options)).rejects.toThrow(
      'smoke check a depends on unknown check nope',
    );
    await expect(
      runChecks([check('a', { dependsOn: ['b'] }), check('b', { after: ['a'] })], g.exec, ctx, options),
    ).rejects.toThrow('smoke checks depend on each other in a circle: a -> b -> a');
    await expect(runChecks([check('a'), check('a')], g.exec, ctx, options)).rejects.toThrow(
      'two smoke checks are called a',
    );
    expect(g.log).toEqual([]);
  });

  it('the built-in table and the config checks form a valid table; judges read real output', async () => {
    const withChecks = {
      ...config,
      smoke: { checks: [{ name: 'hello', run: 'echo hello', expect: '^hel' }] },
    };
    const table = [...builtinChecks, ...configChecks(withChecks)];
    const outputs: Record<string, string> = {
      'boot.multi-user': 'running\n',
      'rootfs.read-only-squashfs': 'squashfs ro,relatime\n',
      'data-disk.var-lib-docker': `/dev/vdb[/docker] ext4\n/dev/vdb ext4 ${config.dataDisk.label}\n`,
      'data-disk.fills-device': `${4 * 1024 ** 3}\n1048576\n4096\n`,
      'data-disk.var-lib-containerd': '/dev/vdb[/containerd] ext4\n/dev/vdb\n',
      'docker.active': 'ActiveState=active\nActiveEnterTimestampMonotonic=30000000\n40.12 70.00\n',
      'docker.info': 'overlayfs 2 [["driver-type","io.containerd.snapshotter.v1"]]\n',
      'docker.run-imported-image': 'smoke-ok\n',
      'docuum.active': 'active\n',
      'gitlab-runner.state': 'ActiveState=inactive\nResult=success\nConditionResult=no\nunconfigured\n',
      'systemd-analyze': 'Startup finished in 1s\n',
      'config.hello': 'hello\n',
    };
    const byCommand = new Map(table.map((c) => [c.command, c.name]));
    const exec: Exec = async (command) => ({
      code: 0,
      stdout: outputs[byCommand.get(command) ?? ''] ?? '',
      stderr: '',
      timedOut: false,
    });
    const runs = await runChecks(table, exec, { config: withChecks, imageTar: Buffer.from('x') }, options);
    expect(runs.filter((r) => r.case.status !== 'passed').map((r) => r.case)).toEqual([]);
    expect(runs.map((r) => r.case.name)).toEqual(Object.keys(outputs));
  });
});
