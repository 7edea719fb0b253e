/**
 * libvirt tier, safe updates, with the stand-in image (test/fixtures/standin, real units; its
 * gitlab-runner is a stand-in whose "job" is a 60 s process, since nothing reaches GitLab here)
 * behind the isolation filter on a network without forwarding, under TCG:
 * - drain: with a job running, `vm update` to image B waits for the job to finish before the VM
 *   stops (the job's end is on the data disk), shows the drain, and B comes up healthy;
 * - rollback: `vm update` to a root filesystem that is not a squashfs (the kernel panics) is not
 *   healthy in time, the VM is switched back to B, healthy again, exit 1 naming what failed with
 *   the serial log; the data disk is the same volume with its marker file;
 * - a drain longer than the stop timeout is forced off with a clear message;
 * - `vm rollback` on demand switches to the previous kept pair (A), keepImages pairs kept.
 * Everything defined here is removed.
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { imageVolumes, libvirtSerialLog } from '../../src/guest/index.js';
import { keptPairs, recordedDigests } from '../../src/libvirt/index.js';
import { execAsync, pendingTier, runCliAsync, skipReason, tempDir } from '../helpers.js';
import {
  defineIsolatedNetwork,
  guestSsh,
  removeTierObjects,
  standinImages,
  standinTierMissing,
  startTier,
  stopTier,
  type TierDaemons,
  systemUri as uri,
  tierVirsh as virsh,
} from './tier.js';

const tag = `raupd${process.pid}`;
const pool = `${tag}-pool`;
const network = `${tag}-net`;
const name = `${tag}-vm`;
const subnet = '192.168.239';

const skip = skipReason(
  'libvirt update tier',
  pendingTier('it passed once, in 19 minutes on a loaded host: too long for the cold-run limit') ??
    standinTierMissing(),
);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe.skipIf(skip)('libvirt tier: health-gated update, rollback and drain', () => {
  let daemons: TierDaemons;
  let work: string;
  let cfg: string;
  let a: { kernel: string; rootfs: string };
  let b: string;
  let broken: string;
  const log: string[] = [];

  type Status = { state: string; healthy: boolean; image: string | null; reasons: string[] };
  /** `vm status --json`; a failed call (dist/ being rebuilt by another run, say) reads as not healthy. */
  async function status(): Promise<Status> {
    const r = await runCliAsync(['vm', 'status', '--config', cfg, '--connect', uri, '--json']);
    try {
      return JSON.parse(r.stdout) as Status;
    } catch {
      log.push(`vm status failed (exit ${r.status}): ${r.stderr.trim().split('\n').slice(-3).join(' | ')}`);
      return { state: 'unknown', healthy: false, image: null, reasons: ['vm status failed'] };
    }
  }

  async function untilHealthy(seconds: number): Promise<boolean> {
    const deadline = Date.now() + seconds * 1000;
    while (Date.now() < deadline) {
      const s = await status();
      if (s.healthy) return true;
      log.push(`${new Date().toISOString()} ${s.state} healthy=${s.healthy} ${s.reasons.join('; ')}`);
      await sleep(5000);
    }
    return false;
  }

  const ssh = (command: string) => guestSsh(name, join(work, 'key'), command);

  async function sshRetry(command: string, tries = 6) {
    let r = ssh(command);
    for (let i = 1; i < tries && r.status !== 0; i++) {
      await sleep(5000);
      r = ssh(command);
    }
    return r;
  }

  /** `vm define|update` with kernel A and `rootfs`, on the isolated network, under TCG, with both credentials. */
  const vmImage = (command: 'define' | 'update', rootfs: string) =>
    runCliAsync([
      'vm',
      command,
      '--config',
      cfg,
      '--connect',
      uri,
      '--pool',
      pool,
      '--kernel',
      a.kernel,
      '--rootfs',
      rootfs,
      '--network',
      network,
      '--accel',
      'tcg',
      ...credentials(),
    ]);
  const update = (rootfs: string) => vmImage('update', rootfs);

  const credentials = () => [
    '--credential',
    `ssh.authorized_keys.root=${join(work, 'key.pub')}`,
    '--credential',
    `gitlab-runner.token=${join(work, 'token')}`,
  ];

  const sha = async (file: string) => (await execAsync('sha256sum', [file])).split(' ')[0] ?? '';
  const dataPath = () => virsh(['vol-path', '--pool', pool, imageVolumes(name).data]).trim();
  const serial = () => {
    const f = libvirtSerialLog(name);
    return existsSync(f) ? readFileSync(f, 'utf8').split('\n').slice(-30).join('\n') : '(no serial log)';
  };

  beforeAll(async () => {
    daemons = startTier();
    work = tempDir('appliance-update-tier-');
    a = await standinImages(work);
    // Image B: A with one more file (mksquashfs appends to a copy), an overlay-sized change.
    b = join(work, 'rootfs-b.squashfs');
    copyFileSync(a.rootfs, b);
    mkdirSync(join(work, 'extra'));
    writeFileSync(join(work, 'extra', 'standin-image-b'), 'B\n');
    execFileSync('mksquashfs', [join(work, 'extra'), b, '-quiet', '-no-progress']);
    // A root filesystem that is not a squashfs: the kernel cannot mount it and panics.
    broken = join(work, 'rootfs-broken.img');
    writeFileSync(broken, Buffer.alloc(4 * 1024 * 1024, 0x5a));
    defineIsolatedNetwork(network, `rau${process.pid % 100000}br`, subnet, work);
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(work, 'key')]);
    writeFileSync(join(work, 'token'), `glrt-standin-${process.pid}\n`);
    cfg = join(work, 'appliance.yaml');
    // Health timeout 150 s (450 s under TCG: boots take 70-300 s on a loaded host); drain 90 s, enough for the 60 s job.
    writeFileSync(
      cfg,
      `name: ${name}\nvm: {memory: 1G, vcpus: 1, healthTimeout: 150, keepImages: 2}\ndataDisk: {size: 2G}\nrunner: {drainTimeout: 90}\n`,
    );
  }, 1_800_000);

  afterAll(() => {
    if (log.length) process.stderr.write(`\n[update tier]\n${log.join('\n')}\n`);
    removeTierObjects({ domains: [name], pool, network });
    if (daemons) stopTier(daemons);
  });

  it('drains a running job before an update, rolls a broken image back, forces an overlong drain, rolls back on demand', async () => {
    // --- image A, healthy, with a marker on the data disk
    const define = await vmImage('define', a.rootfs);
    expect(define.status, define.stderr).toBe(0);
    expect((await runCliAsync(['vm', 'start', '--config', cfg, '--connect', uri])).status).toBe(0);
    let t0 = Date.now();
    expect(await untilHealthy(900), `${log.join('\n')}\n--- serial ---\n${serial()}`).toBe(true);
    log.push(`A healthy after ${Math.round((Date.now() - t0) / 1000)} s`);
    const data = dataPath();
    const marker = `marker-${process.pid}`;
    expect((await sshRetry(`echo ${marker} > /data/marker && sync`)).status).toBe(0);

    // --- drain: a 60 s job runs when the update starts; it finishes before the VM stops
    expect((await sshRetry('touch /run/standin-job && sleep 3 && cat /data/standin-job.log')).stdout).toMatch(
      /job started/,
    );
    t0 = Date.now();
    const toB = await update(b);
    log.push(`update to B: exit ${toB.status} after ${Math.round((Date.now() - t0) / 1000)} s`);
    expect(toB.status, `${toB.stderr}\n--- serial ---\n${serial()}`).toBe(0);
    expect(toB.stderr).toMatch(/the runner takes no new jobs and gets up to 90 s/);
    expect(toB.stderr).toMatch(/draining .*: (still running: .*s left|the guest is shutting down)/);
    expect(toB.stderr).toMatch(/shut down cleanly after \d+ s/);
    expect(toB.stderr).toMatch(/is healthy on rootfs [0-9a-f]{12} after \d+ s; 2 image pair\(s\) kept/);
    const jobLog = (await sshRetry('cat /data/standin-job.log; cat /data/marker; ls /standin-image-b'))
      .stdout;
    expect(jobLog).toMatch(/job started \d+\njob finished \d+/);
    expect(jobLog).not.toMatch(/aborted/);
    expect(jobLog).toContain(marker);
    expect(jobLog).toContain('/standin-image-b');
    const bSum = await sha(b);
    expect((await status()).image).toBe(bSum);
    const aSum = await sha(a.rootfs);
    expect(keptPairs(virsh(['dumpxml', '--inactive', name])).map((p) => p.rootfs.sha256)).toEqual([
      bSum,
      aSum,
    ]);

    // --- a root filesystem that does not boot: rolled back to B, healthy, exit 1
    t0 = Date.now();
    const bad = await update(broken);
    log.push(`update to broken: exit ${bad.status} after ${Math.round((Date.now() - t0) / 1000)} s`);
    expect(bad.status, bad.stderr).toBe(1);
    expect(bad.stderr).toMatch(
      new RegExp(
        `error: update of ${name} to rootfs [0-9a-f]{12} failed: not healthy within 450 s \\(.*\\); rolled back to rootfs ${bSum.slice(0, 12)}, which is healthy after \\d+ s`,
      ),
    );
    expect(bad.stderr).toContain(`serial log ${libvirtSerialLog(name)}, last 40 lines`);
    const afterBad = await status();
    expect(afterBad).toMatchObject({ state: 'running', healthy: true, image: bSum });
    const xml = virsh(['dumpxml', '--inactive', name]);
    expect(recordedDigests(xml).rootfs).toBe(bSum);
    expect(keptPairs(xml).map((p) => p.rootfs.sha256)).toEqual([bSum, aSum]);
    // The failed image's volume is gone; the data disk is the same volume, with its marker.
    const brokenSum = await sha(broken);
    expect(virsh(['vol-list', '--pool', pool])).not.toContain(
      imageVolumes(name).byDigest('rootfs', brokenSum),
    );
    expect(dataPath()).toBe(data);
    expect(xml).toContain(`<source file='${data}'/>`);
    expect((await sshRetry('cat /data/marker')).stdout.trim()).toBe(marker);

    // --- a drain longer than the stop timeout: forced off, said plainly
    expect(
      (await sshRetry('touch /run/standin-job && sleep 3 && tail -n1 /data/standin-job.log')).stdout,
    ).toMatch(/job started/);
    const forced = await runCliAsync([
      'vm',
      'stop',
      '--config',
      cfg,
      '--connect',
      uri,
      '--timeout',
      '20',
      '--force',
    ]);
    expect(forced.status, forced.stderr).toBe(0);
    expect(forced.stderr).toMatch(
      new RegExp(
        `warning: ${name} did not shut down within 20 s .*: forcing it off \\(virsh destroy\\); jobs still running were killed`,
      ),
    );
    expect((await status()).state).toBe('shut off');

    // --- vm rollback on demand (the VM is off: switched, not started): A boots next, B stays kept
    const back = await runCliAsync(['vm', 'rollback', '--config', cfg, '--connect', uri, '--pool', pool]);
    expect(back.status, back.stderr).toBe(0);
    const rolled = virsh(['dumpxml', '--inactive', name]);
    expect(recordedDigests(rolled).rootfs).toBe(aSum);
    expect(keptPairs(rolled).map((p) => p.rootfs.sha256)).toEqual([aSum, bSum]);
    expect(rolled).toContain(`<source file='${data}'/>`);
  }, 3_000_000);
});
