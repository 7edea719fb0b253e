/** `systemd-analyze verify` on the units the overlays ship (ours and the config's `overlays`). */
import { existsSync, lstatSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { hasTool, runCommand } from '../run/index.js';

export interface UnitVerification {
  ran: boolean;
  skipped?: string;
  units: string[];
  problems: string[];
}

/** Units and executables the Buildroot image provides but this host may not. */
const providedByImage = /^(docker|containerd|sshd|systemd-[\w-]+)\.service$|^\/usr\/(s?bin|libexec)\//;

/** Messages that only say the host lacks something the image has. */
function isEnvironmentNoise(line: string): boolean {
  const missingCmd = /Command (\S+) is not executable: No such file or directory/.exec(line);
  if (missingCmd?.[1]) return providedByImage.test(missingCmd[1]);
  const missingUnit = /Unit (\S+) not found/.exec(line);
  if (missingUnit?.[1]) return providedByImage.test(missingUnit[1]);
  return false;
}

/** Where an overlay may hold units: the vendor folder and the admin's. */
const unitDirs = ['usr/lib/systemd/system', 'etc/systemd/system'];

export async function verifyUnits(overlays: readonly string[]): Promise<UnitVerification> {
  if (!(await hasTool('systemd-analyze'))) {
    return {
      ran: false,
      skipped: 'systemd-analyze is not installed (apt-get install systemd)',
      units: [],
      problems: [],
    };
  }
  // A later overlay's unit of the same name replaces an earlier one, as Buildroot copies them.
  const byName = new Map<string, string>();
  for (const overlay of overlays)
    for (const sub of unitDirs) {
      const dir = join(overlay, sub);
      if (!existsSync(dir)) continue;
      // A symbolic link is an enablement or a mask, not a unit to verify.
      for (const f of readdirSync(dir).sort())
        if (/\.(service|mount|socket|timer|path|target)$/.test(f) && lstatSync(join(dir, f)).isFile())
          byName.set(f, join(dir, f));
    }
  const names = [...byName.keys()].sort();
  const units = names.map((n) => byName.get(n) as string);
  if (units.length === 0) return { ran: true, units: [], problems: [] };
  const r = await runCommand('systemd-analyze', ['verify', '--man=no', '--generators=no', ...units], {
    allowFailure: true,
    timeoutMs: 120_000,
    env: { SYSTEMD_LOG_COLOR: '0', SYSTEMD_PAGER: '' },
  });
  const problems = `${r.stdout}\n${r.stderr}`
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.length > 0 && !isEnvironmentNoise(l));
  return { ran: true, units: names, problems };
}
