/**
 * Safe updates: `vm update` (health-gated, with automatic rollback), `vm rollback`, and the
 * drained stop both of them (and `vm stop`) use.
 *
 * An update uploads the new kernel and root filesystem next to the kept ones (volumes named by
 * content, recorded only once complete), drains and stops the VM, switches the domain to the new
 * pair (one `virsh define`: the data disk is the same volume, never replaced, reformatted or
 * detached), starts it and waits for the guest to call itself healthy. If it does not in time,
 * the domain is switched back to the previous pair, started and waited for again, and the update
 * fails (exit 1) naming what failed, with the serial log's tail. Each step can be repeated after
 * a crash: what the domain boots and keeps is in its own XML (pairs.ts), and a volume no kept pair
 * names is deleted by the next sweep.
 */
import { existsSync, readFileSync } from 'node:fs';
import type { ApplianceConfig } from '../config/index.js';
import { sha256File } from '../digest.js';
import { ApplianceError, ExitCode } from '../errors.js';
import { inputFile } from '../fsguard.js';
import { type Accel, accelTimeoutScale, libvirtSerialLog } from '../guest/index.js';
import { info, warn } from '../log.js';
import { runCommand, tail } from '../run/index.js';
import { type Health, readHealth } from './health.js';
import {
  type ImagePair,
  keptPairs,
  pairLabel,
  pairsAfterFailedUpdate,
  pairsAfterRollback,
  pairsAfterUpdate,
  samePair,
  trimPairs,
  volumeFor,
} from './pairs.js';
import {
  type Connection,
  type DefineOptions,
  defineVm,
  defineXml,
  deleteUnusedImages,
  destroyVm,
  isLocal,
  requireDefined,
  startVm,
  uploadVolume,
  virsh,
  vmStatus,
  volumeExists,
  volumePath,
} from './vm.js';
import { parseLibvirtXml, switchImages } from './xml.js';

/** Seconds a stop waits beyond the runner's drain for the rest of the shutdown (× the accelerator's scale). */
export const drainMarginSeconds = 120;

/** How often a waiting command prints a progress line, in seconds. */
const progressEverySeconds = 15;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The accelerator a domain runs under: `<domain type='kvm'>` is KVM, anything else TCG. */
export function domainAccel(xml: string, what = 'the domain XML'): Accel {
  const el = parseLibvirtXml(xml, 'domain', what).node as unknown as {
    getAttribute(n: string): string | null;
  };
  return el.getAttribute('type') === 'kvm' ? 'kvm' : 'tcg';
}

async function inactiveXml(config: ApplianceConfig, conn: Connection): Promise<string> {
  return (
    await virsh(conn, ['dumpxml', '--inactive', config.name], {
      purpose: `reading the domain ${config.name}`,
    })
  ).stdout;
}

/** The last line the guest's runner-drain printed on the serial console, on a local host. */
export function lastDrainLine(serialLog: string): string | undefined {
  const lines = serialLog.split(/\r?\n/).filter((l) => l.includes('appliance-drain: '));
  const last = lines.at(-1);
  return last === undefined ? undefined : last.slice(last.indexOf('appliance-drain: ') + 17).trim();
}

function readSerialLog(config: ApplianceConfig, conn: Connection): string | undefined {
  const log = libvirtSerialLog(config.name);
  if (!isLocal(conn) || !existsSync(log)) return undefined;
  try {
    return readFileSync(log, 'utf8');
  } catch {
    return undefined;
  }
}

/** The serial log's last lines (local host), or where to find it (remote host). */
function serialTail(config: ApplianceConfig, conn: Connection, lines = 40): string {
  const log = libvirtSerialLog(config.name);
  const text = readSerialLog(config, conn);
  if (text === undefined)
    return isLocal(conn)
      ? `no serial log at ${log}`
      : `the serial log is ${log} on the libvirt host of ${conn.uri}`;
  return `serial log ${log}, last ${lines} lines:\n${tail(text, lines)}`;
}

export interface StopOptions {
  /** Seconds to wait for a clean shutdown; default runner.drainTimeout + the margin. */
  timeoutSeconds?: number;
  /** Power the VM off (virsh destroy) when the wait is over; without it that is an error (exit 3). */
  force?: boolean;
}

/**
 * Shut the VM down cleanly: the guest stops its runner first, which takes no new jobs and lets
 * running ones finish (runner.drainTimeout), then the rest. Prints a line every 15 s with what
 * the guest says still runs (its console, on a local host) and the time left. Only after the
 * drain timeout plus a margin is the VM forced off, with `force`, and that is said plainly.
 * Returns how it stopped.
 */
export async function stopVm(
  config: ApplianceConfig,
  conn: Connection,
  o: StopOptions = {},
): Promise<'not running' | 'stopped' | 'forced'> {
  const s = await requireDefined(config, conn);
  if (s.state === 'shut off') {
    info(`${config.name} is not running`);
    return 'not running';
  }
  const accel = domainAccel(await inactiveXml(config, conn));
  const drain = config.runner.drainTimeout;
  const margin = drainMarginSeconds * accelTimeoutScale(accel);
  const timeout = o.timeoutSeconds ?? drain + margin;
  info(
    `stopping ${config.name}: the runner takes no new jobs and gets up to ${drain} s to finish running ones; ${o.force ? 'forced off' : 'given up'} after ${timeout} s` +
      (isLocal(conn)
        ? ''
        : ` (the guest's drain lines are in ${libvirtSerialLog(config.name)} on the libvirt host)`),
  );
  const started = Date.now();
  const deadline = started + timeout * 1000;
  let nextShutdown = 0;
  let nextProgress = started + progressEverySeconds * 1000;
  while (Date.now() < deadline) {
    const state = (await vmStatus(config, conn)).state;
    if (state === 'shut off') {
      info(`${config.name} shut down cleanly after ${Math.round((Date.now() - started) / 1000)} s`);
      return 'stopped';
    }
    // Asked again now and then: a guest still booting may have missed the first request.
    if (Date.now() >= nextShutdown) {
      await virsh(conn, ['shutdown', config.name], { allowFailure: true });
      nextShutdown = Date.now() + 60_000;
    }
    if (Date.now() >= nextProgress) {
      const log = readSerialLog(config, conn);
      const drainLine = log === undefined ? undefined : lastDrainLine(log);
      const left = Math.max(0, Math.round((deadline - Date.now()) / 1000));
      info(
        `draining ${config.name}: ${drainLine ?? `the guest is shutting down (${state})`}; ${left} s left before it is ${o.force ? 'forced off' : 'given up'}`,
      );
      nextProgress += progressEverySeconds * 1000;
    }
    await sleep(Math.min(2000, Math.max(0, deadline - Date.now())));
  }
  if ((await vmStatus(config, conn)).state === 'shut off') return 'stopped';
  if (!o.force) {
    throw new ApplianceError(`${config.name} did not shut down within ${timeout} s`, {
      hint: "use 'appliance vm destroy' to power it off, or 'vm stop --force'",
      exitCode: ExitCode.hostProblem,
    });
  }
  warn(
    `${config.name} did not shut down within ${timeout} s (runner.drainTimeout ${drain} s + ${timeout - drain > 0 ? timeout - drain : 0} s margin): forcing it off (virsh destroy); jobs still running were killed`,
  );
  await destroyVm(config, conn);
  return 'forced';
}

/** What the host sees of a boot besides the guest's own verdict: enough to tell a boot that failed for sure. */
export interface BootSigns {
  /** The domain's state (virsh domstate), e.g. "running", "shut off", "crashed", "paused". */
  state: string;
  /** Guest resets libvirt reported since the start (its 'reboot' events). */
  reboots: number;
  /** The serial log so far (local hosts only). */
  serialLog?: string;
}

/**
 * Why a boot has failed for sure, or undefined while it may still come up: the kernel panicked
 * (the serial log says so; with panic=-1 the guest then resets at once), the domain stopped,
 * crashed or paused, or it reset itself repeatedly (a panic makes two or three resets; an
 * appliance boot makes none). Lets a broken image be rolled back within seconds instead of
 * after vm.healthTimeout.
 */
export function bootFailure(s: BootSigns): string | undefined {
  const panic = s.serialLog
    ?.split(/\r?\n/)
    .find((l) => /Kernel panic - not syncing/.test(l))
    ?.trim();
  if (panic) return `the kernel panicked: ${panic.slice(panic.indexOf('Kernel panic'))}`;
  if (/^(shut off|shutoff|crashed|paused|pmsuspended)/.test(s.state))
    return `the domain is ${s.state} instead of running`;
  if (s.reboots >= 2) return `the guest reset itself ${s.reboots} times while booting (a crash loop)`;
  return undefined;
}

/** The number of 'reboot' events in what `virsh event --event reboot` printed. */
export function rebootEvents(virshOutput: string): number {
  return virshOutput.split('\n').filter((l) => /event 'reboot' for domain/.test(l)).length;
}

/** What a health wait reads each round; injectable so the loop is tested without libvirt. */
export interface BootProbe {
  health(): Promise<Health>;
  state(): Promise<string>;
  serialLog(): string | undefined;
  /** Listen up to `seconds` for guest resets; the number seen. */
  reboots(seconds: number): Promise<number>;
}

/**
 * Wait until the guest says it is healthy, the boot has failed for sure (bootFailure), or
 * `timeoutSeconds` have passed. Between readings it listens for guest resets (a few seconds),
 * so a crash loop is seen even between polls. `failure` says why it stopped early.
 */
export async function watchBoot(
  probe: BootProbe,
  timeoutSeconds: number,
  onProgress?: (h: Health, elapsedSeconds: number) => void,
  listenSeconds = 5,
): Promise<{ health: Health; failure?: string }> {
  const start = Date.now();
  const deadline = start + Math.max(0, timeoutSeconds) * 1000;
  let reboots = 0;
  for (;;) {
    const health = await probe.health();
    onProgress?.(health, Math.round((Date.now() - start) / 1000));
    if (health.healthy) return { health };
    const failure = bootFailure({ state: await probe.state(), reboots, serialLog: probe.serialLog() });
    if (failure) return { health: { ...health, reasons: [failure, ...health.reasons] }, failure };
    const left = deadline - Date.now();
    if (left <= 0) return { health };
    reboots += await probe.reboots(Math.max(1, Math.min(listenSeconds, Math.ceil(left / 1000))));
  }
}

function bootProbe(config: ApplianceConfig, conn: Connection): BootProbe {
  return {
    health: () => readHealth(conn, config.name),
    state: async () => (await vmStatus(config, conn)).state,
    serialLog: () => readSerialLog(config, conn),
    reboots: async (seconds) => {
      const r = await runCommand(
        'virsh',
        [
          '-q',
          '-c',
          conn.uri,
          'event',
          '--domain',
          config.name,
          '--event',
          'reboot',
          '--loop',
          '--timeout',
          String(seconds),
        ],
        {
          allowFailure: true,
          timeoutMs: (seconds + 30) * 1000,
          purpose: `listening for resets of ${config.name}`,
        },
      );
      return rebootEvents(r.stdout);
    },
  };
}

/** Wait for health (or a boot that failed for sure), printing a line every 15 s. */
async function waitForHealth(
  config: ApplianceConfig,
  conn: Connection,
  timeoutSeconds: number,
): Promise<{ health: Health; seconds: number; failure?: string }> {
  const started = Date.now();
  let nextProgress = progressEverySeconds;
  const r = await watchBoot(bootProbe(config, conn), timeoutSeconds, (h, elapsed) => {
    if (h.healthy || elapsed < nextProgress) return;
    nextProgress = elapsed + progressEverySeconds;
    info(
      `waiting for ${config.name} to be healthy: ${elapsed}/${timeoutSeconds} s (${h.detail ?? h.reasons.join('; ')})`,
    );
  });
  return { ...r, seconds: Math.round((Date.now() - started) / 1000) };
}

/** Point the defined domain at `pairs[0]` and record `pairs`; the rest of its XML stays. */
async function switchTo(config: ApplianceConfig, conn: Connection, pairs: ImagePair[]): Promise<void> {
  const [pair] = pairs;
  if (!pair) throw new Error('switchTo needs a pair');
  const paths = {
    kernel: await volumePath(conn, pair.kernel.volume),
    rootfs: await volumePath(conn, pair.rootfs.volume),
    ...(pair.initrd ? { initrd: await volumePath(conn, pair.initrd.volume) } : {}),
  };
  const digests = { kernel: pair.kernel.sha256, rootfs: pair.rootfs.sha256, initrd: pair.initrd?.sha256 };
  const xml = switchImages(
    await inactiveXml(config, conn),
    paths,
    digests,
    pairs,
    `virsh dumpxml ${config.name}`,
  );
  await defineXml(conn, 'domain', xml);
}

function healthTimeout(config: ApplianceConfig, accel: Accel): number {
  return config.vm.healthTimeout * accelTimeoutScale(accel);
}

const why = (h: Health) => h.reasons.join('; ') || h.detail || 'no reason given';

export interface UpdateOptions {
  /** Seconds to wait for the drained shutdown before forcing; default runner.drainTimeout + margin. */
  stopTimeoutSeconds?: number;
}

export interface UpdateResult {
  changed: boolean;
  pair: ImagePair;
  health?: Health;
}

/**
 * Health-gated update: upload the new pair (unless kept already), drain and stop the VM if it
 * runs, switch the domain to the new pair, start it and wait for health (vm.healthTimeout, scaled
 * under TCG). Healthy: the newest vm.keepImages pairs are kept, older volumes deleted. Not healthy:
 * switch back to the previous pair, start, wait again, delete the failed pair, fail with exit 1.
 * A VM that was not running is switched but not started (and so not health-checked).
 */
export async function updateVm(
  config: ApplianceConfig,
  conn: Connection,
  o: DefineOptions,
  u: UpdateOptions = {},
): Promise<UpdateResult> {
  const before = await requireDefined(config, conn);
  const wasRunning = before.state === 'running';
  const pairs = keptPairs(await inactiveXml(config, conn), `virsh dumpxml ${config.name}`);
  const files = {
    kernel: inputFile('--kernel', o.kernel ?? ''),
    rootfs: inputFile('--rootfs', o.rootfs ?? ''),
    ...(o.initrd ? { initrd: inputFile('--initrd', o.initrd) } : {}),
  };
  const target: Partial<
    Record<'kernel' | 'rootfs' | 'initrd', { ref: ImagePair['kernel']; upload: boolean }>
  > = {};
  for (const [kind, file] of Object.entries(files) as ['kernel' | 'rootfs' | 'initrd', string][])
    target[kind] = volumeFor(config.name, kind, await sha256File(file), pairs);
  const next: ImagePair = {
    // biome-ignore lint/style/noNonNullAssertion: set for every file above
    kernel: target.kernel!.ref,
    // biome-ignore lint/style/noNonNullAssertion: set for every file above
    rootfs: target.rootfs!.ref,
    ...(target.initrd ? { initrd: target.initrd.ref } : {}),
  };
  if (samePair(next, pairs[0])) {
    info(`${config.name} already boots ${pairLabel(next)}: nothing to update`);
    return {
      changed: false,
      pair: next,
      health: wasRunning ? await readHealth(conn, config.name) : undefined,
    };
  }
  // Upload while the VM still runs: the new volumes have names of their own.
  for (const [kind, t] of Object.entries(target) as [
    'kernel' | 'rootfs' | 'initrd',
    { ref: ImagePair['kernel']; upload: boolean },
  ][]) {
    if (!t.upload) continue;
    // A volume of that name that no kept pair names is what an interrupted upload left.
    if (await volumeExists(conn, t.ref.volume))
      await virsh(conn, ['vol-delete', '--pool', conn.pool, t.ref.volume]);
    info(`uploading ${files[kind]} as ${conn.pool}/${t.ref.volume}`);
    await uploadVolume(conn, t.ref.volume, files[kind] as string);
  }
  const updated = pairsAfterUpdate(pairs, next);
  if (wasRunning) await stopVm(config, conn, { timeoutSeconds: u.stopTimeoutSeconds, force: true });
  // Not running: nothing to gate on, so the pairs are trimmed at once.
  const recorded = wasRunning ? updated : trimPairs(updated, config.vm.keepImages);
  const xml = await defineVm(config, conn, { ...o, dataDisk: undefined }, { pair: next, pairs: recorded });
  const accel = domainAccel(xml);
  if (!wasRunning) {
    await deleteUnusedImages(config, conn, recorded);
    info(
      `${config.name} now boots ${pairLabel(next)}; it was not running, so it was not started and its health is unknown ('appliance vm rollback' goes back)`,
    );
    return { changed: true, pair: next };
  }
  await startVm(config, conn);
  const timeout = healthTimeout(config, accel);
  const { health, seconds, failure } = await waitForHealth(config, conn, timeout);
  if (health.healthy) {
    const kept = trimPairs(updated, config.vm.keepImages);
    if (kept.length < updated.length) await switchTo(config, conn, kept);
    await deleteUnusedImages(config, conn, kept);
    info(
      `${config.name} is healthy on ${pairLabel(next)} after ${seconds} s; ${kept.length} image pair(s) kept`,
    );
    return { changed: true, pair: next, health };
  }
  const failedLog = serialTail(config, conn);
  const rolled = pairsAfterFailedUpdate(updated);
  const previous = rolled[0];
  if (!previous) {
    throw new ApplianceError(
      `${config.name} is ${failure ? `failing to boot` : `not healthy within ${timeout} s`} on ${pairLabel(next)} (${why(health)}), and it keeps no previous image to go back to`,
      { exitCode: ExitCode.checkFailed, details: failedLog, hint: 'fix the image and run vm update again' },
    );
  }
  const notHealthy = failure ? `failed to boot after ${seconds} s` : `not healthy within ${timeout} s`;
  warn(
    `${config.name} ${failure ? notHealthy : `is ${notHealthy}`} on ${pairLabel(next)} (${why(health)}): rolling back to ${pairLabel(previous)}`,
  );
  // A guest that never came up cannot drain; one that did gets a short clean shutdown.
  await stopVm(config, conn, {
    timeoutSeconds: health.reachable ? 60 * accelTimeoutScale(accel) : 5,
    force: true,
  });
  await switchTo(config, conn, rolled);
  await startVm(config, conn);
  const again = await waitForHealth(config, conn, timeout);
  await deleteUnusedImages(config, conn, rolled);
  throw new ApplianceError(
    `update of ${config.name} to ${pairLabel(next)} failed: ${notHealthy} (${why(health)}); rolled back to ${pairLabel(previous)}, which is ${again.health.healthy ? `healthy after ${again.seconds} s` : `not healthy either (${why(again.health)})`}`,
    {
      exitCode: ExitCode.checkFailed,
      details: failedLog,
      hint: again.health.healthy
        ? 'the serial log of the failed boot follows'
        : "see 'appliance vm status' and the serial console ('appliance vm console')",
    },
  );
}

/**
 * `vm rollback`: boot the previous kept pair (drained stop first if the VM runs, then started
 * and health-checked). The pair it replaces stays kept, so a second rollback goes forward again.
 */
export async function rollbackVm(
  config: ApplianceConfig,
  conn: Connection,
  u: UpdateOptions = {},
): Promise<UpdateResult> {
  const before = await requireDefined(config, conn);
  const xml = await inactiveXml(config, conn);
  const pairs = pairsAfterRollback(keptPairs(xml, `virsh dumpxml ${config.name}`), config.name);
  // biome-ignore lint/style/noNonNullAssertion: pairsAfterRollback returns at least two
  const target = pairs[0]!;
  const wasRunning = before.state === 'running';
  if (wasRunning) await stopVm(config, conn, { timeoutSeconds: u.stopTimeoutSeconds, force: true });
  await switchTo(config, conn, pairs);
  if (!wasRunning) {
    info(`${config.name} now boots ${pairLabel(target)} (not started: it was not running)`);
    return { changed: true, pair: target };
  }
  await startVm(config, conn);
  const timeout = healthTimeout(config, domainAccel(xml));
  const { health, seconds } = await waitForHealth(config, conn, timeout);
  if (!health.healthy)
    throw new ApplianceError(
      `${config.name} rolled back to ${pairLabel(target)} but is not healthy within ${timeout} s (${why(health)})`,
      {
        exitCode: ExitCode.checkFailed,
        details: serialTail(config, conn),
        hint: "'appliance vm rollback' again goes forward to the image it replaced",
      },
    );
  info(`${config.name} rolled back to ${pairLabel(target)}, healthy after ${seconds} s`);
  return { changed: true, pair: target, health };
}

/**
 * A VM not defined on the host yet (`fleet apply` to a new host): define it with the image (and
 * an empty data disk), start it and wait for health; not healthy (or a boot that failed for
 * sure) is exit 1 with the serial log's tail. There is no previous image to go back to.
 */
export async function deployVm(
  config: ApplianceConfig,
  conn: Connection,
  o: DefineOptions,
): Promise<UpdateResult> {
  const xml = await defineVm(config, conn, o);
  const pair = keptPairs(await inactiveXml(config, conn), `virsh dumpxml ${config.name}`)[0];
  await startVm(config, conn);
  const timeout = healthTimeout(config, domainAccel(xml));
  const { health, seconds, failure } = await waitForHealth(config, conn, timeout);
  if (!health.healthy || !pair) {
    const log = serialTail(config, conn);
    // No previous image to go back to: powered off, so a crash loop does not spin on the host.
    await destroyVm(config, conn);
    throw new ApplianceError(
      `${config.name} was defined and started but ${failure ? `failed to boot after ${seconds} s` : `is not healthy within ${timeout} s`} (${why(health)}); it was powered off`,
      { exitCode: ExitCode.checkFailed, details: log, hint: 'fix the image and apply again' },
    );
  }
  info(`${config.name} is defined, started and healthy on ${pairLabel(pair)} after ${seconds} s`);
  return { changed: true, pair, health };
}
