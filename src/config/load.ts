import { existsSync, realpathSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { type Document, isMap, isScalar, isSeq, LineCounter, parseDocument } from 'yaml';
import { z } from 'zod';
import { ApplianceError } from '../errors.js';
import { readInputFile, shownValue } from '../fsguard.js';
import { info } from '../log.js';
import { defaultConfigPath } from '../paths.js';
import { type BudgetFigures, budgetFigures, parseBudget, parseIdle } from './budget.js';
import { type ApplianceSettings, applianceSchema, architectures } from './schema.js';
import { parseSize } from './values.js';

export type Arch = ApplianceSettings['arch'];
export const arches: readonly Arch[] = architectures;

/** The validated appliance with the values every stage derives from it. */
export interface ApplianceConfig extends ApplianceSettings {
  /** Absolute path of the appliance.yaml it came from. */
  source: string;
  /** Absolute paths of the extra overlay folders. */
  overlayDirs: string[];
  dataDiskBytes: number;
  /** dataDisk.budget and what each enforcer gets from it (see budget.ts). */
  budget: BudgetFigures;
  /** dataDisk.volumeMaxIdle in seconds. */
  volumeMaxIdleSeconds: number;
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
    .map((p, i) => {
      if (typeof p === 'number') return `[${p}]`;
      const key = /^[\w-]+$/.test(String(p)) ? String(p) : shownValue(String(p));
      return i === 0 ? key : `.${key}`;
    })
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
  return `${typeof v} ${shownValue(v)}`;
}

/** One line for one schema issue: "field: expected X, got Y". */
function issueMessage(
  issue: z.core.$ZodIssue,
  data: unknown,
  root: unknown = applianceSchema,
): { path: PropertyKey[]; text: string } {
  const path = [...issue.path];
  switch (issue.code) {
    case 'unrecognized_keys': {
      const parent = valueAt(data, path);
      const allowed = allowedKeys(path, root);
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

function allowedKeys(path: readonly PropertyKey[], root: unknown = applianceSchema): string[] | undefined {
  let schema: unknown = root;
  for (const p of path) {
    // A list's entries (fleet.yaml's hosts) have the schema of its element.
    const element = (schema as { def?: { element?: unknown } } | undefined)?.def?.element;
    schema = typeof p === 'number' && element ? element : shapeOf(schema)?.[String(p)];
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
  return finish(parseYamlWith(applianceSchema, text, origin, 'appliance.yaml'), origin);
}

/**
 * Parse YAML text and validate it against `schema` (a strict zod object), failing with one line
 * naming the file, line and field, as appliance.yaml is checked (fleet.yaml uses it too).
 */
export function parseYamlWith<S extends z.ZodType>(
  schema: S,
  text: string,
  origin: string,
  kind: string,
): z.output<S> {
  const counter = new LineCounter();
  const doc = parseDocument(text, { lineCounter: counter, prettyErrors: false, uniqueKeys: true });
  const yamlError = doc.errors[0];
  if (yamlError) {
    const line = yamlError.linePos?.[0]?.line ?? counter.linePos(yamlError.pos[0]).line;
    if (yamlError.code === 'MULTIPLE_DOCS') {
      throw new ApplianceError(`${origin}:${line}: holds more than one YAML document (a "---" line)`, {
        hint: `keep one document per ${kind}`,
      });
    }
    const what = yamlError.message.split('\n')[0]?.replace(/ at line \d+, column \d+:?$/, '');
    throw new ApplianceError(`${origin}:${line}: invalid YAML: ${shownText(what ?? '')}`, {
      hint: 'fix the syntax',
    });
  }
  let data: unknown;
  try {
    data = doc.toJS({ maxAliasCount: 100 }) ?? {};
  } catch (e) {
    if (e instanceof ReferenceError && /alias/i.test(e.message)) {
      throw new ApplianceError(`${origin}: YAML aliases (*name) expand to too many values`, {
        hint: 'write the values out, or use fewer aliases (at most 100 expansions)',
      });
    }
    throw new ApplianceError(`${origin}: invalid YAML: ${shownText(String((e as Error).message))}`, {
      hint: 'fix the syntax',
    });
  }
  if (typeof data !== 'object' || Array.isArray(data) || data === null) {
    throw new ApplianceError(
      `${origin}: expected a mapping of settings at the top level, got ${describeValue(data)}`,
    );
  }
  const result = schema.safeParse(data);
  if (!result.success) {
    const first = result.error.issues[0];
    if (!first) throw new ApplianceError(`${origin}: invalid configuration`);
    const { path, text: message } = issueMessage(first, data, schema);
    const line = lineOf(doc, counter, path);
    const more =
      result.error.issues.length > 1 ? ` (+${result.error.issues.length - 1} more problem(s))` : '';
    throw new ApplianceError(`${origin}${line ? `:${line}` : ''}: ${describePath(path)}: ${message}${more}`);
  }
  return result.data;
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
  const dataDiskBytes = parseSize(settings.dataDisk.size) ?? 0;
  return {
    ...settings,
    source: resolve(source),
    overlayDirs,
    dataDiskBytes,
    budget: budgetFigures(
      parseBudget(settings.dataDisk.budget, dataDiskBytes) ?? {
        kind: 'size',
        bytes: dataDiskBytes,
        percent: 100,
      },
      settings.docuum.threshold,
    ),
    volumeMaxIdleSeconds: parseIdle(settings.dataDisk.volumeMaxIdle) ?? 0,
    memoryBytes: parseSize(settings.vm.memory) ?? 0,
    externalName: settings.name.toUpperCase().replaceAll('-', '_'),
  };
}

/** Text cut to ~80 characters for an error line. */
function shownText(text: string): string {
  return text.length > 80 ? `${text.slice(0, 60)}…(${text.length} characters)` : text;
}

/**
 * The appliance.yaml a command uses: `path` when given, else ./appliance.yaml when the current
 * folder has one (`local` is then true), else the embedded default.
 */
export function configPath(path?: string): { file: string; local: boolean } {
  if (path !== undefined) return { file: path, local: false };
  const embedded = defaultConfigPath();
  const here = resolve('appliance.yaml');
  if (!existsSync(here)) return { file: embedded, local: false };
  let same = false;
  try {
    same = realpathSync(here) === realpathSync(embedded);
  } catch {
    same = false;
  }
  return { file: here, local: !same };
}

/**
 * Load appliance.yaml from `path`; without one, ./appliance.yaml when present (said on stderr),
 * else the embedded default. The file must be a readable regular file: a FIFO, folder, device
 * or /proc path is refused before it is opened (reading a FIFO would block past Ctrl-C).
 */
export function loadAppliance(path?: string): ApplianceConfig {
  const { file, local } = configPath(path);
  const text = readInputFile('config file', file, 'pass an appliance.yaml with --config').toString('utf8');
  if (local) info('using ./appliance.yaml');
  return parseAppliance(text, file);
}

/**
 * Check one value against the schema of the setting at `path` (e.g. ["dataDisk", "size"]), the
 * way appliance.yaml is checked; returns the problem, or undefined when the value is fine. Lets
 * command-line flags that mirror a setting accept exactly what the config accepts.
 */
export function parseSetting(path: readonly string[], value: unknown): string | undefined {
  const result = settingSchema(path).leaf.safeParse(value);
  if (result.success) return undefined;
  const issue = result.error.issues[0];
  return issue ? issueMessage(issue, value).text : 'invalid value';
}

/** What the schema says about one setting, for a command-line flag that mirrors it. */
export interface SettingFacts {
  /** The values it may take, when it is one of a list (an enum). */
  choices?: readonly string[];
  /** Its default when appliance.yaml leaves it out. */
  default?: unknown;
  /** Its description (the one in the README's configuration reference). */
  description?: string;
  /** Bounds of a whole-number setting. */
  integer?: { min: number; max: number };
}

/** The facts of the setting at `path` (e.g. ["arch"], ["dataDisk", "size"]), read from the schema. */
export function settingFacts(path: readonly string[]): SettingFacts {
  const { leaf, wrappers } = settingSchema(path);
  const facts: SettingFacts = {};
  for (const s of [...wrappers, leaf]) {
    facts.description ??= z.globalRegistry.get(s)?.description;
    const def = (s as unknown as { def: { type: string; defaultValue?: unknown } }).def;
    if (def.type === 'default' && facts.default === undefined) facts.default = def.defaultValue;
  }
  if (leaf instanceof z.ZodEnum) facts.choices = leaf.options.map(String);
  if (leaf instanceof z.ZodNumber && leaf.isInt)
    facts.integer = {
      min: leaf.minValue ?? Number.MIN_SAFE_INTEGER,
      max: leaf.maxValue ?? Number.MAX_SAFE_INTEGER,
    };
  return facts;
}

/** The schema of the setting at `path`: its wrappers (default, optional, …) and the value's own schema. */
function settingSchema(path: readonly string[]): { leaf: z.ZodType; wrappers: z.ZodType[] } {
  let schema: unknown = applianceSchema;
  for (const p of path) schema = shapeOf(schema)?.[p];
  const wrappers: z.ZodType[] = [];
  for (let i = 0; i < 5; i++) {
    const s = schema as { def?: { type?: string; innerType?: unknown } } | undefined;
    if (!s?.def || !['default', 'prefault', 'optional'].includes(s.def.type ?? '')) break;
    wrappers.push(schema as z.ZodType);
    schema = s.def.innerType;
  }
  const leaf = schema as z.ZodType | undefined;
  if (path.length === 0 || !leaf?.safeParse) throw new Error(`no setting ${path.join('.')} in the schema`);
  return { leaf, wrappers };
}
