/**
 * The guest's health judge (rootfs-overlay/usr/libexec/appliance/health-judge), run on the host
 * with fake systemctl, docker, mountpoint and stat: each thing "healthy" requires turns the
 * verdict false with a reason when it is missing; `since` only moves when the verdict changes;
 * the file is written where the host reads it (guest model), and the agent unit allows exactly
 * the guest model's commands.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { guestAgentChannel, guestAgentRpcs, healthStateFile } from '../../src/guest/index.js';
import { parseHealthState } from '../../src/libvirt/health.js';
import { repoRoot, tempDir } from '../helpers.js';

const judge = join(repoRoot, 'rootfs-overlay/usr/libexec/appliance/health-judge');
const units = join(repoRoot, 'rootfs-overlay/usr/lib/systemd/system');

interface World {
  system: string;
  jobs: string[];
  multiUser: boolean;
  failed: string[];
  active: Record<string, string>;
  runnerCondition: 'no' | 'yes' | 'unevaluated';
  dockerAnswers: boolean;
  mounts: string[];
  devices: Record<string, number>;
}

function healthyWorld(): World {
  return {
    system: 'running',
    jobs: [],
    multiUser: true,
    failed: [],
    active: { 'docker.service': 'active', 'gitlab-runner.service': 'inactive' },
    runnerCondition: 'no',
    dockerAnswers: true,
    mounts: ['/data', '/var/lib/docker'],
    devices: { '/data': 2049, '/var/lib/docker': 2049 },
  };
}

let dir: string;
const stateFile = () => join(dir, 'run/appliance/health.json');

/** Fake tools reading the world from world.sh (shell variables), then the judge. */
function run(world: World, clock = '2026-12-01T10:00:00Z'): ReturnType<typeof parseHealthState> {
  const q = (s: string) => `'${s.replaceAll("'", "'\\''")}'`;
  const lines = [
    `system=${q(world.system)}`,
    `jobs=${q(world.jobs.map((j, i) => `${i + 1} ${j} start running`).join('\n'))}`,
    `multiuser=${world.multiUser ? 1 : 0}`,
    `failed=${q(world.failed.map((u) => `${u} loaded failed failed ${u}`).join('\n'))}`,
    ...Object.entries(world.active).map(([u, s]) => `active_${u.replace(/\W/g, '_')}=${q(s)}`),
    `cond=${q(world.runnerCondition)}`,
    `docker_ok=${world.dockerAnswers ? 1 : 0}`,
    `mounts=${q(` ${world.mounts.join(' ')} `)}`,
    ...Object.entries(world.devices).map(([p, d]) => `dev_${p.replace(/\W/g, '_')}=${d}`),
    `clock=${q(clock)}`,
  ];
  writeFileSync(join(dir, 'world.sh'), `${lines.join('\n')}\n`);
  const bin = join(dir, 'bin');
  const tool = (name: string, body: string) => {
    writeFileSync(join(bin, name), `#!/bin/sh\n. ${JSON.stringify(join(dir, 'world.sh'))}\n${body}\n`);
    chmodSync(join(bin, name), 0o755);
  };
  tool(
    'systemctl',
    String.raw`quiet=0; [ "$1" = -q ] && { quiet=1; shift; }
case "$1" in
is-system-running) echo "$system"; [ "$system" = running ];;
list-jobs) [ -n "$jobs" ] && printf '%s\n' "$jobs"; exit 0;;
list-units) [ -n "$failed" ] && printf '%s\n' "$failed"; exit 0;;
is-active)
  if [ "$2" = multi-user.target ]; then s=inactive; [ "$multiuser" = 1 ] && s=active
  else v=active_$(printf '%s' "$2" | tr -c 'A-Za-z0-9\n' _); eval "s=\${$v:-inactive}"; fi
  [ "$quiet" = 1 ] || echo "$s"; [ "$s" = active ];;
show)
  case "$cond" in no) printf 'ConditionResult=no\nConditionTimestampMonotonic=123456\n';;
  yes) printf 'ConditionResult=yes\nConditionTimestampMonotonic=123456\n';;
  *) printf 'ConditionResult=no\nConditionTimestampMonotonic=0\n';; esac;;
*) echo "fake systemctl: $*" >&2; exit 2;;
esac`,
  );
  tool('docker', '[ "$docker_ok" = 1 ] && echo 1.47');
  tool('mountpoint', 'case "$mounts" in *" $2 "*) exit 0;; *) exit 1;; esac');
  tool('stat', String.raw`v=dev_$(printf '%s' "$3" | tr -c 'A-Za-z0-9\n' _); eval "echo \${$v:-1}"`);
  tool('date', 'echo "$clock"');
  const r = spawnSync('sh', [judge], {
    encoding: 'utf8',
    env: { PATH: `${bin}:/usr/bin:/bin`, APPLIANCE_HEALTH_STATE: stateFile() },
    timeout: 30_000,
  });
  expect(r.status, r.stderr).toBe(0);
  return parseHealthState(readFileSync(stateFile(), 'utf8'));
}

beforeEach(() => {
  dir = tempDir('appliance-judge-');
  spawnSync('mkdir', ['-p', join(dir, 'bin')]);
});

describe('health judge', () => {
  it('a booted appliance with Docker, the data disk and an unconfigured runner is healthy', () => {
    const v = run(healthyWorld());
    expect(v).toMatchObject({
      healthy: true,
      reasons: [],
      since: '2026-12-01T10:00:00Z',
      checked: '2026-12-01T10:00:00Z',
    });
    expect(v.bootId).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('an active runner is healthy too; one that failed its start, or never started, is not', () => {
    expect(
      run({ ...healthyWorld(), active: { 'docker.service': 'active', 'gitlab-runner.service': 'active' } })
        .healthy,
    ).toBe(true);
    const failed = run({
      ...healthyWorld(),
      runnerCondition: 'yes',
      active: { 'docker.service': 'active', 'gitlab-runner.service': 'activating' },
    });
    expect(failed.healthy).toBe(false);
    expect(failed.reasons).toEqual(['gitlab-runner.service is activating']);
    expect(run({ ...healthyWorld(), runnerCondition: 'unevaluated' }).reasons).toEqual([
      'gitlab-runner.service is inactive',
    ]);
  });

  it('names each missing part as a reason', () => {
    const cases: [Partial<World>, string][] = [
      [{ system: 'starting', multiUser: false, jobs: ['docker.service'] }, 'the boot is not finished'],
      [{ system: 'degraded', failed: ['docuum.service'] }, 'failed units: docuum.service'],
      [{ system: 'stopping' }, 'the system is stopping'],
      [{ dockerAnswers: false }, 'docker does not answer'],
      [
        { active: { 'docker.service': 'inactive', 'gitlab-runner.service': 'inactive' } },
        'docker.service is inactive',
      ],
      [{ mounts: ['/var/lib/docker'] }, 'the data disk is not mounted at /data'],
      [{ mounts: ['/data'] }, '/var/lib/docker is not on the data disk'],
      [{ devices: { '/data': 2049, '/var/lib/docker': 33 } }, '/var/lib/docker is not on the data disk'],
    ];
    for (const [change, reason] of cases) {
      const v = run({ ...healthyWorld(), ...change });
      expect(v.healthy, reason).toBe(false);
      expect(v.reasons.join('; ')).toContain(reason);
    }
  });

  it('right after multi-user.target its own job does not count as an unfinished boot', () => {
    expect(run({ ...healthyWorld(), system: 'starting', jobs: ['appliance-health.service'] }).healthy).toBe(
      true,
    );
    expect(
      run({ ...healthyWorld(), system: 'starting', jobs: ['appliance-health.service', 'x.service'] }).healthy,
    ).toBe(false);
  });

  it('several failed units are listed, quoted safely in JSON', () => {
    const v = run({
      ...healthyWorld(),
      system: 'degraded',
      failed: ['a.service', 'dev-disk-by\\x2dlabel-x.mount'],
    });
    expect(v.reasons).toEqual(['failed units: a.service dev-disk-by\\x2dlabel-x.mount']);
  });

  it('since moves only when the verdict changes', () => {
    run(healthyWorld(), '2026-12-01T10:00:00Z');
    expect(run(healthyWorld(), '2026-12-01T10:00:15Z')).toMatchObject({
      since: '2026-12-01T10:00:00Z',
      checked: '2026-12-01T10:00:15Z',
    });
    expect(run({ ...healthyWorld(), dockerAnswers: false }, '2026-12-01T10:00:30Z')).toMatchObject({
      healthy: false,
      since: '2026-12-01T10:00:30Z',
    });
    expect(run({ ...healthyWorld(), dockerAnswers: false }, '2026-12-01T10:00:45Z').since).toBe(
      '2026-12-01T10:00:30Z',
    );
    expect(run(healthyWorld(), '2026-12-01T10:01:00Z').since).toBe('2026-12-01T10:01:00Z');
    expect(readdirSync(join(dir, 'run/appliance'))).toEqual(['health.json']);
  });
});

describe('the channel, as the units ship it', () => {
  it('the judge writes the file the host reads', () => {
    expect(readFileSync(judge, 'utf8')).toContain(`state=\${APPLIANCE_HEALTH_STATE:-${healthStateFile}}`);
  });
  it('qemu-ga listens on the guest model channel and allows exactly its commands', () => {
    const unit = readFileSync(join(units, 'qemu-guest-agent.service'), 'utf8');
    expect(unit).toContain(`--path=/dev/virtio-ports/${guestAgentChannel}`);
    const allowed = /--allow-rpcs=(\S+)/.exec(unit)?.[1]?.split(',');
    expect(allowed).toEqual([...guestAgentRpcs]);
    expect(unit).toContain(`BindsTo=dev-virtio\\x2dports-${guestAgentChannel}.device`);
    expect(unit).toContain(`WantedBy=dev-virtio\\x2dports-${guestAgentChannel}.device`);
  });
  it('the preset enables the judge, its timer and the agent', () => {
    const preset = readFileSync(
      join(repoRoot, 'rootfs-overlay/usr/lib/systemd/system-preset/50-appliance.preset'),
      'utf8',
    );
    for (const u of ['appliance-health.service', 'appliance-health.timer', 'qemu-guest-agent.service'])
      expect(preset).toContain(`enable ${u}\n`);
  });
});
