import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The folder holding runner-appliance's package.json, whether running from src/ or dist/. */
export function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'appliance.yaml'))) return dir;
    dir = dirname(dir);
  }
  throw new Error('cannot locate the runner-appliance package root (package.json + appliance.yaml)');
}

/** The embedded default appliance definition. */
export function defaultConfigPath(): string {
  return join(packageRoot(), 'appliance.yaml');
}

/** Cache for heavy artifacts: Buildroot trees, kernel sources, stand-in images. */
export function cacheDir(): string {
  const xdg = process.env.XDG_CACHE_HOME;
  return join(xdg && xdg.length > 0 ? xdg : join(homedir(), '.cache'), 'runner-appliance');
}
