/**
 * Kernel tier: merge our fragments into Buildroot's board/qemu/<arch>/linux.config inside a real
 * kernel tree (Debian's linux-source-6.12, fetched by test/fixtures/kernel-source.sh), run
 * olddefconfig, and prove every fragment line survives and Docker's checklist passes.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { cachedBuildrootDir } from '../../src/buildroot/index.js';
import { loadAppliance } from '../../src/config/index.js';
import { kernelFragment } from '../../src/render/index.js';
import { repoRoot, skipReason, tempDir } from '../helpers.js';

/** Options our fragment needs on the kernel Buildroot builds (6.18) that 6.12 does not have yet. */
const newerThan612 = new Set(['CONFIG_NETFILTER_XTABLES_LEGACY']);

function fixture(): { src: string; check: string } | string {
  if (process.env.APPLIANCE_SKIP_KERNEL_TIER) return 'APPLIANCE_SKIP_KERNEL_TIER is set';
  try {
    const out = execFileSync('bash', [join(repoRoot, 'test/fixtures/kernel-source.sh')], {
      encoding: 'utf8',
      timeout: 900_000,
    });
    const src = /^src=(.*)$/m.exec(out)?.[1];
    const check = /^checkconfig=(.*)$/m.exec(out)?.[1];
    if (!src || !check) return `kernel-source.sh printed no paths: ${out}`;
    return { src, check };
  } catch (e) {
    return `kernel source unavailable: ${(e as Error).message.split('\n')[0]}`;
  }
}

const buildroot = process.env.APPLIANCE_BUILDROOT ?? cachedBuildrootDir('2026.02.3');
const prereq = existsSync(join(buildroot, 'board/qemu/x86_64/linux.config'))
  ? fixture()
  : `no Buildroot tree at ${buildroot} (board configs come from it)`;
const skip = skipReason('kernel fragment tier', typeof prereq === 'string' ? prereq : undefined);

function definedSymbols(src: string): Set<string> {
  const out = execFileSync(
    'sh',
    [
      '-c',
      `grep -rhoE '^[[:space:]]*(menu)?config[[:space:]]+[A-Z0-9_]+' --include='Kconfig*' . | awk '{print $2}'`,
    ],
    {
      cwd: src,
      encoding: 'utf8',
      maxBuffer: 64 * 1024 * 1024,
    },
  );
  return new Set(
    out
      .split('\n')
      .filter(Boolean)
      .map((s) => `CONFIG_${s}`),
  );
}

function configValues(text: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const line of text.split('\n')) {
    const set = /^(CONFIG_\w+)=(.*)$/.exec(line);
    if (set?.[1] && set[2] !== undefined) m.set(set[1], set[2]);
  }
  return m;
}

describe.skipIf(skip)('kernel fragment on a real kernel tree', () => {
  const { src, check } = prereq as { src: string; check: string };
  let defined: Set<string>;
  beforeAll(() => {
    defined = definedSymbols(src);
  });
  const config = loadAppliance();

  for (const [arch, kernelArch, board] of [
    ['x86_64', 'x86_64', 'x86_64'],
    ['aarch64', 'arm64', 'aarch64-virt'],
  ] as const) {
    describe(arch, () => {
      let mergedPath: string;
      let values: Map<string, string>;
      let fragmentLines: string[];
      beforeAll(() => {
        const work = tempDir(`appliance-kernel-${arch}-`);
        const common = join(work, 'common.fragment');
        const perArch = join(work, `${arch}.fragment`);
        writeFileSync(common, kernelFragment(config, 'common'));
        writeFileSync(perArch, kernelFragment(config, arch));
        cpSync(join(buildroot, 'board/qemu', board, 'linux.config'), join(work, '.config'));
        execFileSync(
          join(src, 'scripts/kconfig/merge_config.sh'),
          ['-m', '-O', work, join(work, '.config'), common, perArch],
          {
            env: { ...process.env, ARCH: kernelArch },
            stdio: 'pipe',
          },
        );
        execFileSync('make', ['-s', '-C', src, `ARCH=${kernelArch}`, `O=${work}`, 'olddefconfig'], {
          stdio: 'pipe',
          timeout: 300_000,
        });
        mergedPath = join(work, '.config');
        values = configValues(readFileSync(mergedPath, 'utf8'));
        fragmentLines = [readFileSync(common, 'utf8'), readFileSync(perArch, 'utf8')].join('\n').split('\n');
      }, 600_000);

      it('keeps every fragment line through olddefconfig', () => {
        const lost: string[] = [];
        for (const line of fragmentLines) {
          const set = /^(CONFIG_\w+)=(.*)$/.exec(line);
          const unset = /^# (CONFIG_\w+) is not set$/.exec(line);
          const symbol = set?.[1] ?? unset?.[1];
          if (!symbol) continue;
          if (!defined.has(symbol)) {
            if (!newerThan612.has(symbol)) lost.push(`${symbol} does not exist in this kernel`);
            continue;
          }
          const got = values.get(symbol);
          if (set && got !== set[2])
            lost.push(`${line} → ${got === undefined ? 'not set' : `${symbol}=${got}`}`);
          if (unset && got !== undefined && got !== 'n') lost.push(`${line} → ${symbol}=${got}`);
        }
        expect(lost).toEqual([]);
      });

      it("passes Docker's check-config.sh (generally necessary, cgroup v2, IPv6 NAT)", () => {
        // check-config.sh exits non-zero when optional items are missing; the assertions below decide.
        const run = spawnSync('bash', [check, mergedPath], {
          encoding: 'utf8',
          env: { ...process.env, NO_COLOR: '1' },
        });
        const out = run.stdout; // NO_COLOR keeps colour escapes out
        const general = out.split('Generally Necessary:')[1]?.split('Optional Features:')[0] ?? '';
        const generalItems = [...general.matchAll(/^- (CONFIG_\w+): (.*)$/gm)];
        expect(generalItems.length).toBeGreaterThan(20);
        expect(generalItems.filter((m) => m[2] !== 'enabled').map((m) => `${m[1]}: ${m[2]}`)).toEqual([]);
        const wanted = [
          // cgroup v2 controllers Docker and runc use
          'CONFIG_CGROUP_PIDS',
          'CONFIG_MEMCG',
          'CONFIG_CGROUP_BPF',
          'CONFIG_BLK_CGROUP',
          'CONFIG_CFS_BANDWIDTH',
          'CONFIG_FAIR_GROUP_SCHED',
          'CONFIG_CPUSETS',
          'CONFIG_SECCOMP_FILTER',
          // IPv6 NAT for containers
          'CONFIG_IP6_NF_IPTABLES',
          'CONFIG_IP6_NF_FILTER',
          'CONFIG_IP6_NF_NAT',
          'CONFIG_IP6_NF_TARGET_MASQUERADE',
          'CONFIG_NF_NAT',
          // boots without an initramfs; systemd credentials from fw_cfg
          'CONFIG_SQUASHFS',
          'CONFIG_SQUASHFS_ZSTD',
          'CONFIG_VIRTIO_BLK',
          'CONFIG_VIRTIO_PCI',
          'CONFIG_EXT4_FS',
          'CONFIG_OVERLAY_FS',
          'CONFIG_FW_CFG_SYSFS',
          'CONFIG_DMI_SYSFS',
        ];
        expect(wanted.filter((s) => values.get(s) !== 'y')).toEqual([]);
        expect(values.get('CONFIG_RT_GROUP_SCHED')).toBeUndefined();
      });
    });
  }
});
