import { readFileSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { type Document, isMap, isScalar, isSeq, LineCounter, parseDocument } from 'yaml';
import type { z } from 'zod';
import { ApplianceError } from '../errors.js';
import { defaultConfigPath } from '../paths.js';
import { type ApplianceSettings, applianceSchema } from './schema.js';
import { parseSize } from './values.js';

export type Arch = ApplianceSettings['arch'];
export const arches: readonly Arch[] = ['x86_64', 'aarch64'];

/** The validated appliance with the values every stage derives from it. */
export interface ApplianceConfig extends ApplianceSettings {
  /** Absolute path of the appliance.yaml it came from. */
  source: string;
  /** Absolute paths of the extra overlay folders. */
  overlayDirs: string[];
  dataDiskBytes: number;
  memoryBytes: number;
  /** BR2_EXTERNAL name, e.g. RUNNER_APPLIANCE. */
  externalName: string;
}

export function defconfigName(config: Pick<ApplianceConfig, 'name'>, arch: Arch): string {
  return `${config.name.replaceAll('-', '_')}_${arch}_defconfig`;
}

function describePath(path: readonly PropertyKey[]): string {
  if (path.length === 0) return '(top level)';
  return path
    .map((p, i) => (typeof p === 'number' ? `[${p}]` : i === 0 ? String(p) : `.${String(p)}`))
    .join('');
}

function lineOf(doc: Document, counter: LineCounter, path: readonly PropertyKey[]): number | undefined {
  for (let n = path.length; n >= 0; n--) {
    const node = doc.getIn(path.slice(0, n) as unknown[], true);
    if (node && (isScalar(node) || isMap(node) || isSeq(node)) && node.range)
      return counter.linePos(node.range[0]).line;
  }
  return undefined;
}

function valueAt(data: unknown, path: readonly PropertyKey[]): unknown {
  let v = data;
  for (const p of path) v = v && typeof v === 'object' ? (v as Record<PropertyKey, unknown>)[p] : undefined;
  return v;
}

function describeValue(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  return `${typeof v} ${JSON.stringify(v)}`;
}

/** One line for one schema issue: "field: expected X, got Y". */
function issueMessage(issue: z.core.$ZodIssue, data: unknown): { path: PropertyKey[]; text: string } {
  const path = [...issue.path];
  switch (issue.code) {
    case 'unrecognized_keys': {
      const parent = valueAt(data, path);
      const allowed = allowedKeys(path);
      return {
        path: [...path, issue.keys[0] ?? ''],
        text: `unknown key ${issue.keys.map((k) => `'${k}'`).join(', ')}${allowed ? ` (allowed: ${allowed.join(', ')})` : ''}${parent ? '' : ''}`,
      };
    }
    case 'invalid_type':
      return { path, text: `expected ${issue.expected}, got ${describeValue(valueAt(data, path))}` };
    case 'invalid_value':
      return {
        path,
        text: `expected one of ${issue.values.map((v) => JSON.stringify(v)).join(', ')}, got ${describeValue(valueAt(data, path))}`,
      };
    case 'too_small':
    case 'too_big': {
      const bound = issue.code === 'too_small' ? `at least ${issue.minimum}` : `at most ${issue.maximum}`;
      const what =
        issue.origin === 'array'
          ? `${bound} entries`
          : issue.origin === 'string'
            ? `${bound} characters`
            : bound;
      return { path, text: `expected ${what}, got ${describeValue(valueAt(data, path))}` };
    }
    case 'invalid_union':
      return {
        path,
        text: `expected y, n, a number or a string without quotes, got ${describeValue(valueAt(data, path))}`,
      };
    case 'invalid_key':
      return { path, text: issue.issues[0]?.message ?? 'invalid key' };
    default:
      return { path, text: issue.message };
  }
}

function allowedKeys(path: readonly PropertyKey[]): string[] | undefined {
  let schema: unknown = applianceSchema;
  for (const p of path) {
    const shape = shapeOf(schema);
    schema = shape?.[String(p)];
  }
  const shape = shapeOf(schema);
  return shape ? Object.keys(shape) : undefined;
}

function shapeOf(schema: unknown): Record<string, unknown> | undefined {
  let s = schema as
    | { shape?: Record<string, unknown>; unwrap?: () => unknown; def?: { innerType?: unknown } }
    | undefined;
  for (let i = 0; i < 5 && s; i++) {
    if (s.shape) return s.shape;
    s = (s.def?.innerType ?? undefined) as typeof s;
  }
  return undefined;
}

/** Parse and validate appliance YAML text. `origin` names the file in errors. */
export function parseAppliance(text: string, origin: string): ApplianceConfig {
  const counter = new LineCounter();
  const doc = parseDocument(text, { lineCounter: counter, prettyErrors: false, uniqueKeys: true });
  const yamlError = doc.errors[0];
  if (yamlError) {
    const line = yamlError.linePos?.[0]?.line ?? counter.linePos(yamlError.pos[0]).line;
    const what = yamlError.message.split('\n')[0]?.replace(/ at line \d+, column \d+:?$/, '');
    throw new ApplianceError(`${origin}:${line}: invalid YAML: ${what}`, { hint: 'fix the syntax' });
  }
  const data: unknown = doc.toJS() ?? {};
  if (typeof data !== 'object' || Array.isArray(data) || data === null) {
    throw new ApplianceError(
      `${origin}: expected a mapping of settings at the top level, got ${describeValue(data)}`,
    );
  }
  const result = applianceSchema.safeParse(data);
  if (!result.success) {
    const first = result.error.issues[0];
    if (!first) throw new ApplianceError(`${origin}: invalid configuration`);
    const { path, text: message } = issueMessage(first, data);
    const line = lineOf(doc, counter, path);
    const more =
      result.error.issues.length > 1 ? ` (+${result.error.issues.length - 1} more problem(s))` : '';
    throw new ApplianceError(`${origin}${line ? `:${line}` : ''}: ${describePath(path)}: ${message}${more}`);
  }
  return finish(result.data, origin);
}

function finish(settings: ApplianceSettings, source: string): ApplianceConfig {
  const base = dirname(resolve(source));
  const overlayDirs = settings.overlays.map((folder, i) => {
    const dir = resolve(base, folder);
    let isDir = false;
    try {
      isDir = statSync(dir).isDirectory();
    } catch {
      isDir = false;
    }
    if (!isDir) {
      throw new ApplianceError(
        `${source}: overlays[${i}]: folder ${JSON.stringify(folder)} does not exist (looked in ${dir})`,
        {
          hint: 'create it or fix the path (relative to appliance.yaml)',
        },
      );
    }
    return dir;
  });
  if (settings.docker.ipv6 === false && settings.docker.ip6tables) {
    settings = { ...settings, docker: { ...settings.docker, ip6tables: false } };
  }
  return {
    ...settings,
    source: resolve(source),
    overlayDirs,
    dataDiskBytes: parseSize(settings.dataDisk.size) ?? 0,
    memoryBytes: parseSize(settings.vm.memory) ?? 0,
    externalName: settings.name.toUpperCase().replaceAll('-', '_'),
  };
}

/** Load appliance.yaml from `path`, or the embedded default when none is given. */
export function loadAppliance(path?: string): ApplianceConfig {
  const file = path ?? defaultConfigPath();
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why =
      code === 'ENOENT'
        ? 'does not exist'
        : code === 'EISDIR'
          ? 'is a folder'
          : code === 'EACCES'
            ? 'is not readable'
            : String(code);
    throw new ApplianceError(`config file ${file} ${why}`, { hint: 'pass an appliance.yaml with --config' });
  }
  return parseAppliance(text, file);
}
