/**
 * CycloneDX SBOM from Buildroot's `make show-info`: unit tests on a hand-written show-info, and a
 * Buildroot tier that runs the real `show-info` (no build, ~10 s) and validates the document
 * against the official CycloneDX 1.6 JSON schema, offline.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { Ajv, type ErrorObject } from 'ajv';
import ajvFormats from 'ajv-formats';
import parseSpdxExpression from 'spdx-expression-parse';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildrootVersionOf, cachedBuildrootDir } from '../../src/buildroot/index.js';
import {
  canonicalConfig,
  configSha256,
  mapBuildrootLicenses,
  type SbomMeta,
  type ShowInfoEntry,
  sbomFromShowInfo,
} from '../../src/buildroot/sbom.js';
import { loadAppliance } from '../../src/config/index.js';
import { externalPackages } from '../../src/render/packages.js';
import { buildrootPackageVersion, repoRoot, runCliAsync, skipReason, tempDir, topLevel } from '../helpers.js';

// ---------------------------------------------------------------------------------------------
// Offline validator: the official schemas shipped by @cyclonedx/cyclonedx-library.

const require = createRequire(import.meta.url);
const schemaDir = join(
  dirname(require.resolve('@cyclonedx/cyclonedx-library/package.json')),
  'res',
  'schema',
);

function loadSchema(file: string): Record<string, unknown> {
  const schema = JSON.parse(readFileSync(join(schemaDir, file), 'utf8')) as Record<string, unknown>;
  // bom-1.6 refers to its siblings by their SNAPSHOT file names: register them under those.
  schema.$id = `http://cyclonedx.org/schema/${file}`;
  return schema;
}

const spdxSchema = loadSchema('spdx.SNAPSHOT.schema.json');
const officialSpdxIds = new Set(spdxSchema.enum as string[]);

const ajv = new Ajv({ allErrors: true, strict: false });
// ajv-formats is CommonJS; `.default` is the plugin both at run time and for NodeNext types.
ajvFormats.default(ajv);
// JSON-schema formats that ajv-formats lacks (draft 2019): checked the way URL/e-mail parsers would.
ajv.addFormat('iri-reference', (s: string) => {
  if (/[\s<>"{}|\\^`]/u.test(s)) return false;
  try {
    new URL(s, 'http://base.invalid/');
    return true;
  } catch {
    return false;
  }
});
ajv.addFormat('idn-email', /^[^\s@]+@[^\s@]+$/u);
ajv.addSchema(spdxSchema);
ajv.addSchema(loadSchema('jsf-0.82.SNAPSHOT.schema.json'));
const validateBom = ajv.compile(loadSchema('bom-1.6.SNAPSHOT.schema.json'));

function schemaErrors(doc: unknown): ErrorObject[] {
  return validateBom(doc) ? [] : [...(validateBom.errors ?? [])];
}

// ---------------------------------------------------------------------------------------------
// Unit tier.

const meta: SbomMeta = {
  applianceName: 'runner-appliance',
  applianceVersion: '1.0.0',
  arch: 'x86_64',
  buildrootVersion: '2026.02.3',
  configSha256: 'a'.repeat(64),
};

function pkg(
  name: string,
  version: string,
  more: Partial<ShowInfoEntry> & { type?: ShowInfoEntry['type'] } = {},
): ShowInfoEntry {
  return { type: 'target', name, virtual: false, version, licenses: 'MIT', dependencies: [], ...more };
}

const showInfo: Record<string, ShowInfoEntry> = {
  'docker-engine': pkg('docker-engine', '28.3.3', {
    licenses: 'Apache-2.0 , vendored dependencies licenses probably not listed',
    downloads: [
      {
        source: 'docker-engine-28.3.3-go2.tar.gz',
        uris: [
          'https+https://github.com/moby/moby/archive/v28.3.3',
          'https|urlencode+https://sources.buildroot.net/docker-engine',
        ],
      },
    ],
    'cpe-id': 'cpe:2.3:a:mobyproject:moby:28.3.3:-:*:*:*:*:*:*',
    dependencies: ['host-go', 'systemd', 'toolchain', 'skeleton'],
  }),
  systemd: pkg('systemd', '258.7', {
    licenses: 'LGPL-2.1+, GPL-2.0+ (udev), BSD-2-Clause (eBPF instruction mini library)',
    dependencies: ['host-meson', 'openssl', 'toolchain'],
  }),
  linux: pkg('linux', '6.18.7', {
    licenses: 'GPL-2.0',
    downloads: [
      { source: 'linux-6.18.7.tar.xz', uris: ['https+https://cdn.kernel.org/pub/linux/kernel/v6.x'] },
    ],
    'cpe-id': 'cpe:2.3:o:linux:linux_kernel:6.18.7:-:*:*:*:*:*:*',
    dependencies: ['host-kmod', 'toolchain'],
  }),
  libopenssl: pkg('libopenssl', '3.6.2', {
    licenses: 'Apache-2.0',
    provides: ['openssl'],
    dependencies: ['toolchain'],
  }),
  glibc: pkg('glibc', '2.42-67-g4ebd33d', {
    licenses: 'GPL-2.0+ (programs), LGPL-2.1+, BSD-3-Clause, MIT (library)',
    downloads: [
      { source: 'glibc-2.42-67-g4ebd33d-git4.tar.gz', uris: ['git+https://sourceware.org/git/glibc.git'] },
    ],
  }),
  'skeleton-init-common': pkg('skeleton-init-common', '', { licenses: 'unknown' }),
  // Virtual packages: never components, looked through for dependencies.
  openssl: { type: 'target', name: 'openssl', virtual: true, dependencies: ['libopenssl', 'toolchain'] },
  toolchain: {
    type: 'target',
    name: 'toolchain',
    virtual: true,
    dependencies: ['toolchain-buildroot', 'host-tar'],
  },
  'toolchain-buildroot': {
    type: 'target',
    name: 'toolchain-buildroot',
    virtual: true,
    dependencies: ['glibc'],
  },
  skeleton: { type: 'target', name: 'skeleton', virtual: true, dependencies: ['skeleton-init-common'] },
  // Host packages: skipped unless includeHost.
  'host-go': { type: 'host', name: 'go', virtual: true, dependencies: ['host-go-src'] },
  'host-go-src': pkg('go-src', '1.26.3', { type: 'host', licenses: 'BSD-3-Clause' }),
  'host-meson': pkg('meson', '1.10.1', { type: 'host', licenses: 'Apache-2.0' }),
  'host-kmod': pkg('kmod', '33', { type: 'host', licenses: 'LGPL-2.1+ (library), GPL-2.0+ (tools)' }),
  'host-tar': pkg('tar', '1.35', { type: 'host', licenses: 'GPL-3.0+' }),
  'rootfs-squashfs': { type: 'rootfs', image_name: 'rootfs.squashfs', dependencies: ['host-tar'] },
};

interface Component {
  type: string;
  'bom-ref': string;
  name: string;
  version?: string;
  scope?: string;
  licenses?: unknown[];
  cpe?: string;
  purl?: string;
  externalReferences?: { type: string; url: string }[];
}
interface Bom {
  serialNumber: string;
  metadata: Record<string, unknown> & { component: Component };
  components: Component[];
  dependencies: { ref: string; dependsOn: string[] }[];
}

const asBom = (doc: Record<string, unknown>): Bom => doc as unknown as Bom;
const byName = (bom: Bom, name: string): Component | undefined => bom.components.find((c) => c.name === name);
const depsOf = (bom: Bom, ref: string): string[] | undefined =>
  bom.dependencies.find((d) => d.ref === ref)?.dependsOn;

describe('mapBuildrootLicenses', () => {
  const id = (i: string) => ({ license: { id: i, acknowledgement: 'declared' } });
  const name = (n: string) => ({ license: { name: n, acknowledgement: 'declared' } });
  const expr = (e: string) => ({ expression: e, acknowledgement: 'declared' });

  it.each([
    ['MIT', [id('MIT')]],
    ['GPL-3.0+', [id('GPL-3.0-or-later')]],
    ['GPL-2.0', [id('GPL-2.0-only')]],
    ['LGPL-2.1+, GPL-2.0+ (udev)', [id('LGPL-2.1-or-later'), id('GPL-2.0-or-later')]],
    ['Apache-2.0 , vendored dependencies licenses probably not listed', [id('Apache-2.0')]],
    [
      'Apache-2.0, LGPL-2.1 (libseccomp) , vendored dependencies licenses probably not listed',
      [id('Apache-2.0'), id('LGPL-2.1-only')],
    ],
    ['GPL-2.0+ (programs), GPL-2.0+ (tools)', [id('GPL-2.0-or-later')]],
    ['Public Domain, BSD-0-Clause', [name('Public Domain'), id('0BSD')]],
    ['GPL-2.0, bzip2-1.0.4', [id('GPL-2.0-only'), name('bzip2-1.0.4')]],
    ['GPL-3.0-with-GCC-exception', [id('GPL-3.0-with-GCC-exception')]],
    ['Apache-2.0 or MIT', [expr('Apache-2.0 OR MIT')]],
    ['GPL-2.0+ or LGPL-3.0+ (library)', [expr('GPL-2.0-or-later OR LGPL-3.0-or-later')]],
    // "(library, tools)" holds a comma: still one entry.
    [
      'AFL-2.1 or GPL-2.0+ (library, tools), GPL-2.0+ (tools)',
      [expr('(AFL-2.1 OR GPL-2.0-or-later) AND GPL-2.0-or-later')],
    ],
    ['GPL-2.0 with Linux-syscall-note', [expr('GPL-2.0-only WITH Linux-syscall-note')]],
    ['MPL-1.1+', [expr('MPL-1.1+')]],
    ['GPL-3.0+, libiberty LGPL-2.1+', [id('GPL-3.0-or-later'), name('libiberty LGPL-2.1+')]],
    ['BSD-3-Clause or GPL-2.0, Public domain', [name('BSD-3-Clause or GPL-2.0'), name('Public domain')]],
    ['MIT with advertising clause', [name('MIT with advertising clause')]],
    // SPDX's whole list (through @cyclonedx/cyclonedx-library and spdx-expression-parse), not a
    // hand-picked part of it: these were names while the ids were a table of ~120.
    ['unrar, GPL-2.0+', [id('UnRAR'), id('GPL-2.0-or-later')]],
    ['BSD-2-Clause, BSD-Protection (core.c)', [id('BSD-2-Clause'), id('BSD-Protection')]],
    ['Artistic-1.0-Perl or GPL-1.0+', [expr('Artistic-1.0-Perl OR GPL-1.0-or-later')]],
    ['GPL-2.0 with freertos-exception-2.0', [expr('GPL-2.0-only WITH freertos-exception-2.0')]],
    // An exception is not a license, and a license is not an exception.
    ['Autoconf-exception-2.0', [name('Autoconf-exception-2.0')]],
    ['GPL-2.0 with MIT', [name('GPL-2.0 with MIT')]],
    ['unknown', []],
    ['', []],
  ])('%j', (input, expected) => {
    expect(mapBuildrootLicenses(input)).toEqual(expected);
  });
});

describe('sbomFromShowInfo (hand-written show-info)', () => {
  const doc = sbomFromShowInfo(showInfo, meta);
  const bom = asBom(doc);

  it('is a CycloneDX 1.6 document that the official schema accepts', () => {
    expect(doc.bomFormat).toBe('CycloneDX');
    expect(doc.specVersion).toBe('1.6');
    expect(doc.version).toBe(1);
    expect(bom.serialNumber).toMatch(
      /^urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/,
    );
    expect(schemaErrors(doc)).toEqual([]);
  });

  it('lists target packages only: no virtual, host or rootfs entries', () => {
    expect(bom.components.map((c) => c['bom-ref'])).toEqual([
      'buildroot:docker-engine@28.3.3',
      'buildroot:glibc@2.42-67-g4ebd33d',
      'buildroot:libopenssl@3.6.2',
      'buildroot:linux@6.18.7',
      'buildroot:skeleton-init-common',
      'buildroot:systemd@258.7',
    ]);
    expect(bom.components.every((c) => c.scope === 'required')).toBe(true);
    expect(byName(bom, 'skeleton-init-common')).not.toHaveProperty('version');
    expect(byName(bom, 'skeleton-init-common')).not.toHaveProperty('licenses');
  });

  it('adds host packages with scope "excluded" when asked', () => {
    const withHost = asBom(sbomFromShowInfo(showInfo, meta, { includeHost: true }));
    const host = withHost.components.filter((c) => c.scope === 'excluded').map((c) => c['bom-ref']);
    expect(host).toEqual([
      'buildroot:host-go-src@1.26.3',
      'buildroot:host-kmod@33',
      'buildroot:host-meson@1.10.1',
      'buildroot:host-tar@1.35',
    ]);
    expect(withHost.components.find((c) => c['bom-ref'] === 'buildroot:host-tar@1.35')?.name).toBe('tar');
    // host-go is virtual: docker-engine depends on what provides it.
    expect(depsOf(withHost, 'buildroot:docker-engine@28.3.3')).toContain('buildroot:host-go-src@1.26.3');
    expect(schemaErrors(withHost)).toEqual([]);
  });

  it('fills type, cpe, purl and download references; never hashes', () => {
    const docker = byName(bom, 'docker-engine');
    expect(docker?.type).toBe('application');
    expect(docker?.cpe).toBe('cpe:2.3:a:mobyproject:moby:28.3.3:-:*:*:*:*:*:*');
    expect(docker?.purl).toBe('pkg:github/moby/moby@v28.3.3');
    expect(docker?.externalReferences).toEqual([
      {
        type: 'distribution',
        url: 'https://github.com/moby/moby/archive/v28.3.3/docker-engine-28.3.3-go2.tar.gz',
      },
      {
        type: 'distribution',
        url: 'https://sources.buildroot.net/docker-engine/docker-engine-28.3.3-go2.tar.gz',
      },
    ]);
    expect(byName(bom, 'linux')?.type).toBe('operating-system');
    expect(byName(bom, 'linux')).not.toHaveProperty('purl');
    expect(byName(bom, 'libopenssl')?.type).toBe('library');
    expect(byName(bom, 'glibc')?.type).toBe('library');
    expect(byName(bom, 'glibc')?.externalReferences).toEqual([
      { type: 'vcs', url: 'https://sourceware.org/git/glibc.git' },
    ]);
    expect(JSON.stringify(doc)).not.toContain('"hashes"');
  });

  it('describes the appliance and the inputs in metadata', () => {
    expect(bom.metadata.component).toMatchObject({
      type: 'operating-system',
      name: 'runner-appliance',
      version: '1.0.0',
    });
    expect(bom.metadata).not.toHaveProperty('timestamp');
    const tools = (bom.metadata.tools as { components: { name: string }[] }).components.map((t) => t.name);
    expect(tools).toEqual(['runner-appliance', 'buildroot']);
    expect(bom.metadata.properties).toEqual(
      expect.arrayContaining([
        { name: 'runner-appliance:arch', value: 'x86_64' },
        { name: 'runner-appliance:buildroot:version', value: '2026.02.3' },
        { name: 'runner-appliance:config-sha256', value: 'a'.repeat(64) },
      ]),
    );
    const stamped = asBom(sbomFromShowInfo(showInfo, { ...meta, timestamp: '2026-05-01T12:00:00Z' }));
    expect(stamped.metadata.timestamp).toBe('2026-05-01T12:00:00Z');
  });

  it('is deterministic: same input, byte-identical output; other input, other serial number', () => {
    const reordered = Object.fromEntries(Object.entries(showInfo).reverse());
    expect(JSON.stringify(sbomFromShowInfo(reordered, { ...meta }))).toBe(JSON.stringify(doc));
    const other = asBom(sbomFromShowInfo(showInfo, { ...meta, configSha256: 'b'.repeat(64) }));
    expect(other.serialNumber).not.toBe(bom.serialNumber);
    const stamped = asBom(sbomFromShowInfo(showInfo, { ...meta, timestamp: '2026-05-01T12:00:00Z' }));
    expect(stamped.serialNumber).not.toBe(bom.serialNumber);
  });

  it('records dependencies between included components, looking through virtual packages', () => {
    expect(depsOf(bom, 'buildroot:docker-engine@28.3.3')).toEqual([
      'buildroot:glibc@2.42-67-g4ebd33d', // via toolchain -> toolchain-buildroot
      'buildroot:skeleton-init-common', // via skeleton
      'buildroot:systemd@258.7',
    ]);
    // openssl is virtual: systemd depends on libopenssl; host-meson is not listed.
    expect(depsOf(bom, 'buildroot:systemd@258.7')).toEqual([
      'buildroot:glibc@2.42-67-g4ebd33d',
      'buildroot:libopenssl@3.6.2',
    ]);
    expect(depsOf(bom, 'buildroot:glibc@2.42-67-g4ebd33d')).toEqual([]);
    // The appliance depends on every component; every ref in the graph is a known bom-ref.
    expect(depsOf(bom, 'appliance:runner-appliance@1.0.0')).toEqual(bom.components.map((c) => c['bom-ref']));
    const refs = new Set([...bom.components.map((c) => c['bom-ref']), 'appliance:runner-appliance@1.0.0']);
    for (const d of bom.dependencies) {
      expect(refs.has(d.ref)).toBe(true);
      for (const r of d.dependsOn) expect(refs.has(r)).toBe(true);
    }
  });
});

describe('canonicalConfig (the input of config-sha256)', () => {
  // Two .config files as `make defconfig` writes them from the same defconfig, once per scratch folder.
  const dotConfig = (scratch: string, extra = ''): string =>
    [
      '#',
      '# Automatically generated file; DO NOT EDIT.',
      '#',
      `BR2_EXTERNAL_RUNNER_APPLIANCE_PATH="${scratch}/external"`,
      `BR2_EXTERNAL_RUNNER_APPLIANCE_VERSION="${scratch.endsWith('A') ? '-gdb85c2f-dirty' : ''}"`,
      'BR2_x86_64=y',
      `BR2_DEFCONFIG="${scratch}/defconfig"`,
      '# BR2_PACKAGE_HOST_LINUX_HEADERS_CUSTOM_6_12 is not set',
      'BR2_PACKAGE_HOST_LINUX_HEADERS_CUSTOM_6_18=y',
      `BR2_ROOTFS_OVERLAY="${scratch}/external/board/overlay"`,
      `# runner-appliance: ... (in ${scratch}/external)`,
      extra,
    ].join('\n');

  it('is the same wherever the scratch copy was written, and sorted by symbol', () => {
    const a = dotConfig('/tmp/appliance-scratch-AAAAAA');
    const b = dotConfig('/var/tmp/appliance-scratch-bbbbbb');
    expect(canonicalConfig(a)).toBe(canonicalConfig(b));
    expect(configSha256(a)).toBe(configSha256(b));
    expect(canonicalConfig(a)).toBe(
      [
        'BR2_PACKAGE_HOST_LINUX_HEADERS_CUSTOM_6_12=n',
        'BR2_PACKAGE_HOST_LINUX_HEADERS_CUSTOM_6_18=y',
        'BR2_ROOTFS_OVERLAY="$(BR2_EXTERNAL_RUNNER_APPLIANCE_PATH)/board/overlay"',
        'BR2_x86_64=y',
        '',
      ].join('\n'),
    );
  });

  it('changes with anything that changes the image, and the text and the record agree', () => {
    const a = dotConfig('/tmp/x');
    expect(configSha256(dotConfig('/tmp/x', 'BR2_PACKAGE_HTOP=y'))).not.toBe(configSha256(a));
    expect(configSha256(a.replace('CUSTOM_6_18=y', 'CUSTOM_6_18=n'))).not.toBe(configSha256(a));
    expect(
      configSha256({
        BR2_EXTERNAL_RUNNER_APPLIANCE_PATH: '"/elsewhere/external"',
        BR2_DEFCONFIG: '"/elsewhere/defconfig"',
        BR2_x86_64: 'y',
        BR2_PACKAGE_HOST_LINUX_HEADERS_CUSTOM_6_12: 'n',
        BR2_PACKAGE_HOST_LINUX_HEADERS_CUSTOM_6_18: 'y',
        BR2_ROOTFS_OVERLAY: '"/elsewhere/external/board/overlay"',
      }),
    ).toBe(configSha256(a));
  });
});

describe('the schema validator', () => {
  const good = sbomFromShowInfo(showInfo, meta);
  const broken = (mutate: (bom: Bom) => void): unknown => {
    const copy = JSON.parse(JSON.stringify(good)) as Bom;
    mutate(copy);
    return copy;
  };

  it('rejects a component without a name', () => {
    const errors = schemaErrors(
      broken((b) => {
        delete (b.components[0] as Partial<Component>).name;
      }),
    );
    expect(
      errors.some((e) => e.instancePath === '/components/0' && e.params.missingProperty === 'name'),
    ).toBe(true);
  });

  it('rejects an unknown SPDX id, a bad serial number and an unknown component type', () => {
    expect(
      schemaErrors(
        broken((b) => {
          b.components[0] = {
            ...(b.components[0] as Component),
            licenses: [{ license: { id: 'GPL-2.0+-ish' } }],
          };
        }),
      ).length,
    ).toBeGreaterThan(0);
    expect(
      schemaErrors(
        broken((b) => {
          b.serialNumber = 'not-a-uuid';
        }),
      ).some((e) => e.instancePath === '/serialNumber'),
    ).toBe(true);
    expect(
      schemaErrors(
        broken((b) => {
          (b.components[0] as Component).type = 'package';
        }),
      ).some((e) => e.instancePath === '/components/0/type'),
    ).toBe(true);
  });
});

// ---------------------------------------------------------------------------------------------
// Buildroot tier: the real show-info of the x86_64 appliance defconfig.

const buildroot = process.env.APPLIANCE_BUILDROOT ?? cachedBuildrootDir('2026.02.3');

const skip = skipReason(
  'SBOM tier',
  buildrootVersionOf(buildroot) === '2026.02.3'
    ? undefined
    : `no Buildroot 2026.02.3 at ${buildroot} (run 'appliance buildroot fetch' or set APPLIANCE_BUILDROOT)`,
);

describe.skipIf(skip)('SBOM of the x86_64 appliance from Buildroot 2026.02.3 show-info', () => {
  let out = '';
  let showInfoReal: Record<string, ShowInfoEntry> = {};
  let realMeta: SbomMeta;
  let before = '';

  beforeAll(() => {
    out = tempDir('appliance-sbom-');
    before = topLevel(buildroot);
    const external = join(repoRoot, 'external');
    // O= and BR2_DL_DIR always point into the temporary folder: the Buildroot tree stays read-only.
    const make = (target: string): string =>
      execFileSync(
        'make',
        ['-s', '--no-print-directory', '-C', buildroot, `BR2_EXTERNAL=${external}`, `O=${out}`, target],
        {
          encoding: 'utf8',
          env: { ...process.env, BR2_DL_DIR: join(out, 'dl') },
          maxBuffer: 64 * 1024 * 1024,
          stdio: ['ignore', 'pipe', 'pipe'],
        },
      );
    make('runner_appliance_x86_64_defconfig');
    showInfoReal = JSON.parse(make('show-info')) as Record<string, ShowInfoEntry>;
    realMeta = {
      applianceName: 'runner-appliance',
      arch: 'x86_64',
      buildrootVersion: buildrootVersionOf(buildroot) ?? 'unknown',
      configSha256: configSha256(readFileSync(join(out, '.config'), 'utf8')),
    };
  });

  afterAll(() => {
    if (out) rmSync(out, { recursive: true, force: true });
  });

  it('validates against the CycloneDX 1.6 schema and lists the appliance payload with its versions', () => {
    const doc = sbomFromShowInfo(showInfoReal, realMeta);
    expect(schemaErrors(doc)).toEqual([]);
    const bom = asBom(doc);
    const versions = Object.fromEntries(bom.components.map((c) => [c.name, c.version]));
    // The versions the package definitions name: Buildroot's .mk files, our own packages, our config.
    const kernel = loadAppliance(join(repoRoot, 'appliance.yaml')).kernel.version;
    const docker = buildrootPackageVersion(buildroot, 'docker-engine');
    expect(versions).toMatchObject({
      'docker-engine': docker,
      containerd: buildrootPackageVersion(buildroot, 'containerd'),
      runc: buildrootPackageVersion(buildroot, 'runc'),
      systemd: buildrootPackageVersion(buildroot, 'systemd'),
      linux: kernel,
      ...Object.fromEntries(externalPackages.map((p) => [p.name, p.version])),
    });
    expect(externalPackages.map((p) => p.name)).toEqual([
      'docuum',
      'gitlab-runner-current',
      'qemu-user-static',
    ]);
    expect(byName(bom, 'linux')?.type).toBe('operating-system');
    expect(byName(bom, 'linux')?.cpe?.startsWith(`cpe:2.3:o:linux:linux_kernel:${kernel}:`)).toBe(true);
    expect(byName(bom, 'docker-engine')?.purl).toBe(`pkg:github/moby/moby@v${docker}`);
    expect(bom.components.some((c) => c.name === 'toolchain' || c.name === 'skeleton')).toBe(false);
    expect(bom.components.every((c) => c.scope === 'required')).toBe(true);
    // Deterministic on real data too.
    expect(JSON.stringify(sbomFromShowInfo(showInfoReal, { ...realMeta }))).toBe(JSON.stringify(doc));
  });

  it("maps every package's license string to ids the schema knows and expressions SPDX can parse", () => {
    const strings = new Set<string>();
    for (const dir of ['package', 'linux', 'boot']) {
      const mk = execFileSync(
        'grep',
        ['-rhE', '^[A-Z0-9_]+_LICENSE\\s*\\+?=', join(buildroot, dir), '--include=*.mk'],
        {
          encoding: 'utf8',
          maxBuffer: 16 * 1024 * 1024,
        },
      );
      for (const line of mk.split('\n')) {
        const value = /=\s*(.*?)\s*$/.exec(line)?.[1];
        if (value && !value.includes('$') && !value.endsWith('\\')) strings.add(value);
      }
    }
    expect(strings.size).toBeGreaterThan(400);
    const ids = new Set<string>();
    let named = 0;
    for (const s of strings) {
      for (const choice of mapBuildrootLicenses(s)) {
        if ('expression' in choice) expect(() => parseSpdxExpression(choice.expression), s).not.toThrow();
        else if ('id' in choice.license) ids.add(choice.license.id);
        else named++;
      }
    }
    expect([...ids].filter((i) => !officialSpdxIds.has(i))).toEqual([]);
    expect(ids.size).toBeGreaterThan(50);
    // Free text ("Public Domain", "MIT-like", "ARM EULA"...) stays a name.
    expect(named).toBeGreaterThan(0);
  });

  it('stays schema-valid with host packages included', () => {
    const doc = sbomFromShowInfo(showInfoReal, realMeta, { includeHost: true });
    expect(schemaErrors(doc)).toEqual([]);
    expect(asBom(doc).components.some((c) => c.scope === 'excluded' && c.name === 'go-src')).toBe(true);
  });

  it('`appliance sbom` run twice, in two processes, writes byte-identical files', async () => {
    const run = async (file: string): Promise<string> => {
      const r = await runCliAsync([
        'sbom',
        '-c',
        join(repoRoot, 'appliance.yaml'),
        '--buildroot',
        buildroot,
        '--out',
        join(out, file),
      ]);
      expect(r.stderr).toBe('');
      expect(r.status).toBe(0);
      return readFileSync(join(out, file), 'utf8');
    };
    const first = await run('first.json');
    const second = await run('second.json');
    expect(second).toBe(first);
    // The configuration digest is the one of this test's own .config, made from the committed
    // tree in another folder: it names the configuration, not where it was written.
    const props = (JSON.parse(first) as Bom).metadata.properties as { name: string; value: string }[];
    expect(props).toContainEqual({ name: 'runner-appliance:config-sha256', value: realMeta.configSha256 });
  }, 240_000);

  it('left the Buildroot tree untouched', () => {
    expect(topLevel(buildroot)).toBe(before);
  });
});
