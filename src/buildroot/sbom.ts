/**
 * A CycloneDX 1.6 JSON SBOM from Buildroot's `make show-info` output: what the appliance
 * image will contain, known from the configuration alone (no build needed).
 *
 * Choices, so a reader of the SBOM knows what it means:
 * - One component per non-virtual `target` package (`host` packages only with `includeHost`,
 *   then with scope "excluded": build tools, not shipped). `rootfs` entries are never components.
 * - Component type: `linux` is "operating-system"; libraries (`lib*`, `*-libs` and a few known
 *   ones such as glibc, zlib, ncurses) are "library"; everything else is "application".
 * - bom-ref is `buildroot:<show-info key>@<version>` (the key keeps host-foo and foo apart).
 * - Licenses come from Buildroot's declared `<PKG>_LICENSE` string (acknowledgement "declared"),
 *   see {@link mapBuildrootLicenses}; the raw string is kept as a property.
 * - cpe is Buildroot's `cpe-id` when it knows one; purl only for GitHub downloads
 *   (`pkg:github/<owner>/<repo>@<tag>`), the only case where the upstream identity is certain.
 * - externalReferences: every download URI ("distribution"; "vcs" for git/hg/svn), with
 *   Buildroot's method prefixes (`https+`, `https|urlencode+`, `git+`) stripped. No hashes:
 *   show-info only names the .hash files, it does not carry the hashes themselves.
 * - dependencies: Buildroot's dependency edges restricted to included components; skipped
 *   virtual packages (toolchain, skeleton, openssl, udev...) are looked through to what provides them.
 *   The appliance (metadata.component) depends on every target component.
 * - Deterministic: no timestamp unless given, sorted components, a config-sha256 of the
 *   configuration's canonical form (see {@link canonicalConfig}: no scratch paths), and a
 *   serialNumber that is a UUID v5 of the SHA-256 of the rest of the document, so equal input
 *   gives byte-identical output, in any process, on any machine.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fixupSpdxId } from '@cyclonedx/cyclonedx-library/SPDX';
import parseSpdxExpression from 'spdx-expression-parse';
import type { ApplianceConfig } from '../config/index.js';
import { sha256Of, uuidV5 } from '../digest.js';
import { ApplianceError, ExitCode } from '../errors.js';
import { packageRoot } from '../paths.js';
import { runCommand } from '../run/index.js';
import type { Tree } from '../tree.js';
import { parseKconfigValues } from './check.js';
import { type ConfigureOptions, makeEnv, withScratchConfig } from './configure.js';

/**
 * Symbols that say where files sit on the machine that ran `make defconfig`, not what the image
 * is made of: the defconfig's path, each br2-external tree's path (`sbom` writes both into a fresh
 * scratch folder every run) and its `git describe` (empty in a scratch folder, "-g<sha>-dirty" in
 * a checkout), and the download and ccache folders.
 */
const LOCATION_SYMBOLS = [
  /^BR2_DEFCONFIG$/,
  /^BR2_EXTERNAL_\w+_(PATH|VERSION)$/,
  /^BR2_DL_DIR$/,
  /^BR2_CCACHE_DIR$/,
];

/**
 * The canonical form of a resolved Buildroot `.config`, the input of config-sha256: one
 * `SYMBOL=value` line per symbol (`n` for "is not set"), sorted by symbol, comments dropped,
 * {@link LOCATION_SYMBOLS} dropped, and any other value that names a br2-external tree's path
 * written as `$(BR2_EXTERNAL_<NAME>_PATH)`. Two configurations that build the same image from
 * the same Buildroot have the same canonical form, wherever their files were written.
 */
export function canonicalConfig(config: string | Record<string, string>): string {
  const values = typeof config === 'string' ? parseKconfigValues(config) : new Map(Object.entries(config));
  const externals = [...values]
    .filter(([symbol]) => /^BR2_EXTERNAL_\w+_PATH$/.test(symbol))
    .map(([symbol, v]) => [/^"(.+)"$/.exec(v)?.[1] ?? '', `$(${symbol})`] as const)
    .filter(([path]) => path.length > 1)
    .sort((a, b) => b[0].length - a[0].length);
  return [...values]
    .filter(([symbol]) => !LOCATION_SYMBOLS.some((re) => re.test(symbol)))
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([symbol, v]) => {
      let value = v;
      for (const [path, ref] of externals) value = value.split(path).join(ref);
      return `${symbol}=${value}\n`;
    })
    .join('');
}

/**
 * config-sha256 of an SBOM and of a build's manifest: the SHA-256 of {@link canonicalConfig}
 * (of a `.config` text, or of its symbol → value record).
 */
export function configSha256(config: string | Record<string, string>): string {
  return sha256Of(canonicalConfig(config));
}

/** One download of a package: the file name and the URIs Buildroot tries, in order. */
export interface ShowInfoDownload {
  source: string;
  uris: string[];
}

/** One entry of `make show-info` (keyed by package, e.g. "systemd" or "host-go"). */
export interface ShowInfoEntry {
  type: 'target' | 'host' | 'rootfs';
  /** Package name without the "host-" prefix; absent for rootfs entries. */
  name?: string;
  virtual?: boolean;
  /** Absent for virtual packages; may be "" (e.g. skeleton-init-common). */
  version?: string;
  /** Buildroot's `<PKG>_LICENSE`: comma-separated SPDX-ish ids with free-text notes. */
  licenses?: string;
  license_files?: string[];
  redistributable?: boolean;
  dl_dir?: string;
  downloads?: ShowInfoDownload[];
  /** Paths of .hash files, not hashes. */
  hashes?: string[];
  patches?: string[];
  provides?: string[];
  package_dir?: string;
  stamp_dir?: string;
  source_dir?: string;
  build_dir?: string;
  install_target?: boolean;
  install_staging?: boolean;
  install_images?: boolean;
  dependencies?: string[];
  reverse_dependencies?: string[];
  'cpe-id'?: string;
  ignore_cves?: string[];
  /** rootfs entries only. */
  image_name?: string | null;
}

export interface SbomMeta {
  applianceName: string;
  applianceVersion?: string;
  arch: 'x86_64' | 'aarch64';
  buildrootVersion: string;
  configSha256: string;
  /** ISO 8601; omitted by default so the output is reproducible. */
  timestamp?: string;
}

export interface SbomOptions {
  /** Also list host (build-machine) packages, with scope "excluded". */
  includeHost?: boolean;
}

/** A CycloneDX license choice entry. */
export type LicenseChoice =
  | { license: { id: string; acknowledgement: 'declared' } }
  | { license: { name: string; acknowledgement: 'declared' } }
  | { expression: string; acknowledgement: 'declared' };

const PROP = 'runner-appliance';

/**
 * An SPDX expression as spdx-expression-parse reads it (SPDX's own license and exception lists,
 * deprecated ids included), or undefined when it is not one.
 */
function parsedExpression(text: string): ReturnType<typeof parseSpdxExpression> | undefined {
  try {
    return parseSpdxExpression(text);
  } catch {
    return undefined;
  }
}

/**
 * A license id in the spelling of the SPDX list the CycloneDX schema carries (any case in), or
 * undefined. That list also holds the exception ids, so the parser has to agree that it is a
 * license on its own.
 */
function licenseId(token: string): string | undefined {
  const id = fixupSpdxId(token);
  const parsed = id === undefined ? undefined : parsedExpression(id);
  return parsed && 'license' in parsed && parsed.license === id && !parsed.plus && !parsed.exception
    ? id
    : undefined;
}

/** An SPDX license exception id in its canonical spelling (any case in), or undefined. */
function exceptionId(token: string): string | undefined {
  const id = fixupSpdxId(token);
  const parsed = id === undefined ? undefined : parsedExpression(`MIT WITH ${id}`);
  return parsed && 'exception' in parsed && parsed.exception === id ? id : undefined;
}

/**
 * What only Buildroot's license strings need, on top of the SPDX lists: names Buildroot uses
 * that SPDX spells differently.
 */
const ALIASES = new Map([['bsd-0-clause', '0BSD']]);

/** Text Buildroot's golang/cargo infrastructure appends to `<PKG>_LICENSE`: a note, not a license. */
const VENDORED_NOTE = /^vendored dependencies licenses probably not listed$/i;

/**
 * One Buildroot license token as an SPDX id, or undefined. Buildroot spells "or later" with a
 * trailing "+" and "only" with none (its convention since before SPDX 3), so for the GNU
 * family "GPL-2.0+" is "GPL-2.0-or-later" and "GPL-2.0" is "GPL-2.0-only".
 */
function normalizeId(token: string): string | undefined {
  const t = token.trim();
  const gnu = /^((?:A|L)?GPL|GFDL)-(\d\.\d)(\+?)$/i.exec(t);
  if (gnu) {
    const [, family = '', ver = '', plus] = gnu;
    return licenseId(`${family}-${ver}-${plus ? 'or-later' : 'only'}`);
  }
  return licenseId(ALIASES.get(t.toLowerCase()) ?? t);
}

/** A token as an SPDX expression term: an id, "<id>+" for non-GNU "or later", or "<id> WITH <exc>". */
function expressionTerm(token: string): string | undefined {
  const id = normalizeId(token);
  if (id) return id;
  const plus = /^(.+)\+$/.exec(token.trim());
  if (plus?.[1]) {
    const base = normalizeId(plus[1]);
    if (base && !base.endsWith('-only') && !base.endsWith('-or-later')) return `${base}+`;
  }
  const withExc = /^(.+?)\s+with\s+(\S+)$/i.exec(token.trim());
  if (withExc?.[1] && withExc[2]) {
    const lic = expressionTerm(withExc[1]);
    const exc = exceptionId(withExc[2]);
    if (lic && exc && !lic.includes(' ')) return `${lic} WITH ${exc}`;
  }
  return undefined;
}

/** Split on commas outside parentheses: "GPL-2.0+ (library, tools), MIT" has two entries. */
function splitTopLevel(s: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let cur = '';
  for (const ch of s) {
    if (ch === '(') depth++;
    if (ch === ')') depth = Math.max(0, depth - 1);
    if (ch === ',' && depth === 0) {
      out.push(cur);
      cur = '';
    } else cur += ch;
  }
  out.push(cur);
  return out.map((e) => e.trim().replace(/\s+/g, ' ')).filter((e) => e.length > 0);
}

type Mapped =
  | { kind: 'id'; id: string }
  | { kind: 'expr'; expr: string; text: string }
  | { kind: 'name'; text: string };

function mapEntry(entry: string): Mapped {
  // A trailing "(udev)" / "(few source files, ...)" says which part the license covers.
  const core = entry.replace(/\s*\([^()]*\)\s*$/, '').trim();
  const id = normalizeId(core);
  if (id) return { kind: 'id', id };
  const alternatives = core.split(/\s+or\s+/i);
  const terms = alternatives.map(expressionTerm);
  if (terms.every((t): t is string => t !== undefined)) {
    const expr = terms.length > 1 ? terms.join(' OR ') : (terms[0] ?? '');
    if (parsedExpression(expr)) return { kind: 'expr', expr, text: entry };
  }
  return { kind: 'name', text: entry };
}

/**
 * Buildroot's license string as CycloneDX licenses, or [] when it says nothing ("unknown", empty).
 * - All entries plain SPDX ids: one `{license: {id}}` each (deduplicated).
 * - All entries expressible in SPDX, some compound ("A or B", "X with exception"): a single
 *   `{expression}` joining the entries with AND (Buildroot lists licenses of different parts).
 * - Otherwise: `{license: {id}}` for plain ids and `{license: {name}}` with Buildroot's text for
 *   everything else (free text such as "Public Domain", "bzip2 license", compound entries).
 * The vendored-dependencies note of Go/Cargo packages is dropped (it is not a license).
 */
export function mapBuildrootLicenses(licenses: string | undefined): LicenseChoice[] {
  if (!licenses || /^\s*unknown\s*$/i.test(licenses)) return [];
  const mapped = splitTopLevel(licenses)
    .filter((e) => !VENDORED_NOTE.test(e))
    .map(mapEntry);
  if (mapped.length === 0) return [];
  const acknowledgement = 'declared' as const;
  if (mapped.some((m) => m.kind === 'name')) {
    const out: LicenseChoice[] = [];
    const seen = new Set<string>();
    for (const m of mapped) {
      const key = m.kind === 'id' ? `id:${m.id}` : `name:${m.text}`;
      if (seen.has(key)) continue;
      seen.add(key);
      out.push(
        m.kind === 'id'
          ? { license: { id: m.id, acknowledgement } }
          : { license: { name: m.text, acknowledgement } },
      );
    }
    return out;
  }
  if (mapped.some((m) => m.kind === 'expr')) {
    const terms = [...new Set(mapped.map((m) => (m.kind === 'id' ? m.id : m.kind === 'expr' ? m.expr : '')))];
    const expression =
      terms.length === 1
        ? (terms[0] ?? '')
        : terms.map((t) => (t.includes(' ') ? `(${t})` : t)).join(' AND ');
    return [{ expression, acknowledgement }];
  }
  const ids = [...new Set(mapped.map((m) => (m.kind === 'id' ? m.id : '')))];
  return ids.map((id) => ({ license: { id, acknowledgement } }));
}

const KNOWN_LIBRARIES = new Set([
  'expat',
  'gcc-final',
  'glibc',
  'linux-headers',
  'musl',
  'ncurses',
  'openssl',
  'readline',
  'uclibc',
  'zlib',
]);

function componentType(name: string): 'operating-system' | 'library' | 'application' {
  if (name === 'linux') return 'operating-system';
  if (name.startsWith('lib') || name.endsWith('-libs') || KNOWN_LIBRARIES.has(name)) return 'library';
  return 'application';
}

interface ParsedUri {
  method: string;
  url: string;
}

/** "https|urlencode+https://host/dir" plus the source file name → the URL Buildroot fetches. */
function parseUri(uri: string, source: string): ParsedUri | undefined {
  const m = /^([a-z0-9]+)((?:\|[a-z0-9]+)*)\+([a-z][a-z0-9+.-]*:\/\/.*)$/i.exec(uri);
  const method = (m ? m[1] : /^([a-z0-9]+):\/\//i.exec(uri)?.[1])?.toLowerCase();
  const base = m ? (m[3] ?? '') : uri;
  if (!method) return undefined;
  if (['git', 'hg', 'svn', 'bzr', 'cvs'].includes(method)) return { method, url: base };
  if (!['http', 'https', 'ftp', 'ftps'].includes(method)) return undefined; // file, local, scp...
  const urlencode = m?.[2]?.split('|').includes('urlencode') ?? false;
  const file = urlencode ? encodeURIComponent(source) : source;
  return { method, url: `${base.replace(/\/+$/, '')}/${file}` };
}

/** pkg:github/<owner>/<repo>@<tag> for GitHub archive and release downloads, else undefined. */
function githubPurl(uri: string): string | undefined {
  const m =
    /^(?:https?(?:\|[a-z0-9]+)*\+)?https?:\/\/github\.com\/([A-Za-z0-9_.-]+)\/([A-Za-z0-9_.-]+)\/(?:archive|releases\/download)\/([^/]+)\/?$/.exec(
      uri,
    );
  if (!m?.[1] || !m[2] || !m[3]) return undefined;
  const enc = (s: string) => encodeURIComponent(s);
  return `pkg:github/${enc(m[1].toLowerCase())}/${enc(m[2].toLowerCase())}@${enc(decodeURIComponent(m[3]))}`;
}

function bomRef(key: string, entry: ShowInfoEntry): string {
  return entry.version ? `buildroot:${key}@${entry.version}` : `buildroot:${key}`;
}

function runnerApplianceVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(join(packageRoot(), 'package.json'), 'utf8')) as {
      version?: unknown;
    };
    return typeof pkg.version === 'string' ? pkg.version : '0.0.0';
  } catch {
    return '0.0.0';
  }
}

function property(name: string, value: string): { name: string; value: string } {
  return { name: `${PROP}:${name}`, value };
}

/** The CycloneDX 1.6 SBOM (a plain JSON object) of the packages in a Buildroot show-info. */
export function sbomFromShowInfo(
  showInfo: Record<string, ShowInfoEntry>,
  meta: SbomMeta,
  options: SbomOptions = {},
): Record<string, unknown> {
  const wanted = (e: ShowInfoEntry): boolean =>
    e.type === 'target' || (e.type === 'host' && options.includeHost === true);
  const included = (key: string): boolean => {
    const e = showInfo[key];
    return e !== undefined && wanted(e) && e.virtual !== true;
  };
  const keys = Object.keys(showInfo)
    .filter(included)
    .sort((a, b) =>
      bomRef(a, showInfo[a] as ShowInfoEntry).localeCompare(bomRef(b, showInfo[b] as ShowInfoEntry)),
    );
  const refOf = new Map(keys.map((k) => [k, bomRef(k, showInfo[k] as ShowInfoEntry)]));

  const components = keys.map((key) => {
    const e = showInfo[key] as ShowInfoEntry;
    const name = e.name && e.name.length > 0 ? e.name : key;
    const c: Record<string, unknown> = {
      type: componentType(name),
      'bom-ref': refOf.get(key),
      name,
    };
    if (e.version) c.version = e.version;
    c.scope = e.type === 'host' ? 'excluded' : 'required';
    const licenses = mapBuildrootLicenses(e.licenses);
    if (licenses.length > 0) c.licenses = licenses;
    if (e['cpe-id']) c.cpe = e['cpe-id'];
    const purl = (e.downloads ?? [])
      .flatMap((d) => d.uris.slice(0, 1))
      .map(githubPurl)
      .find(Boolean);
    if (purl) c.purl = purl;
    const refs: { type: string; url: string }[] = [];
    const seen = new Set<string>();
    for (const d of e.downloads ?? []) {
      for (const uri of d.uris) {
        const p = parseUri(uri, d.source);
        if (!p || seen.has(p.url)) continue;
        seen.add(p.url);
        refs.push({
          type: ['http', 'https', 'ftp', 'ftps'].includes(p.method) ? 'distribution' : 'vcs',
          url: p.url,
        });
      }
    }
    if (refs.length > 0) c.externalReferences = refs;
    const props = [property('buildroot:package', key), property('buildroot:type', e.type)];
    if (e.licenses !== undefined) props.push(property('buildroot:licenses', e.licenses));
    if (e.redistributable !== undefined)
      props.push(property('buildroot:redistributable', String(e.redistributable)));
    if (e.patches && e.patches.length > 0)
      props.push(property('buildroot:patches', String(e.patches.length)));
    c.properties = props;
    return c;
  });

  // Dependency edges among included components, looking through skipped virtual packages.
  const resolve = (dep: string, seen: Set<string>): string[] => {
    if (seen.has(dep)) return [];
    seen.add(dep);
    const e = showInfo[dep];
    if (!e) return [];
    if (included(dep)) return [dep];
    if (e.virtual === true && wanted(e)) return (e.dependencies ?? []).flatMap((d) => resolve(d, seen));
    return [];
  };
  const applianceRef = `appliance:${meta.applianceName}${meta.applianceVersion ? `@${meta.applianceVersion}` : ''}`;
  const dependencies = [
    {
      ref: applianceRef,
      dependsOn: keys.filter((k) => showInfo[k]?.type === 'target').map((k) => refOf.get(k) as string),
    },
    ...keys.map((key) => {
      const deps = new Set<string>();
      for (const d of showInfo[key]?.dependencies ?? []) {
        for (const r of resolve(d, new Set([key]))) deps.add(refOf.get(r) as string);
      }
      return { ref: refOf.get(key) as string, dependsOn: [...deps].sort() };
    }),
  ];

  const applianceComponent: Record<string, unknown> = {
    type: 'operating-system',
    'bom-ref': applianceRef,
    name: meta.applianceName,
  };
  if (meta.applianceVersion) applianceComponent.version = meta.applianceVersion;
  applianceComponent.description = `Buildroot ${meta.buildrootVersion} appliance image for ${meta.arch}`;
  applianceComponent.properties = [property('arch', meta.arch)];

  const metadata: Record<string, unknown> = {};
  if (meta.timestamp) metadata.timestamp = meta.timestamp;
  metadata.lifecycles = [{ phase: 'pre-build' }];
  metadata.tools = {
    components: [
      { type: 'application', name: 'runner-appliance', version: runnerApplianceVersion() },
      {
        type: 'application',
        name: 'buildroot',
        version: meta.buildrootVersion,
        description: 'package metadata from `make show-info`',
        externalReferences: [{ type: 'website', url: 'https://buildroot.org/' }],
      },
    ],
  };
  metadata.component = applianceComponent;
  metadata.properties = [
    property('arch', meta.arch),
    property('buildroot:version', meta.buildrootVersion),
    property('config-sha256', meta.configSha256),
    property('include-host', String(options.includeHost === true)),
  ];

  const body = { version: 1, metadata, components, dependencies };
  const digest = sha256Of(JSON.stringify({ bomFormat: 'CycloneDX', specVersion: '1.6', ...body }));
  return {
    $schema: 'http://cyclonedx.org/schema/bom-1.6.schema.json',
    bomFormat: 'CycloneDX',
    specVersion: '1.6',
    serialNumber: `urn:uuid:${uuidV5(`urn:runner-appliance:sbom:sha256:${digest}`)}`,
    ...body,
  };
}

/** `make show-info` of a configured O=: one entry per package (virtual ones included). */
export async function readShowInfo(
  make: string,
  out: string,
  dlDir: string,
): Promise<Record<string, ShowInfoEntry>> {
  const r = await runCommand(make, ['-s', '-C', out, 'show-info'], {
    env: makeEnv(dlDir),
    purpose: 'make show-info',
    timeoutMs: 5 * 60_000,
  });
  try {
    return JSON.parse(r.stdout) as Record<string, ShowInfoEntry>;
  } catch {
    throw new ApplianceError("Buildroot's show-info did not print JSON", {
      exitCode: ExitCode.hostProblem,
      details: r.stdout.slice(0, 2000),
    });
  }
}

/**
 * `appliance sbom`: configure the rendered `tree` in a scratch O= (no build, no download) and
 * turn Buildroot's `make show-info` into the SBOM.
 */
export async function generateSbom(
  config: ApplianceConfig,
  tree: Tree,
  o: ConfigureOptions & SbomOptions = {},
): Promise<Record<string, unknown>> {
  return withScratchConfig(
    config,
    tree,
    o,
    'no SBOM was written',
    async ({ arch, make, out, dotConfig, scratchDl }) => {
      const showInfo = await readShowInfo(make, out, scratchDl);
      return sbomFromShowInfo(
        showInfo,
        {
          applianceName: config.name,
          arch,
          buildrootVersion: config.buildroot.version,
          configSha256: configSha256(dotConfig),
        },
        { includeHost: o.includeHost },
      );
    },
  );
}
