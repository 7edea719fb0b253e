/**
 * The kernel headers series follows kernel.version: Buildroot builds the headers from the kernel
 * it builds and must be told that kernel's series (BR2_PACKAGE_HOST_LINUX_HEADERS_CUSTOM_<M>_<m>),
 * or the build fails late ("Incorrect selection of kernel headers"). A series Buildroot does not
 * offer is a config error. The Buildroot tier checks our list against the real tree and runs
 * `appliance check` on a second series.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  kernelHeaderSeries,
  kernelHeadersSymbol,
  loadAppliance,
  parseAppliance,
} from '../../src/config/index.js';
import { defconfigSymbols } from '../../src/render/index.js';
import { repoRoot, runCli, tempDir, testBuildroot } from '../helpers.js';

const headersSymbols = (yaml: string): string[] =>
  defconfigSymbols(parseAppliance(yaml, 'test.yaml'), 'x86_64', false)
    .filter(([symbol]) => symbol.startsWith('BR2_PACKAGE_HOST_LINUX_HEADERS_'))
    .map(([symbol, value]) => `${symbol}=${value}`);

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
function configFile(yaml: string): string {
  const dir = tempDir('appliance-headers-');
  dirs.push(dir);
  writeFileSync(join(dir, 'appliance.yaml'), yaml);
  return join(dir, 'appliance.yaml');
}

describe('kernel headers series', () => {
  it('is the series of kernel.version', () => {
    expect(kernelHeadersSymbol('6.18.7')).toBe('BR2_PACKAGE_HOST_LINUX_HEADERS_CUSTOM_6_18');
    expect(kernelHeadersSymbol('6.12.91')).toBe('BR2_PACKAGE_HOST_LINUX_HEADERS_CUSTOM_6_12');
    expect(kernelHeadersSymbol('5.10')).toBe('BR2_PACKAGE_HOST_LINUX_HEADERS_CUSTOM_5_10');
    for (const v of ['6.20.1', '6.99', '7.0.1', '2.6.32']) expect(kernelHeadersSymbol(v)).toBe(undefined);
  });

  it('is rendered from kernel.version, for the default and for a second series', () => {
    const defaultKernel = loadAppliance(join(repoRoot, 'appliance.yaml')).kernel.version;
    const [major, minor] = defaultKernel.split('.');
    expect(headersSymbols('{}\n')).toEqual([`BR2_PACKAGE_HOST_LINUX_HEADERS_CUSTOM_${major}_${minor}=y`]);
    expect(headersSymbols('kernel:\n  version: "6.12.91"\n')).toEqual([
      'BR2_PACKAGE_HOST_LINUX_HEADERS_CUSTOM_6_12=y',
    ]);
    // The committed tree is the default config's: its defconfigs name the default series.
    for (const arch of ['x86_64', 'aarch64']) {
      const text = readFileSync(
        join(repoRoot, 'external/configs', `runner_appliance_${arch}_defconfig`),
        'utf8',
      );
      expect(text.match(/^BR2_PACKAGE_HOST_LINUX_HEADERS_CUSTOM_\w+=y$/gm)).toEqual([
        `BR2_PACKAGE_HOST_LINUX_HEADERS_CUSTOM_${major}_${minor}=y`,
      ]);
    }
  });

  it('refuses a series Buildroot does not offer: one line, exit 2, nothing rendered', () => {
    const file = configFile('kernel:\n  version: "7.1.2"\n');
    const v = runCli(['validate', '-c', file]);
    expect(v.status).toBe(2);
    expect(v.stderr.trim().split('\n')).toHaveLength(1);
    expect(v.stderr).toMatch(
      /^error: .*appliance\.yaml:2: kernel\.version: Buildroot 2026\.02\.3 knows no kernel headers series 7\.1: pick a kernel\.version of series 3\.0 to 6\.19/,
    );
    const out = join(file, '..', 'external');
    const r = runCli(['render', '-c', file, '--out', out]);
    expect(r.status).toBe(2);
    expect(() => readFileSync(join(out, 'external.desc'))).toThrow();
  });
});

// ---------------------------------------------------------------------------------------------
// Buildroot tier.

const { dir: buildroot, skip } = testBuildroot('kernel headers Buildroot tier');

describe.skipIf(skip)('kernel headers with Buildroot 2026.02.3', () => {
  const configIn = () => readFileSync(join(buildroot, 'package/linux-headers/Config.in.host'), 'utf8');

  it('offers exactly the series our list names', () => {
    const offered = [...configIn().matchAll(/^config BR2_PACKAGE_HOST_LINUX_HEADERS_CUSTOM_(\d+)_(\d+)$/gm)]
      .map((m) => `${m[1]}.${m[2]}`)
      .sort((a, b) => a.localeCompare(b, 'en', { numeric: true }));
    expect(offered).toEqual(kernelHeaderSeries);
  });

  it('`appliance check` keeps the headers series of a 6.12 kernel', () => {
    // A 6.12 version Buildroot itself knows (its 6.12 kernel headers).
    const v612 = /^\s*default "(6\.12\.\d+)"\s+if BR2_KERNEL_HEADERS_6_12$/m.exec(configIn())?.[1];
    expect(v612).toMatch(/^6\.12\.\d+$/);
    const file = configFile(`kernel:\n  version: "${v612}"\n`);
    const r = runCli(['check', '-c', file, '--buildroot', buildroot, '--arch', 'x86_64', '--json']);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(JSON.parse(r.stdout).defconfigs[0].problems).toEqual([]);

    // And the resolved .config says so: 6.12 chosen, 6.18 not.
    const tree = join(file, '..', 'external');
    expect(runCli(['render', '-c', file, '--out', tree]).status).toBe(0);
    const out = join(file, '..', 'o');
    execFileSync(
      'make',
      ['-s', '-C', buildroot, `O=${out}`, `BR2_EXTERNAL=${tree}`, 'runner_appliance_x86_64_defconfig'],
      { env: { ...process.env, BR2_DL_DIR: join(out, 'dl') }, stdio: 'ignore' },
    );
    const dotConfig = readFileSync(join(out, '.config'), 'utf8');
    expect(dotConfig).toMatch(/^BR2_PACKAGE_HOST_LINUX_HEADERS_CUSTOM_6_12=y$/m);
    expect(dotConfig).toMatch(/^BR2_TOOLCHAIN_HEADERS_AT_LEAST="6\.12"$/m);
    expect(dotConfig).not.toMatch(/^BR2_PACKAGE_HOST_LINUX_HEADERS_CUSTOM_6_18=y$/m);
  }, 300_000);
});
