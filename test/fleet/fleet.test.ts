/**
 * The fleet stage without libvirt: fleet.yaml validation (one line naming the field), each host's
 * settings, and the rollout loop against fake per-host operations: in order, stop at the first
 * failure leaving the rest untouched, --max-parallel, the same image again = nothing to do, the
 * summary; an unreachable host is reported, not a crash. Also fleet.schema.json is in sync.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseAppliance } from '../../src/config/index.js';
import { ApplianceError, isApplianceError } from '../../src/errors.js';
import {
  applyFleet,
  type FleetMember,
  fleetJsonSchema,
  fleetMembers,
  fleetStatus,
  formatPlan,
  formatSummary,
  type HostOps,
  parseFleet,
  planFleet,
  type VmReport,
} from '../../src/fleet/index.js';
import { repoRoot, runCliAsync, tempDir } from '../helpers.js';

const base = parseAppliance('name: edge\nvm: {vcpus: 2, memory: 2G}\n', join(repoRoot, 'x.yaml'));
const A = 'a'.repeat(64);
const B = 'b'.repeat(64);

function problem(text: string): string {
  try {
    parseFleet(text, 'fleet.yaml');
  } catch (e) {
    expect(isApplianceError(e)).toBe(true);
    const m = (e as Error).message;
    expect(m.split('\n')).toHaveLength(1);
    return m;
  }
  throw new Error('accepted');
}

const members = (text: string) => fleetMembers(base, parseFleet(text, 'fleet.yaml'), 'fleet.yaml');
const three = () =>
  members(
    'hosts:\n  - uri: qemu:///system\n  - uri: qemu+ssh://root@h2/system\n  - uri: qemu+ssh://root@h3/system\n',
  );

/** Fake hosts: each VM's image in `images`; update sets it (or fails for names in `fail`). */
function fakeOps(images: Record<string, string | null>, o: { fail?: string[]; unreachable?: string[] } = {}) {
  const calls: string[] = [];
  let running = 0;
  let maxRunning = 0;
  const key = (m: FleetMember) => `${m.uri}#${m.name}`;
  const ops: HostOps = {
    async status(m): Promise<VmReport> {
      if (o.unreachable?.includes(key(m))) throw new Error(`cannot connect to libvirt at ${m.uri}`);
      const image = images[key(m)];
      if (image === undefined)
        return {
          uri: m.uri,
          name: m.name,
          state: 'undefined',
          healthy: false,
          image: null,
          since: null,
          defined: false,
        };
      return { uri: m.uri, name: m.name, state: 'running', healthy: true, image, since: 'T', defined: true };
    },
    async update(m, action) {
      calls.push(`${action} ${key(m)}`);
      running++;
      maxRunning = Math.max(maxRunning, running);
      await new Promise((r) => setTimeout(r, 20));
      running--;
      if (o.fail?.includes(key(m)))
        throw new ApplianceError(`update of ${m.name} failed: rolled back`, {
          details: `serial log of ${m.name}, last 40 lines:\nKernel panic`,
        });
      images[key(m)] = target;
    },
  };
  let target = '';
  return {
    ops,
    calls,
    maxRunning: () => maxRunning,
    setTarget: (t: string) => {
      target = t;
    },
  };
}

describe('fleet.yaml', () => {
  it('accepts hosts with overrides and gives each its settings', () => {
    const m = members(
      'hosts:\n  - uri: qemu:///system\n  - uri: qemu+ssh://root@127.0.0.1:2222/system\n    name: edge-b\n    vcpus: 1\n    memory: 1G\n    gateway: 10.0.0.1\n    gateway6: fd00:1::1\n    bridge: br0\n',
    );
    expect(m.map((x) => [x.uri, x.name])).toEqual([
      ['qemu:///system', 'edge'],
      ['qemu+ssh://root@127.0.0.1:2222/system', 'edge-b'],
    ]);
    expect(m[0]?.config.vm).toMatchObject({ vcpus: 2, memory: '2G' });
    expect(m[1]?.config).toMatchObject({ name: 'edge-b', memoryBytes: 1024 ** 3 });
    expect(m[1]?.config.vm).toMatchObject({
      vcpus: 1,
      memory: '1G',
      gateway: '10.0.0.1',
      gateway6: 'fd00:1::1',
    });
    expect(m[0]?.config.vm.gateway6).toBeUndefined();
    expect(m[1]?.entry.bridge).toBe('br0');
  });

  const bad: [string, RegExp][] = [
    ['hosts: []\n', /^fleet\.yaml:1: hosts: expected at least 1 entries/],
    [
      'hosts:\n  - uri: http://host/\n',
      /^fleet\.yaml:2: hosts\[0\]\.uri: expected a libvirt URI .*got "http:\/\/host\/"/,
    ],
    ['hosts:\n  - uri: qemu:///system\n    vcpus: 0\n', /hosts\[0\]\.vcpus: expected at least 1/],
    ['hosts:\n  - uri: qemu:///system\n    memory: 1X\n', /hosts\[0\]\.memory: expected a size/],
    [
      'hosts:\n  - uri: qemu:///system\n    gateway: 10.0.0\n',
      /hosts\[0\]\.gateway: expected an IPv4 address/,
    ],
    [
      'hosts:\n  - uri: qemu:///system\n    gateway6: 10.0.0.1\n',
      /hosts\[0\]\.gateway6: expected an IPv6 address/,
    ],
    ['hosts:\n  - uri: qemu:///system\n    name: Bad_Name\n', /hosts\[0\]\.name: expected a lower-case name/],
    [
      'hosts:\n  - uri: qemu:///system\n    network: n\n    bridge: b\n',
      /^fleet\.yaml:4: hosts\[0\]\.bridge: give network or bridge, not both/,
    ],
    [
      'hosts:\n  - uri: qemu:///system\n    cpus: 2\n',
      /hosts\[0\]\.cpus: unknown key 'cpus' \(allowed: uri, name,/,
    ],
    [
      'hosts:\n  - uri: qemu:///system\n    name: x1\n  - uri: qemu:///system\n    name: x1\n',
      /^fleet\.yaml:5: hosts\[1\]\.name: the same VM as hosts\[0\]/,
    ],
    [
      'hosts:\n  - uri: qemu:///system\n  - uri: qemu:///system\n',
      /hosts\[1\]\.uri: the same VM as hosts\[0\]/,
    ],
    ['hosts: {uri: x}\n', /hosts: expected array/],
    ['hosts:\n  - uri: [\n', /^fleet\.yaml:\d+: invalid YAML/],
  ];
  for (const [text, pattern] of bad)
    it(`refuses ${JSON.stringify(text)}`, () => expect(problem(text)).toMatch(pattern));

  it('an entry without a name and one named as appliance.yaml on the same URI are the same VM', () => {
    expect(() =>
      members('hosts:\n  - uri: qemu:///system\n  - uri: qemu:///system\n    name: edge\n'),
    ).toThrow(/hosts\[1\]: the same VM as hosts\[0\] \(edge on qemu:\/\/\/system\)/);
  });

  it('fleet.schema.json is the generated schema', () => {
    const committed = JSON.parse(readFileSync(join(repoRoot, 'fleet.schema.json'), 'utf8'));
    expect(committed).toEqual(fleetJsonSchema());
  });
});

describe('fleet rollout', () => {
  const keys = ['qemu:///system#edge', 'qemu+ssh://root@h2/system#edge', 'qemu+ssh://root@h3/system#edge'];

  it('brings the hosts to the image one at a time, in order, and again changes nothing', async () => {
    const images: Record<string, string> = Object.fromEntries(keys.map((k) => [k, A]));
    const f = fakeOps(images);
    f.setTarget(B);
    const r = await applyFleet(three(), f.ops, B);
    expect(r.ok).toBe(true);
    expect(r.unchanged).toBe(false);
    expect(f.calls).toEqual(keys.map((k) => `update ${k}`));
    expect(f.maxRunning()).toBe(1);
    expect(r.hosts.map((h) => [h.outcome, h.image])).toEqual(keys.map(() => ['updated', B]));
    expect(formatSummary(r)).toMatch(
      /^fleet apply: every host is on the image:\n {2}edge on qemu:\/\/\/system: updated; now on rootfs bbbbbbbbbbbb, healthy/,
    );
    f.calls.length = 0;
    const again = await applyFleet(three(), f.ops, B);
    expect(again).toMatchObject({ ok: true, unchanged: true });
    expect(f.calls).toEqual([]);
    expect(formatSummary(again)).toMatch(/nothing changed/);
    expect(formatSummary(again)).toMatch(/already on the image, not touched/);
  });

  it('stops at the first failure and leaves the rest untouched', async () => {
    const images: Record<string, string> = Object.fromEntries(keys.map((k) => [k, A]));
    const f = fakeOps(images, { fail: [keys[0] as string] });
    f.setTarget(B);
    const r = await applyFleet(three(), f.ops, B);
    expect(r.ok).toBe(false);
    expect(f.calls).toEqual([`update ${keys[0]}`]);
    expect(r.hosts.map((h) => [h.outcome, h.image])).toEqual([
      ['failed', A],
      ['untouched', A],
      ['untouched', A],
    ]);
    // The failed boot's serial log tail goes with the failure (the CLI prints it after the line).
    expect(r.hosts[0]?.details).toBe('serial log of edge, last 40 lines:\nKernel panic');
    expect(r.hosts[1]?.details).toBeUndefined();
    const text = formatSummary(r);
    expect(text).toMatch(/^fleet apply stopped at the first failure:/);
    expect(text).toMatch(
      /edge on qemu:\/\/\/system: FAILED \(update of edge failed: rolled back\); now on rootfs aaaaaaaaaaaa/,
    );
    expect(text).toMatch(/h3\/system: not touched \(the rollout stopped\); now on rootfs aaaaaaaaaaaa/);
  });

  it('--max-parallel 2 runs two at a time; a failure starts no further host', async () => {
    const images: Record<string, string> = Object.fromEntries(keys.map((k) => [k, A]));
    const ok = fakeOps({ ...images });
    ok.setTarget(B);
    await applyFleet(three(), ok.ops, B, { maxParallel: 2 });
    expect(ok.maxRunning()).toBe(2);
    expect(ok.calls).toHaveLength(3);
    const f = fakeOps({ ...images }, { fail: [keys[0] as string] });
    f.setTarget(B);
    const r = await applyFleet(three(), f.ops, B, { maxParallel: 2 });
    expect(f.calls).toEqual([`update ${keys[0]}`, `update ${keys[1]}`]);
    expect(r.hosts.map((h) => h.outcome)).toEqual(['failed', 'updated', 'untouched']);
  });

  it('defines a VM a host does not have yet; an unreachable host fails the rollout there', async () => {
    const f = fakeOps({ [keys[0] as string]: A }, { unreachable: [keys[1] as string] });
    f.setTarget(A);
    const r = await applyFleet(three(), f.ops, A);
    expect(r.ok).toBe(false);
    expect(r.hosts.map((h) => h.outcome)).toEqual(['unchanged', 'failed', 'untouched']);
    expect(r.hosts[1]?.error).toMatch(/cannot connect/);
    expect(f.calls).toEqual([]);
    const g = fakeOps({});
    g.setTarget(A);
    expect((await applyFleet(three(), g.ops, A)).hosts.map((h) => h.outcome)).toEqual([
      'defined',
      'defined',
      'defined',
    ]);
  });

  it('plan and status report an unreachable host instead of failing', async () => {
    const f = fakeOps(
      { [keys[0] as string]: A, [keys[2] as string]: B },
      { unreachable: [keys[1] as string] },
    );
    const plan = await planFleet(three(), f.ops, B);
    expect(plan.map((p) => p.action)).toEqual(['update', 'unreachable', 'nothing']);
    const text = formatPlan(plan, B);
    expect(text).toMatch(
      /edge on qemu:\/\/\/system: running, healthy, runs rootfs aaaaaaaaaaaa; apply would: update to rootfs bbbbbbbbbbbb/,
    );
    expect(text).toMatch(
      /h2\/system: unreachable \(cannot connect to libvirt at .*\); apply would: cannot be updated/,
    );
    expect(text).toMatch(/h3\/system: .*apply would: nothing to do/);
    const s = await fleetStatus(three(), f.ops);
    expect(s.map((x) => [x.state, x.healthy, x.image])).toEqual([
      ['running', true, A],
      ['unreachable', false, null],
      ['running', true, B],
    ]);
    expect(Object.keys(s[0] ?? {})).toEqual(
      expect.arrayContaining(['uri', 'name', 'state', 'healthy', 'image', 'since']),
    );
  });
});

describe('fleet commands refuse bad input with one line, exit 2', () => {
  const dir = tempDir('appliance-fleet-cli-');
  const file = (name: string, text: string) => {
    const f = join(dir, name);
    writeFileSync(f, text);
    return f;
  };
  const cases: [string[], RegExp][] = [
    [
      ['fleet', 'status', '--fleet', file('a.yaml', 'hosts:\n  - uri: qemu:///system\n    memory: lots\n')],
      /^error: .*a\.yaml:3: hosts\[0\]\.memory: expected a size/,
    ],
    [
      [
        'fleet',
        'plan',
        '--fleet',
        file('b.yaml', 'hosts:\n  - uri: qemu:///system\n  - uri: qemu:///system\n'),
        '--kernel',
        'k',
        '--rootfs',
        'r',
      ],
      /^error: .*b\.yaml:3: hosts\[1\]\.uri: the same VM as hosts\[0\]/,
    ],
    [['fleet', 'status', '--fleet', join(dir, 'missing.yaml')], /^error: --fleet .*missing\.yaml/],
    [
      ['fleet', 'plan', '--fleet', file('c.yaml', 'hosts:\n  - uri: qemu:///system\n')],
      /^error: no image to boot: pass --kernel and --rootfs, or --artifacts DIR/,
    ],
  ];
  for (const [args, pattern] of cases)
    it(`${args.slice(0, 2).join(' ')} ${String(pattern)}`, async () => {
      const r = await runCliAsync(args);
      expect(r.status, r.stderr).toBe(2);
      expect(r.stderr.trimEnd().split('\n'), r.stderr).toHaveLength(1);
      expect(r.stderr).toMatch(pattern);
      expect(r.stdout).toBe('');
    });

  it('fleet schema prints fleet.schema.json', async () => {
    const r = await runCliAsync(['fleet', 'schema']);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toBe(readFileSync(join(repoRoot, 'fleet.schema.json'), 'utf8'));
  });
});
