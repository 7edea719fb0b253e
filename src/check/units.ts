/** `systemd-analyze verify` on the units the overlay ships. */
import { existsSync, readdirSync } from 'node:fs';
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

export async function verifyUnits(overlay: string): Promise<UnitVerification> {
  if (!(await hasTool('systemd-analyze'))) {
    return {
      ran: false,
      skipped: 'systemd-analyze is not installed (apt-get install systemd)',
      units: [],
      problems: [],
    };
  }
  const dir = join(overlay, 'usr', 'lib', 'systemd', 'system');
  const units = existsSync(dir)
    ? readdirSync(dir)
        .filter((f) => /\.(service|mount|socket|timer|path|target)$/.test(f))
        .sort()
        .map((f) => join(dir, f))
    : [];
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
  return { ran: true, units: units.map((u) => u.slice(dir.length + 1)), problems };
}
