/** Buildroot's progress lines (`>>> <pkg> <version> <step>`) and what they say about a build. */

// biome-ignore lint/suspicious/noControlCharactersInRegex: terminal escapes are what we strip
const escapes = /\u001b\[[0-9;]*[A-Za-z]/g;

export interface ProgressLine {
  /** Empty for global steps ("Finalizing target directory"). */
  pkg: string;
  version: string;
  step: string;
}

/** Parse one make output line; undefined when it is not a progress line. */
export function parseProgressLine(raw: string): ProgressLine | undefined {
  const line = raw.replace(escapes, '').trimEnd();
  if (!line.startsWith('>>> ')) return undefined;
  const rest = line.slice(4);
  if (rest.startsWith('  ')) return { pkg: '', version: '', step: rest.trim() };
  const m = /^(\S+) (\S*) (.+)$/.exec(rest);
  if (!m?.[1] || m[3] === undefined) return undefined;
  return { pkg: m[1], version: m[2] ?? '', step: m[3].trim() };
}

export type StepKind =
  | 'download'
  | 'extract'
  | 'patch'
  | 'configure'
  | 'build'
  | 'install'
  | 'image'
  | 'other';

export function stepKind(step: string): StepKind {
  if (/^Downloading/.test(step)) return 'download';
  if (/^Extracting|^Syncing from source dir/.test(step)) return 'extract';
  if (/^Patching|^Updating config\.sub|^Preparing/.test(step)) return 'patch';
  if (/^Configuring/.test(step)) return 'configure';
  if (/^Building/.test(step)) return 'build';
  if (/^Installing/.test(step)) return 'install';
  if (/^Generating root filesystem image|^Executing post-image|^Generating filesystem image/.test(step))
    return 'image';
  return 'other';
}

export interface ProgressState {
  total: number;
  done: string[];
  current?: ProgressLine;
  startedAt: number;
}

export interface ProgressEvent {
  type: 'step';
  pkg: string;
  version: string;
  step: string;
  done: number;
  total: number;
  elapsedSeconds: number;
  /** Rough remaining time from the average per package so far; undefined before the first package is done. */
  etaSeconds?: number;
}

/** Follows progress lines; a package counts as done when the build moves on to another one. */
export class ProgressTracker {
  readonly state: ProgressState;

  constructor(total: number, now = Date.now()) {
    this.state = { total, done: [], startedAt: now };
  }

  feed(raw: string, now = Date.now()): ProgressEvent | undefined {
    const p = parseProgressLine(raw);
    if (!p) return undefined;
    const cur = this.state.current;
    if (cur?.pkg && p.pkg !== cur.pkg && !this.state.done.includes(cur.pkg)) this.state.done.push(cur.pkg);
    this.state.current = p;
    const elapsed = (now - this.state.startedAt) / 1000;
    const done = this.state.done.length;
    const remaining = Math.max(0, this.state.total - done);
    return {
      type: 'step',
      pkg: p.pkg,
      version: p.version,
      step: p.step,
      done,
      total: this.state.total,
      elapsedSeconds: Math.round(elapsed),
      etaSeconds: done > 0 ? Math.round((elapsed / done) * remaining) : undefined,
    };
  }

  finish(): void {
    const cur = this.state.current;
    if (cur?.pkg && !this.state.done.includes(cur.pkg)) this.state.done.push(cur.pkg);
  }
}

export function formatDuration(seconds: number): string {
  const h = Math.floor(seconds / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = seconds % 60;
  return h > 0
    ? `${h}h${String(m).padStart(2, '0')}m`
    : m > 0
      ? `${m}m${String(s).padStart(2, '0')}s`
      : `${s}s`;
}

export function formatProgress(e: ProgressEvent): string {
  const what = e.pkg ? `${e.pkg}${e.version ? ` ${e.version}` : ''}: ${e.step}` : e.step;
  const eta = e.etaSeconds === undefined ? '' : `, ~${formatDuration(e.etaSeconds)} left`;
  return `[${e.done}/${e.total}] ${what} (${formatDuration(e.elapsedSeconds)}${eta})`;
}
