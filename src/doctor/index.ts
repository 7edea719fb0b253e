/** `appliance doctor`: what this host can do (build, check, boot, libvirt) and how to fix what it cannot. */
import { existsSync, readdirSync, statfsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { buildrootVersionOf, cachedBuildrootDir, pythonWith } from '../buildroot/index.js';
import type { ApplianceConfig } from '../config/index.js';
import { guestMachine, probeKvm } from '../guest/index.js';
import { cacheDir } from '../paths.js';
import { hasTool, runCommand } from '../run/index.js';

export type Status = 'ok' | 'warn' | 'fail';

export interface Finding {
  area: 'build' | 'check' | 'boot' | 'libvirt';
  name: string;
  status: Status;
  detail: string;
  fix?: string;
}

/** Host tools Buildroot's support/dependencies/dependencies.sh insists on, with their Debian package. */
const buildTools: [string, string][] = [
  ['which', 'debianutils'],
  ['/usr/bin/file', 'file'],
  ['make', 'make'],
  ['gcc', 'gcc'],
  ['g++', 'g++'],
  ['bash', 'bash'],
  ['patch', 'patch'],
  ['perl', 'perl'],
  ['tar', 'tar'],
  ['gzip', 'gzip'],
  ['bzip2', 'bzip2'],
  ['cpio', 'cpio'],
  ['unzip', 'unzip'],
  ['rsync', 'rsync'],
  ['bc', 'bc'],
  ['cmp', 'diffutils'],
  ['find', 'findutils'],
  ['xargs', 'findutils'],
  ['awk', 'gawk'],
  ['wget', 'wget'],
  ['git', 'git'],
  ['python3', 'python3'],
];

/** A full build of this appliance needs roughly this much (an estimate, not a measurement). */
const buildDiskEstimate = 40 * 1024 ** 3;

export interface DoctorOptions {
  outDir?: string;
  buildroot?: string;
  probeKernel?: string;
  probeSeconds?: number;
}

async function tool(area: Finding['area'], name: string, pkg: string, purpose: string): Promise<Finding> {
  return (await hasTool(name))
    ? { area, name, status: 'ok', detail: `${name} found` }
    : {
        area,
        name,
        status: area === 'build' ? 'fail' : 'warn',
        detail: `${name} missing (${purpose})`,
        fix: `apt-get install ${pkg}`,
      };
}

export async function runDoctor(config: ApplianceConfig, options: DoctorOptions = {}): Promise<Finding[]> {
  const findings: Finding[] = [];
  for (const [name, pkg] of buildTools)
    findings.push(await tool('build', name, pkg, 'Buildroot requires it'));
  const outDir = resolve(options.outDir ?? '.');
  let probeDir = outDir;
  while (!existsSync(probeDir)) probeDir = resolve(probeDir, '..');
  const fs = statfsSync(probeDir);
  const free = fs.bavail * fs.bsize;
  findings.push({
    area: 'build',
    name: 'free disk',
    status: free >= buildDiskEstimate ? 'ok' : 'warn',
    detail: `${(free / 1024 ** 3).toFixed(1)} GiB free in ${probeDir} (a full build needs about ${buildDiskEstimate / 1024 ** 3} GiB, estimated)`,
    ...(free >= buildDiskEstimate ? {} : { fix: 'free space or build elsewhere with --out' }),
  });
  const brDir =
    options.buildroot ?? process.env.APPLIANCE_BUILDROOT ?? cachedBuildrootDir(config.buildroot.version);
  const brVersion = buildrootVersionOf(brDir);
  findings.push(
    brVersion === config.buildroot.version
      ? { area: 'build', name: 'Buildroot tree', status: 'ok', detail: `Buildroot ${brVersion} at ${brDir}` }
      : {
          area: 'build',
          name: 'Buildroot tree',
          status: 'warn',
          detail: brVersion
            ? `${brDir} is Buildroot ${brVersion}, not ${config.buildroot.version}`
            : `no Buildroot ${config.buildroot.version} at ${brDir}`,
          fix: 'appliance buildroot fetch (or --buildroot DIR / APPLIANCE_BUILDROOT)',
        },
  );
  findings.push(
    (await pythonWith(['kconfiglib']))
      ? {
          area: 'check',
          name: 'kconfiglib',
          status: 'ok',
          detail: 'python3 kconfiglib found (explains dropped symbols)',
        }
      : {
          area: 'check',
          name: 'kconfiglib',
          status: 'warn',
          detail: 'python3 kconfiglib missing: dropped symbols are listed without their cause',
          fix: 'apt-get install python3-kconfiglib',
        },
  );
  findings.push(
    (await pythonWith(['magic']))
      ? {
          area: 'check',
          name: 'python3-magic',
          status: 'ok',
          detail: "python3 magic found (Buildroot's check-package)",
        }
      : {
          area: 'check',
          name: 'python3-magic',
          status: 'warn',
          detail: "python3 magic missing: Buildroot's check-package cannot run",
          fix: 'apt-get install python3-magic',
        },
  );
  findings.push(await tool('check', 'systemd-analyze', 'systemd', 'verifies the units'));
  findings.push(await tool('check', 'shellcheck', 'shellcheck', "check-package's shell checks"));

  const qemu = guestMachine(config.arch).qemuBinary;
  const qemuFinding = await tool(
    'boot',
    qemu,
    config.arch === 'x86_64' ? 'qemu-system-x86' : 'qemu-system-arm',
    'smoke boots',
  );
  findings.push(qemuFinding);
  if (qemuFinding.status === 'ok') {
    const probe = await probeKvm(
      config.arch,
      options.probeKernel ?? (config.arch === 'x86_64' ? cachedKernel() : undefined),
      options.probeSeconds ?? 10,
    );
    const kvm: Finding =
      probe.result === 'works'
        ? {
            area: 'boot',
            name: 'KVM',
            status: 'ok',
            detail: `a guest kernel booted under KVM in ${probe.seconds.toFixed(1)} s`,
          }
        : probe.result === 'hangs'
          ? {
              area: 'boot',
              name: 'KVM',
              status: 'warn',
              detail: `/dev/kvm exists but a guest printed nothing in ${probe.seconds.toFixed(0)} s: KVM hangs here, TCG will be used`,
              fix: 'use --accel tcg (auto does this)',
            }
          : probe.result === 'unavailable'
            ? {
                area: 'boot',
                name: 'KVM',
                status: 'warn',
                detail: `KVM unavailable (${probe.reason}): TCG will be used (slower)`,
              }
            : {
                area: 'boot',
                name: 'KVM',
                status: 'warn',
                detail: `/dev/kvm exists, but ${probe.reason}: whether KVM really runs a guest is unknown`,
                fix: 'appliance doctor --probe-kernel <bzImage>',
              };
    findings.push(kvm);
  }
  const virsh = await tool('libvirt', 'virsh', 'libvirt-clients', 'defines and runs the VM');
  findings.push(virsh);
  if (virsh.status === 'ok') {
    const r = await runCommand('virsh', ['-c', 'qemu:///system', 'version'], {
      allowFailure: true,
      timeoutMs: 15_000,
    }).catch(() => undefined);
    findings.push(
      r && r.exitCode === 0
        ? { area: 'libvirt', name: 'libvirtd', status: 'ok', detail: 'libvirtd answers on qemu:///system' }
        : {
            area: 'libvirt',
            name: 'libvirtd',
            status: 'warn',
            detail: 'libvirtd does not answer on qemu:///system',
            fix: 'start it (systemctl start libvirtd, or virtlogd -d && libvirtd -d)',
          },
    );
  }
  findings.push(await tool('libvirt', 'virt-xml-validate', 'libvirt-clients', 'validates the emitted XML'));
  return findings;
}

/** A kernel this project already has on disk (stand-in or libvirt-tier guest) to probe KVM with. */
function cachedKernel(): string | undefined {
  for (const [sub, name] of [
    ['standin', 'bzImage'],
    ['tiny-guest', 'vmlinuz'],
  ] as const) {
    const dir = join(cacheDir(), sub);
    if (!existsSync(dir)) continue;
    for (const entry of readdirSync(dir).sort()) {
      const candidate = join(dir, entry, name);
      if (existsSync(candidate)) return candidate;
    }
  }
  return undefined;
}

export function formatFindings(findings: Finding[]): string {
  return findings
    .map(
      (f) =>
        `${f.status === 'ok' ? 'ok  ' : f.status === 'warn' ? 'warn' : 'FAIL'}  ${f.area.padEnd(7)} ${f.detail}${f.fix ? `  → ${f.fix}` : ''}`,
    )
    .join('\n');
}
