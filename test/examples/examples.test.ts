/**
 * Examples tier: every example in examples/ is rendered, checked with Buildroot 2026.02.3 on both
 * arches (`appliance check`: symbols kept, check-package, systemd-analyze), and turned into libvirt
 * XML for its arch that libvirt's own schema accepts, as LinuxKit's CI builds its examples. The
 * examples are found afresh, so a new one is covered without touching this file. Only the
 * Buildroot check skips (saying why) when the tree is absent.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, it } from 'vitest';
import { type ApplianceConfig, arches, defconfigName, loadAppliance } from '../../src/config/index.js';
import {
  type CliResult,
  commandExists,
  runCliAsync,
  skipReason,
  spawnCollect,
  tempDir,
  testBuildroot,
} from '../helpers.js';
import { exampleFiles, examplesDir, filesUnder } from './list.js';

const { dir: buildroot, skip: noBuildroot } = testBuildroot('Examples tier (appliance check)');
const noValidator = skipReason(
  'Examples tier (virt-xml-validate)',
  commandExists('virt-xml-validate') ? undefined : 'virt-xml-validate is not installed (libvirt-clients)',
);

/** At most two commands at a time: the machine has two cores, and check runs make. */
const slots = { free: 2, waiting: [] as (() => void)[] };
async function limited<T>(work: () => Promise<T>): Promise<T> {
  if (slots.free === 0) await new Promise<void>((go) => slots.waiting.push(go));
  else slots.free--;
  try {
    return await work();
  } finally {
    const next = slots.waiting.shift();
    if (next) next();
    else slots.free++;
  }
}

const cli = (args: string[]): Promise<CliResult> => limited(() => runCliAsync(args));

function ok(r: CliResult, what: string): void {
  if (r.status !== 0) throw new Error(`${what} exited ${r.status}:\n${r.stderr}${r.stdout.slice(-3000)}`);
}

/** What a symbol from buildroot.symbols looks like in the rendered defconfig. */
function defconfigLine(symbol: string, value: boolean | number | string): string {
  if (value === false || value === 'n') return `# ${symbol} is not set`;
  if (value === true) return `${symbol}=y`;
  return typeof value === 'string' && !/^([ym]|-?\d+|0x[0-9a-fA-F]+)$/.test(value)
    ? `${symbol}="${value}"`
    : `${symbol}=${value}`;
}

async function validateXml(file: string): Promise<void> {
  const r = await spawnCollect('virt-xml-validate', [file]);
  if (r.status !== 0) throw new Error(`virt-xml-validate ${file}: ${r.stdout}${r.stderr}`);
}

function domainFacts(xml: string): { name?: string; arch?: string; type?: string } {
  return {
    name: /<name>([^<]*)<\/name>/.exec(xml)?.[1],
    arch: /<type arch="([^"]+)"/.exec(xml)?.[1],
    type: /<domain type="([^"]+)"/.exec(xml)?.[1],
  };
}

describe.concurrent('examples/', () => {
  for (const file of exampleFiles()) {
    const path = join(examplesDir, file);
    const config: ApplianceConfig = loadAppliance(path);

    it(`${file}: renders a tree with its symbols and overlays in both defconfigs`, async ({ expect }) => {
      const out = join(tempDir('appliance-example-'), 'external');
      ok(await cli(['render', '--config', path, '--out', out]), `render ${file}`);
      for (const arch of arches) {
        const defconfig = readFileSync(join(out, 'configs', defconfigName(config, arch)), 'utf8');
        const lines = defconfig.split('\n');
        for (const [symbol, value] of Object.entries(config.buildroot.symbols))
          expect(lines, `${arch}: ${symbol}`).toContain(defconfigLine(symbol, value));
        // The folders Buildroot copies, in order: the appliance's overlay, its architecture's
        // (the binfmt.d entries of multiarch.emulate), then each extra one.
        const overlays = /^BR2_ROOTFS_OVERLAY="([^"]*)"$/m
          .exec(defconfig)?.[1]
          ?.split(' ')
          .map((d) => d.replace(`$(BR2_EXTERNAL_${config.externalName}_PATH)`, out))
          .filter((d) => d !== join(out, `board/rootfs-overlay-${arch}`));
        expect(overlays).toHaveLength(1 + config.overlayDirs.length);
        config.overlayDirs.forEach((dir, i) => {
          const copy = overlays?.[i + 1] ?? '';
          for (const f of filesUnder(dir))
            expect(readFileSync(join(copy, relative(dir, f))), relative(examplesDir, f)).toEqual(
              readFileSync(f),
            );
        });
      }
    });

    it.skipIf(noBuildroot)(
      `${file}: appliance check passes with Buildroot 2026.02.3 on both arches`,
      async ({ expect }) => {
        const r = await cli(['check', '--config', path, '--buildroot', buildroot, '--json']);
        ok(r, `check ${file}`);
        const report = JSON.parse(r.stdout);
        expect(report.ok).toBe(true);
        expect(report.defconfigs.map((d: { arch: string }) => d.arch)).toEqual([...arches]);
        for (const d of report.defconfigs) {
          expect(d.problems).toEqual([]);
          expect(d.requested).toBeGreaterThanOrEqual(30 + Object.keys(config.buildroot.symbols).length / 2);
        }
        expect(report.packages.ran).toBe(true);
        expect(report.units.ran).toBe(true);
      },
    );

    it(`${file}: libvirt render and libvirt domain give ${config.arch} XML that libvirt accepts`, async ({
      expect,
    }) => {
      const dir = tempDir('appliance-example-libvirt-');
      const folder = join(dir, 'libvirt');
      const domain = join(dir, 'domain.xml');
      ok(await cli(['libvirt', 'render', '--config', path, '--out', folder]), `libvirt render ${file}`);
      // TCG: the one accelerator every CI machine has (an explicit choice, so no KVM probe runs).
      ok(
        await cli(['libvirt', 'domain', '--config', path, '--accel', 'tcg', '--out', domain]),
        `libvirt domain ${file}`,
      );
      const rendered = readdirSync(folder)
        .filter((f) => f.endsWith('.xml'))
        .sort();
      expect(rendered).toEqual(
        [`${config.name}-isolate.nwfilter.xml`, `${config.name}.kvm.xml`, `${config.name}.tcg.xml`].sort(),
      );
      for (const [xmlFile, type] of [
        [join(folder, `${config.name}.kvm.xml`), 'kvm'],
        [join(folder, `${config.name}.tcg.xml`), 'qemu'],
        [domain, 'qemu'],
      ] as const) {
        expect(domainFacts(readFileSync(xmlFile, 'utf8')), xmlFile).toEqual({
          name: config.name,
          arch: config.arch,
          type,
        });
      }
      if (!noValidator)
        for (const xml of [...rendered.map((f) => join(folder, f)), domain]) await validateXml(xml);
    });
  }
});
