/**
 * Does KVM really run a guest here? A present /dev/kvm is not enough: on some hosts the guest
 * kernel hangs forever under KVM. A short probe boot waits for the kernel's first console line.
 */
import { accessSync, constants, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Arch } from '../config/index.js';
import { info } from '../log.js';
import { runCommand } from '../run/index.js';
import { guestMachine, hostArch } from './machine.js';

/** The accelerators QEMU runs the guest with; `auto` is KVM when a probe shows it works, else TCG. */
export const accelerators = ['kvm', 'tcg'] as const;
export type Accel = (typeof accelerators)[number];
export const acceleratorChoices = ['auto', ...accelerators] as const;
export type AccelChoice = (typeof acceleratorChoices)[number];

export type KvmProbe =
  | { result: 'works'; seconds: number }
  | { result: 'hangs'; seconds: number }
  | { result: 'unavailable'; reason: string }
  | { result: 'not-probed'; reason: string };

export function kvmDeviceUsable(): string | undefined {
  if (!existsSync('/dev/kvm')) return '/dev/kvm does not exist';
  try {
    accessSync('/dev/kvm', constants.R_OK | constants.W_OK);
    return undefined;
  } catch {
    return '/dev/kvm is not readable and writable by this user';
  }
}

/** Boot `kernel` under KVM for at most `timeoutSeconds` and see whether it prints "Linux version". */
export async function probeKvm(
  arch: Arch,
  kernel: string | undefined,
  timeoutSeconds = 10,
): Promise<KvmProbe> {
  const problem = kvmDeviceUsable();
  if (problem) return { result: 'unavailable', reason: problem };
  if (arch !== hostArch())
    return { result: 'unavailable', reason: `KVM cannot run ${arch} guests on this host` };
  if (!kernel) return { result: 'not-probed', reason: 'no kernel to boot (pass --probe-kernel)' };
  const dir = mkdtempSync(join(tmpdir(), 'appliance-kvm-probe-'));
  const log = join(dir, 'serial.log');
  const started = Date.now();
  try {
    const m = guestMachine(arch);
    const r = await runCommand(
      'timeout',
      [
        '--kill-after=2',
        String(timeoutSeconds),
        m.qemuBinary,
        '-accel',
        'kvm',
        '-machine',
        m.qemuMachine,
        '-cpu',
        'host',
        '-nodefaults',
        '-display',
        'none',
        '-no-reboot',
        '-m',
        '256',
        '-kernel',
        kernel,
        '-append',
        `console=${m.console} panic=-1 earlyprintk=serial`,
        '-serial',
        `file:${log}`,
      ],
      { allowFailure: true, timeoutMs: (timeoutSeconds + 10) * 1000 },
    );
    const seconds = (Date.now() - started) / 1000;
    const text = existsSync(log) ? readFileSync(log, 'utf8') : '';
    if (/Linux version/.test(text)) return { result: 'works', seconds };
    if (r.exitCode === 124 || r.exitCode === 137) return { result: 'hangs', seconds };
    return {
      result: 'unavailable',
      reason: (r.stderr.trim().split('\n')[0] ?? '') || `qemu exited with ${r.exitCode}`,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * The accelerator to run `kernel` with: `kvm` and `tcg` as asked, `auto` by a probe boot (KVM
 * only when a guest kernel really prints under it within `probeSeconds`), said in one line.
 */
export async function chooseAccelerator(
  arch: Arch,
  kernel: string | undefined,
  wanted: AccelChoice,
  probeSeconds = 10,
): Promise<Accel> {
  if (wanted !== 'auto') return wanted;
  const probe = await probeKvm(arch, kernel, probeSeconds);
  const why = {
    works: 'KVM runs a guest here: using KVM',
    hangs: 'KVM hangs here: using TCG',
    unavailable: `KVM is unavailable (${'reason' in probe ? probe.reason : ''}): using TCG`,
    'not-probed': `KVM was not probed (${'reason' in probe ? probe.reason : ''}): using TCG`,
  };
  info(why[probe.result]);
  return probe.result === 'works' ? 'kvm' : 'tcg';
}

/**
 * How much longer the guest takes under an accelerator than under KVM: timeouts written for KVM
 * (smoke checks, `vm.healthTimeout`) are multiplied by this.
 */
export function accelTimeoutScale(accel: Accel): number {
  return accel === 'kvm' ? 1 : 3;
}
