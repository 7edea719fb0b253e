/**
 * dataDisk.budget: what Docker may use of the data disk, and the figures each enforcer gets
 * from it. One rule, written once: images get half of the budget, BuildKit's build cache a
 * quarter, and the last quarter is left for what is bounded by time rather than size (unused
 * volumes, stopped containers' layers, rotated container logs).
 */
import { parseSize } from './values.js';

/** The share of the budget for images. */
export const imageShare = 0.5;
/**
 * The share of the budget for BuildKit's build cache (builder.gc defaultKeepStorage, and the
 * appliance-build-cache-trim timer, which keeps it with Docker's containerd image store).
 */
export const buildCacheShare = 0.25;
/**
 * docuum's --threshold as a share of the budget, unless docuum.threshold is set. docuum compares
 * it with the "Images" size of `docker system df`, which with Docker's containerd image store
 * counts the unpacked layers (snapshots) of the images and of the build cache, but not the
 * images' compressed layers that containerd keeps beside them (as large as the unpacked ones at
 * worst, for layers that do not compress). So images and build cache together take at most
 * twice this on disk: half of (images + build cache) keeps both within their shares.
 */
export const docuumShare = (imageShare + buildCacheShare) / 2;

export const budgetPercentPattern = /^(\d+(?:\.\d+)?)\s*%$/;

export type Budget =
  | { kind: 'percent'; percent: number; bytes: number }
  | { kind: 'size'; bytes: number; percent: number };

/**
 * The budget for a disk of `diskBytes`: a percentage of the disk or a size. Undefined when
 * `text` is neither; bytes above the disk are returned as they are (the schema refuses them).
 */
export function parseBudget(text: string, diskBytes: number): Budget | undefined {
  const pct = budgetPercentPattern.exec(text.trim());
  if (pct?.[1]) {
    const percent = Number(pct[1]);
    if (!(percent > 0 && percent <= 100)) return undefined;
    return { kind: 'percent', percent, bytes: Math.floor((diskBytes * percent) / 100) };
  }
  const bytes = parseSize(text);
  if (bytes === undefined) return undefined;
  return { kind: 'size', bytes, percent: (bytes / diskBytes) * 100 };
}

/** Why `budget` is not a budget for a disk of `diskBytes`, or undefined when it is one. */
export function budgetProblem(text: string, diskBytes: number, diskText: string): string | undefined {
  const pct = budgetPercentPattern.exec(text.trim());
  if (pct?.[1]) {
    const percent = Number(pct[1]);
    return percent > 0 && percent <= 100
      ? undefined
      : `a percentage must be above 0% and at most 100%, got "${text}"`;
  }
  const bytes = parseSize(text);
  if (bytes === undefined)
    return `expected a size such as "16G" or a percentage such as "80%", got "${text}"`;
  if (bytes < 64 * 1024 ** 2) return `the budget must be at least 64 MiB, got "${text}"`;
  if (bytes > diskBytes)
    return `the budget ${text} is larger than the data disk (dataDisk.size ${diskText}): lower it or use a percentage such as "80%"`;
  return undefined;
}

/** A byte count as docuum's --threshold takes it ("512 MiB", "3 GiB"), rounded down to whole MiB. */
function docuumBytes(bytes: number): string {
  const mib = Math.floor(bytes / 1024 ** 2);
  return mib % 1024 === 0 ? `${mib / 1024} GiB` : `${mib} MiB`;
}

/** A percentage without a long tail of digits ("40%", "12.5%"). */
function percentText(percent: number): string {
  return `${Math.floor(percent * 100) / 100}%`;
}

/** The figures each enforcer gets from the budget. */
export interface BudgetFigures {
  /** What Docker may use of the data disk, in bytes of dataDisk.size. */
  bytes: number;
  /** docuum --threshold: a percentage of the disk when the budget is one (it follows a grown disk). */
  docuumThreshold: string;
  /** BuildKit's builder.gc defaultKeepStorage, in bytes (whole MiB). */
  buildCacheKeepBytes: number;
}

export function budgetFigures(budget: Budget, docuumThreshold: string | undefined): BudgetFigures {
  const buildCacheKeepBytes = Math.floor((budget.bytes * buildCacheShare) / 1024 ** 2) * 1024 ** 2;
  const derived =
    budget.kind === 'percent'
      ? percentText(budget.percent * docuumShare)
      : docuumBytes(budget.bytes * docuumShare);
  return { bytes: budget.bytes, docuumThreshold: docuumThreshold ?? derived, buildCacheKeepBytes };
}

/** "7d", "12h", "30m", "90s", "2w" → seconds; undefined for anything else. */
export function parseIdle(text: string): number | undefined {
  const m = /^(\d+)\s*([smhdw])$/.exec(text.trim());
  if (!m?.[1] || !m[2]) return undefined;
  const unit = { s: 1, m: 60, h: 3600, d: 86400, w: 604800 }[m[2] as 's' | 'm' | 'h' | 'd' | 'w'];
  const seconds = Number(m[1]) * unit;
  return seconds > 0 && Number.isSafeInteger(seconds) ? seconds : undefined;
}
