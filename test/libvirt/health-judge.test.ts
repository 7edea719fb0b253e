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
import { commandExists, repoRoot, tempDir } from '../helpers.js';

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
function run(
  world: World,
  clock = '2026-12-01T10:00:00Z',
  shell: string[] = ['sh'],
): ReturnType<typeof parseHealthState> {
  const q = (s: string) => `'${s.replaceAll("'", "'\\''")}'`;
  const lines = [
    `system=${q(world.system)}`,
    `jobs=${q(world.jobs.map((j, i) => `${i + 1} ${j} start running`).join('\n'))}`,
    `multiuser=${world.multiUser ? 1 : 0}`,
    `failed=${q(world.failed.map((u) => `${u} loaded failed failed ${u}`).join('\n'))}`,
    `nfailed=${world.failed.length}`,
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
    String.raw`case "$1" in
show)
  shift; props=$1; shift
  if [ $# = 0 ]; then echo "SystemState=$system"; echo "NFailedUnits=$nfailed"; exit 0; fi
  first=1
  for u in "$@"; do
    [ $first = 1 ] || echo; first=0
    if [ "$u" = multi-user.target ]; then s=inactive; [ "$multiuser" = 1 ] && s=active
    else v=active_$(printf '%s' "$u" | tr -c 'A-Za-z0-9\n' _); eval "s=\${$v:-inactive}"; fi
    echo "ActiveState=$s"
    if [ "$u" = gitlab-runner.service ]; then
      case "$cond" in no) printf 'ConditionResult=no\nConditionTimestampMonotonic=123456\n';;
      yes) printf 'ConditionResult=yes\nConditionTimestampMonotonic=123456\n';;
      *) printf 'ConditionResult=no\nConditionTimestampMonotonic=0\n';; esac
    else printf 'ConditionResult=yes\nConditionTimestampMonotonic=5\n'; fi
  done;;
list-units) [ -n "$failed" ] && printf '%s\n' "$failed"; exit 0;;
*) echo "fake systemctl: $*" >&2; exit 2;;
esac`,
  );
  tool('docker', 'echo "$*" >> "$(dirname "$0")/../docker.calls"; [ "$docker_ok" = 1 ] && echo 1.47');
  tool('date', '/bin/date -u -d "$clock" +%Y-%m-%dT%H:%M:%S:%s');
  const mountinfo = join(dir, 'mountinfo');
  writeFileSync(
    mountinfo,
    `${[
      '22 1 254:0 / / ro,relatime - squashfs /dev/root ro',
      ...world.mounts.map(
        (m, i) =>
          `${30 + i} 22 ${world.devices[m] ?? 1}:0 ${m === '/data' ? '/' : '/docker'} ${m} rw - ext4 /dev/vdb rw`,
      ),
    ].join('\n')}\n`,
  );
  const [shellFile = 'sh', ...shellArgs] = shell;
  const r = spawnSync(shellFile, [...shellArgs, judge], {
    encoding: 'utf8',
    env: {
      PATH: `${bin}:/usr/bin:/bin`,
      APPLIANCE_HEALTH_STATE: stateFile(),
      APPLIANCE_HEALTH_MOUNTINFO: mountinfo,
    },
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

  it('"starting" with multi-user.target active counts as booted (the judge\'s own job, a timer\'s)', () => {
    expect(run({ ...healthyWorld(), system: 'starting', jobs: ['appliance-health.service'] }).healthy).toBe(
      true,
    );
    const early = run({ ...healthyWorld(), system: 'starting', multiUser: false, jobs: ['docker.service'] });
    expect(early.reasons).toEqual(['the boot is not finished (multi-user.target not reached)']);
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
    const stopped = {
      ...healthyWorld(),
      active: { 'docker.service': 'inactive', 'gitlab-runner.service': 'inactive' },
    };
    run(healthyWorld(), '2026-12-01T10:00:00Z');
    expect(run(healthyWorld(), '2026-12-01T10:00:15Z')).toMatchObject({
      since: '2026-12-01T10:00:00Z',
      checked: '2026-12-01T10:00:15Z',
    });
    expect(run(stopped, '2026-12-01T10:00:30Z')).toMatchObject({
      healthy: false,
      since: '2026-12-01T10:00:30Z',
    });
    expect(run(stopped, '2026-12-01T10:00:45Z').since).toBe('2026-12-01T10:00:30Z');
    expect(run(healthyWorld(), '2026-12-01T10:01:00Z').since).toBe('2026-12-01T10:01:00Z');
    expect(readdirSync(join(dir, 'run/appliance'))).toEqual(['health.json']);
  });
});

describe.skipIf(!commandExists('busybox'))("under BusyBox's ash (the product's /bin/sh)", () => {
  it('gives the same verdicts', () => {
    const ash = ['busybox', 'sh'];
    expect(run(healthyWorld(), '2026-12-01T10:00:00Z', ash)).toMatchObject({ healthy: true, reasons: [] });
    const v = run(
      { ...healthyWorld(), system: 'degraded', failed: ['a.service'], mounts: ['/data'] },
      '2026-12-01T10:00:15Z',
      ash,
    );
    expect(v).toMatchObject({
      healthy: false,
      reasons: ['failed units: a.service', '/var/lib/docker is not on the data disk'],
    });
    // BusyBox runs its own date applet, not the fake one: the real clock.
    expect(v.since).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
  });
});

describe('what a run costs', () => {
  it("asks Docker's API only when the verdict turns healthy and then at most every 5 minutes", () => {
    const calls = () => {
      try {
        return readFileSync(join(dir, 'docker.calls'), 'utf8').trim().split('\n').length;
      } catch {
        return 0;
      }
    };
    run(healthyWorld(), '2026-12-01T10:00:00Z');
    expect(calls()).toBe(1);
    run(healthyWorld(), '2026-12-01T10:00:15Z');
    run(healthyWorld(), '2026-12-01T10:04:45Z');
    expect(calls()).toBe(1);
    expect(run(healthyWorld(), '2026-12-01T10:05:00Z').healthy).toBe(true);
    expect(calls()).toBe(2);
    // A Docker that stopped answering is found at the next API check, and asked again each run until it answers.
    run({ ...healthyWorld(), dockerAnswers: false }, '2026-12-01T10:05:15Z');
    expect(calls()).toBe(2);
    expect(run({ ...healthyWorld(), dockerAnswers: false }, '2026-12-01T10:10:00Z').reasons).toEqual([
      'docker does not answer',
    ]);
    run({ ...healthyWorld(), dockerAnswers: false }, '2026-12-01T10:10:15Z');
    expect(calls()).toBe(4);
    // Unhealthy for another reason: no API call at all.
    run({ ...healthyWorld(), mounts: [] }, '2026-12-01T10:10:30Z');
    expect(calls()).toBe(4);
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
