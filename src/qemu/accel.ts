/**
 * Does KVM really run a guest here? A present /dev/kvm is not enough: on some hosts the guest
 * kernel hangs forever under KVM. A short probe boot waits for the kernel's first console line.
 */
import { accessSync, constants, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Arch } from '../config/index.js';
import { runCommand } from '../run/index.js';

export type KvmProbe =
  | { result: 'works'; seconds: number }
  | { result: 'hangs'; seconds: number }
  | { result: 'unavailable'; reason: string }
  | { result: 'not-probed'; reason: string };

export function qemuBinary(arch: Arch): string {
  return arch === 'x86_64' ? 'qemu-system-x86_64' : 'qemu-system-aarch64';
}

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
  if (arch !== (process.arch === 'x64' ? 'x86_64' : 'aarch64'))
    return { result: 'unavailable', reason: `KVM cannot run ${arch} guests on this host` };
  if (!kernel) return { result: 'not-probed', reason: 'no kernel to boot (pass --probe-kernel)' };
  const dir = mkdtempSync(join(tmpdir(), 'appliance-kvm-probe-'));
  const log = join(dir, 'serial.log');
  const started = Date.now();
  try {
    const console = arch === 'x86_64' ? 'ttyS0' : 'ttyAMA0';
    const machine = arch === 'x86_64' ? ['-machine', 'q35'] : ['-machine', 'virt', '-cpu', 'host'];
    const r = await runCommand(
      'timeout',
      [
        '--kill-after=2',
        String(timeoutSeconds),
        qemuBinary(arch),
        '-accel',
        'kvm',
        ...machine,
        '-nodefaults',
        '-display',
        'none',
        '-no-reboot',
        '-m',
        '256',
        '-kernel',
        kernel,
        '-append',
        `console=${console} panic=-1 earlyprintk=serial`,
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
