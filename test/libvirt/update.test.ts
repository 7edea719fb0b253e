/**
 * Safe updates without libvirt: which image pairs a VM keeps, what `vm update` and `vm rollback`
 * switch to, that repeating a step changes nothing more, that a switch leaves the data disk and
 * everything else of the domain as it was, and the drain's unit and console lines.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseAppliance } from '../../src/config/index.js';
import { isApplianceError } from '../../src/errors.js';
import { accelTimeoutScale, imageVolumes } from '../../src/guest/index.js';
import {
  type DomainOptions,
  domainFiles,
  domainXml,
  type ImagePair,
  keptPairs,
  recordedDigests,
  recordedPairs,
  switchImages,
  unusedImageVolumes,
} from '../../src/libvirt/index.js';
import {
  bootedPair,
  pairsAfterFailedUpdate,
  pairsAfterRollback,
  pairsAfterUpdate,
  samePair,
  trimPairs,
  volumeFor,
} from '../../src/libvirt/pairs.js';
import {
  type BootProbe,
  bootFailure,
  domainAccel,
  lastDrainLine,
  rebootEvents,
  watchBoot,
} from '../../src/libvirt/update.js';
import { renderTree } from '../../src/render/index.js';
import { repoRoot, tempDir } from '../helpers.js';

const config = parseAppliance('name: edge\n', join(repoRoot, 'x.yaml'));
const sha = (c: string) => c.repeat(64);
const pool = '/var/lib/libvirt/images/p';
const v = imageVolumes('edge');

/** Pair `c`: kernel and rootfs of content c, in the volumes vm update names by digest. */
function pair(c: string, kernel = c): ImagePair {
  return {
    kernel: { sha256: sha(kernel), volume: v.byDigest('kernel', sha(kernel)) },
    rootfs: { sha256: sha(c), volume: v.byDigest('rootfs', sha(c)) },
  };
}

function domain(over: Partial<DomainOptions> = {}): string {
  return domainXml(config, {
    arch: 'x86_64',
    accel: 'tcg',
    kernel: `${pool}/${v.kernel}`,
    rootfs: `${pool}/${v.rootfs}`,
    dataDisk: `${pool}/${v.data}`,
    credentials: [{ name: 'gitlab-runner.token', file: `${pool}/${v.credential('gitlab-runner.token')}` }],
    network: { type: 'network', name: 'default' },
    gateway: '192.168.122.1',
    digests: { kernel: sha('a'), rootfs: sha('a') },
    serialLog: '/var/log/libvirt/qemu/edge-serial.log',
    ...over,
  });
}

/** What a switch must leave alone: every line but the kernel, initrd, rootfs source and our metadata. */
function untouched(xml: string): string[] {
  return xml
    .split('\n')
    .map((l) => l.trim())
    .filter(
      (l) => !/^<(kernel|initrd)>|^<source file=".*-(rootfs|kernel|initrd)|appliance:|<\/?metadata/.test(l),
    );
}

describe('kept image pairs', () => {
  it('a VM defined by vm define keeps one pair: the fixed volumes it boots, with the recorded digests', () => {
    const xml = domain();
    expect(keptPairs(xml)).toEqual([
      { kernel: { sha256: sha('a'), volume: v.kernel }, rootfs: { sha256: sha('a'), volume: v.rootfs } },
    ]);
    expect(recordedPairs(xml)).toEqual([]);
  });

  it('an initrd is part of the pair', () => {
    const xml = domain({
      initrd: `${pool}/${v.initrd}`,
      digests: { kernel: sha('a'), initrd: sha('b'), rootfs: sha('c') },
    });
    expect(bootedPair(xml)).toEqual({
      kernel: { sha256: sha('a'), volume: v.kernel },
      rootfs: { sha256: sha('c'), volume: v.rootfs },
      initrd: { sha256: sha('b'), volume: v.initrd },
    });
  });

  it('update: the new pair first, the booted one next; repeating it adds nothing; trimmed to keepImages once healthy', () => {
    const after = pairsAfterUpdate([pair('a'), pair('b')], pair('c'));
    expect(after.map((p) => p.rootfs.sha256[0])).toEqual(['c', 'a', 'b']);
    expect(pairsAfterUpdate(after, pair('c'))).toEqual(after);
    expect(trimPairs(after, 2).map((p) => p.rootfs.sha256[0])).toEqual(['c', 'a']);
    // An update to a kept older pair moves it to the front instead of keeping it twice.
    expect(pairsAfterUpdate(after, pair('b')).map((p) => p.rootfs.sha256[0])).toEqual(['b', 'c', 'a']);
  });

  it('failed update: the failed pair is dropped and the previous one boots again', () => {
    const after = pairsAfterUpdate([pair('a'), pair('b')], pair('c'));
    expect(pairsAfterFailedUpdate(after)).toEqual([pair('a'), pair('b')]);
  });

  it('rollback: the previous pair boots, the replaced one stays kept (a second rollback goes forward); none: a clear error', () => {
    const pairs = [pair('c'), pair('a'), pair('b')];
    const once = pairsAfterRollback(pairs, 'edge');
    expect(once.map((p) => p.rootfs.sha256[0])).toEqual(['a', 'c', 'b']);
    expect(pairsAfterRollback(once, 'edge')).toEqual(pairs);
    let error: unknown;
    try {
      pairsAfterRollback([pair('a')], 'edge');
    } catch (e) {
      error = e;
    }
    expect(isApplianceError(error) && error.oneLine()).toMatch(
      /edge keeps no previous image to roll back to/,
    );
  });

  it('an image a kept pair already holds is not uploaded again; a new one goes to the volume named by its digest', () => {
    const pairs = [pair('a'), pair('b', 'k')];
    expect(volumeFor('edge', 'kernel', sha('k'), pairs)).toEqual({ ref: pairs[1]?.kernel, upload: false });
    expect(volumeFor('edge', 'rootfs', sha('d'), pairs)).toEqual({
      ref: { sha256: sha('d'), volume: `edge-rootfs-${'d'.repeat(16)}` },
      upload: true,
    });
    expect(samePair(pair('a'), pair('a'))).toBe(true);
    expect(samePair(pair('a'), pair('a', 'k'))).toBe(false);
  });

  it('the sweep deletes image volumes no kept pair names (an interrupted upload too), never the data disk or credentials', () => {
    const kept = [pair('c'), pair('a', 'k')];
    const volumes = [
      v.kernel,
      v.rootfs,
      v.data,
      v.credential('gitlab-runner.token'),
      ...kept.flatMap((p) => [p.kernel.volume, p.rootfs.volume]),
      v.byDigest('rootfs', sha('e')), // an upload a crash interrupted: no pair records it
      'other-rootfs',
    ];
    expect(unusedImageVolumes('edge', volumes, kept).sort()).toEqual(
      [v.kernel, v.rootfs, v.byDigest('rootfs', sha('e'))].sort(),
    );
    // Sweeping again after the deletions finds nothing: idempotent.
    const left = volumes.filter((n) => !unusedImageVolumes('edge', volumes, kept).includes(n));
    expect(unusedImageVolumes('edge', left, kept)).toEqual([]);
  });
});

describe('switching a domain to another pair', () => {
  it('points kernel and rootfs at the pair, records it, and leaves every other line (data disk, MAC, filter) alone', () => {
    const withMac = domain().replace(
      '<model type="virtio"/>',
      '<mac address="52:54:00:12:34:56"/>\n<model type="virtio"/>',
    );
    const pairs = pairsAfterUpdate(keptPairs(withMac), pair('c'));
    const next = pairs[0] as ImagePair;
    const xml = switchImages(
      withMac,
      { kernel: `${pool}/${next.kernel.volume}`, rootfs: `${pool}/${next.rootfs.volume}` },
      { kernel: next.kernel.sha256, rootfs: next.rootfs.sha256 },
      pairs,
    );
    expect(domainFiles(xml)).toEqual([
      `${pool}/${next.kernel.volume}`,
      `${pool}/${next.rootfs.volume}`,
      `${pool}/${v.data}`,
    ]);
    expect(recordedDigests(xml)).toEqual({ kernel: sha('c'), rootfs: sha('c') });
    expect(keptPairs(xml)).toEqual(pairs);
    expect(untouched(xml)).toEqual(untouched(withMac));
    expect(xml).toContain('52:54:00:12:34:56');
    // The same switch again gives the same XML: idempotent.
    expect(
      switchImages(
        xml,
        { kernel: `${pool}/${next.kernel.volume}`, rootfs: `${pool}/${next.rootfs.volume}` },
        { kernel: next.kernel.sha256, rootfs: next.rootfs.sha256 },
        pairs,
      ),
    ).toBe(xml);
  });

  it('adds and removes the initrd with the pair', () => {
    const withInitrd = switchImages(
      domain(),
      { kernel: `${pool}/k`, initrd: `${pool}/i`, rootfs: `${pool}/r` },
      { kernel: sha('a'), initrd: sha('b'), rootfs: sha('c') },
      [],
    );
    expect(domainFiles(withInitrd).slice(0, 3)).toEqual([`${pool}/k`, `${pool}/i`, `${pool}/r`]);
    const without = switchImages(
      withInitrd,
      { kernel: `${pool}/k`, rootfs: `${pool}/r` },
      { kernel: sha('a'), rootfs: sha('c') },
      [],
    );
    expect(without).not.toContain('<initrd>');
    expect(recordedDigests(without)).toEqual({ kernel: sha('a'), rootfs: sha('c') });
  });

  it('reads the accelerator from the domain type', () => {
    expect(domainAccel(domain())).toBe('tcg');
    expect(domainAccel(domain({ accel: 'kvm' }))).toBe('kvm');
    expect(accelTimeoutScale('tcg')).toBe(3);
    expect(accelTimeoutScale('kvm')).toBe(1);
  });
});

describe('drain', () => {
  const overlay = (cfg = config) => {
    const tree = renderTree(cfg);
    const file = (p: string) => tree.get(`board/rootfs-overlay/${p}`)?.content.toString() ?? '';
    return file;
  };

  it("gitlab-runner.service stops with GitLab Runner's graceful signal, drains through runner-drain, for runner.drainTimeout", () => {
    const unit = overlay(
      parseAppliance('name: edge\nrunner: {drainTimeout: 900}\n', join(repoRoot, 'x.yaml')),
    )('usr/lib/systemd/system/gitlab-runner.service');
    expect(unit).toMatch(/^KillSignal=SIGQUIT$/m);
    expect(unit).toMatch(/^KillMode=mixed$/m);
    expect(unit).toMatch(/^TimeoutStopSec=900$/m);
    expect(unit).toMatch(/^ExecStop=\/usr\/libexec\/appliance\/runner-drain \$MAINPID 900$/m);
    // A shutdown waits longer than the drain (systemd's own limit would force a power-off at 30 min).
    const file = overlay(
      parseAppliance('name: edge\nrunner: {drainTimeout: 3600}\n', join(repoRoot, 'x.yaml')),
    );
    expect(file('usr/lib/systemd/system/poweroff.target.d/50-appliance-drain.conf')).toMatch(
      /^JobTimeoutSec=4200$/m,
    );
    expect(file('usr/lib/systemd/system/reboot.target.d/50-appliance-drain.conf')).toMatch(
      /^JobTimeoutSec=4200$/m,
    );
    expect(config.runner.drainTimeout).toBe(3600);
  });

  it('a drain timeout out of range is a config error naming the setting', () => {
    expect(() => parseAppliance('runner: {drainTimeout: 1}\n', join(repoRoot, 'x.yaml'))).toThrow(
      /runner\.drainTimeout/,
    );
    expect(() => parseAppliance('vm: {keepImages: 1}\n', join(repoRoot, 'x.yaml'))).toThrow(/vm\.keepImages/);
  });

  it('runner-drain sends SIGQUIT, reports what still runs on each round, and returns when the runner has finished', () => {
    const dir = tempDir('appliance-drain-');
    const bin = join(dir, 'bin');
    mkdirSync(bin);
    // No docker here: a stand-in that lists no job container.
    writeFileSync(join(bin, 'docker'), '#!/bin/sh\nexit 0\n');
    chmodSync(join(bin, 'docker'), 0o755);
    // A "runner" that on SIGQUIT lets its 2 s job finish, then exits. (Python: a shell started in
    // the background of a non-interactive shell ignores SIGQUIT and cannot trap it.)
    const runner = join(dir, 'runner.py');
    writeFileSync(
      runner,
      [
        'import signal, subprocess, sys',
        'job = subprocess.Popen(["sleep", "2"])',
        'signal.signal(signal.SIGQUIT, lambda *a: None)',
        `open(${JSON.stringify(join(dir, 'ready'))}, "w").write("ready")`,
        'signal.pause()',
        'job.wait()',
        `open(${JSON.stringify(join(dir, 'done'))}, "w").write("finished")`,
        '',
      ].join('\n'),
    );
    const script = join(repoRoot, 'rootfs-overlay/usr/libexec/appliance/runner-drain');
    const r = spawnSync(
      'sh',
      [
        '-c',
        `python3 ${runner} & pid=$!; while [ ! -e ${dir}/ready ]; do sleep 0.1; done; sh ${script} $pid 60; wait $pid 2>/dev/null; cat ${dir}/done`,
      ],
      {
        encoding: 'utf8',
        env: { ...process.env, PATH: `${bin}:${process.env.PATH}`, APPLIANCE_DRAIN_INTERVAL: '1' },
        timeout: 30_000,
      },
    );
    expect(r.stdout).toMatch(/appliance-drain: gitlab-runner takes no new jobs; waiting up to 60 s/);
    expect(r.stdout).toMatch(/appliance-drain: still running: 0 job container\(s\);.*s left/);
    expect(r.stdout).toMatch(/appliance-drain: gitlab-runner finished its jobs after \d+ s/);
    expect(r.stdout).toMatch(/finished/);
    expect(
      lastDrainLine(`x\r\nappliance-drain: still running: 1 job container(s); 30 s left\r\n[  OK  ] y\r\n`),
    ).toBe('still running: 1 job container(s); 30 s left');
    expect(lastDrainLine('nothing\n')).toBeUndefined();
    expect(readFileSync(script, 'utf8')).toMatch(/kill -QUIT "\$pid"/);
  });
});

describe('a broken image fails fast: the health wait sees a failed boot within seconds', () => {
  const panic =
    '[    2.1] Kernel panic - not syncing: VFS: Unable to mount root fs on "/dev/vda" or unknown-block(254,0)';
  it('bootFailure: a kernel panic in the serial log, a domain not running, repeated resets', () => {
    expect(bootFailure({ state: 'running', reboots: 0, serialLog: `boot\n${panic}\n` })).toBe(
      'the kernel panicked: Kernel panic - not syncing: VFS: Unable to mount root fs on "/dev/vda" or unknown-block(254,0)',
    );
    expect(bootFailure({ state: 'shut off', reboots: 0 })).toBe('the domain is shut off instead of running');
    expect(bootFailure({ state: 'crashed', reboots: 0 })).toMatch(/crashed instead of running/);
    expect(bootFailure({ state: 'running', reboots: 2 })).toMatch(/reset itself 2 times .*crash loop/);
    expect(
      bootFailure({ state: 'running', reboots: 1, serialLog: 'systemd[1]: Started docker.service\n' }),
    ).toBe(undefined);
  });

  it("counts virsh event's reboot lines", () => {
    const out = "event 'reboot' for domain 'edge'\nevent 'reboot' for domain 'edge'\nevents received: 2\n";
    expect(rebootEvents(out)).toBe(2);
    expect(rebootEvents('event loop timed out\nevents received: 0\n')).toBe(0);
  });

  const unhealthy = { healthy: false, reasons: ['the guest agent does not answer'], reachable: false };
  const probe = (o: Partial<{ serial: () => string; state: string; reboots: number[] }>): BootProbe => {
    const resets = [...(o.reboots ?? [])];
    return {
      health: async () => unhealthy,
      state: async () => o.state ?? 'running',
      serialLog: () => o.serial?.() ?? '',
      reboots: async () => resets.shift() ?? 0,
    };
  };

  it('a panicking image is given up at once, not after the health timeout', async () => {
    const t0 = Date.now();
    const r = await watchBoot(probe({ serial: () => panic }), 600, undefined, 1);
    expect(Date.now() - t0).toBeLessThan(2000);
    expect(r.failure).toMatch(/the kernel panicked/);
    expect(r.health.reasons[0]).toMatch(/the kernel panicked/);
  });

  it('a remote host without the serial log: a crash loop (resets) is seen within a few listens', async () => {
    const t0 = Date.now();
    const r = await watchBoot(probe({ reboots: [0, 2] }), 600, undefined, 1);
    expect(r.failure).toMatch(/reset itself 2 times/);
    expect(Date.now() - t0).toBeLessThan(5000);
    const off = await watchBoot(probe({ state: 'shut off' }), 600, undefined, 1);
    expect(off.failure).toMatch(/shut off/);
  });

  it('a boot that is merely slow waits for its health up to the timeout', async () => {
    let n = 0;
    const slow: BootProbe = {
      ...probe({}),
      health: async () => (++n >= 3 ? { healthy: true, reasons: [], reachable: true } : unhealthy),
    };
    const r = await watchBoot(slow, 600, undefined, 1);
    expect(r).toEqual({ health: { healthy: true, reasons: [], reachable: true } });
    const never = await watchBoot(probe({}), 1, undefined, 1);
    expect(never.failure).toBeUndefined();
    expect(never.health.healthy).toBe(false);
  });
});
