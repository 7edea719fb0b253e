/** Turn a failed Buildroot build's log into: which package, which step, why, and what to do. */
import { parseProgressLine, type StepKind, stepKind } from './progress.js';

// biome-ignore lint/suspicious/noControlCharactersInRegex: terminal escapes are what we strip
const escapes = /\u001b\[[0-9;]*[A-Za-z]/g;

export interface Diagnosis {
  pkg?: string;
  version?: string;
  step: StepKind | 'unknown';
  /** URLs the download tried, for download failures. */
  urls: string[];
  /** The relevant tail of the log. */
  excerpt: string;
  nextStep: string;
}

const stampSteps: Record<string, StepKind> = {
  downloaded: 'download',
  actual_downloaded: 'download',
  extracted: 'extract',
  rsynced: 'extract',
  patched: 'patch',
  configured: 'configure',
  built: 'build',
  target_installed: 'install',
  staging_installed: 'install',
  host_installed: 'install',
  images_installed: 'install',
  installed: 'install',
};

export function diagnoseBuildLog(log: string, context: { out: string; dlDir: string }): Diagnosis {
  const lines = log.split('\n');
  let pkg: string | undefined;
  let version: string | undefined;
  let step: Diagnosis['step'] = 'unknown';
  let lastProgressIndex = -1;
  lines.forEach((line, i) => {
    const p = parseProgressLine(line);
    if (p) {
      lastProgressIndex = i;
      if (p.pkg) {
        pkg = p.pkg;
        version = p.version;
      }
      step = stepKind(p.step);
      if (step === 'other') step = 'unknown';
    }
  });
  // make's own error line names the package and the stamp, which is the most reliable.
  for (const line of lines) {
    const m = /\*\*\* \[[^\]]*\/build\/([^/\s]+)\/\.stamp_(\w+)\] Error/.exec(line);
    if (m?.[1] && m[2]) {
      const dir = m[1];
      if (!(pkg && version && dir === `${pkg}-${version}`)) {
        const split = /^(.*?)-(\d[^/]*)$/.exec(dir);
        pkg = split?.[1] ?? dir;
        version = split?.[2] ?? '';
      }
      step = stampSteps[m[2]] ?? step;
      break;
    }
  }
  const from = lastProgressIndex >= 0 ? lastProgressIndex : Math.max(0, lines.length - 30);
  const relevant = lines.slice(from).filter((l) => l.trim() !== '');
  const excerpt = relevant
    .slice(-25)
    .map((l) => l.replace(escapes, ''))
    .join('\n');
  const urls = [
    ...new Set([...relevant.join('\n').matchAll(/'((?:https?|ftp):\/\/[^']+)'/g)].map((m) => m[1] ?? '')),
  ].filter(Boolean);
  if (step === 'download' && urls.length === 0) {
    for (const m of relevant.join('\n').matchAll(/((?:https?|ftp):\/\/\S+)/g)) if (m[1]) urls.push(m[1]);
  }
  const target = pkg ?? '<package>';
  const dlSub = target.replace(/^host-/, '');
  const nextStep: Record<Diagnosis['step'], string> = {
    download: `the source of ${target} could not be downloaded; on a networked machine run 'appliance source --dl-dir ${context.dlDir}' (or copy the archive into ${context.dlDir}/${dlSub}/), then build again here`,
    extract: `the archive of ${target} may be corrupt: remove it from ${context.dlDir}/${dlSub}/ and build again`,
    patch: `a patch for ${target} does not apply; check BR2_GLOBAL_PATCH_DIR and the package's patches`,
    configure: `read the configure errors above; after fixing, run 'make -C ${context.out} ${target}-dirclean' and build again`,
    build: `read the compiler errors above; after fixing, run 'make -C ${context.out} ${target}-dirclean' and build again`,
    install: `installing ${target} failed; run 'make -C ${context.out} ${target}-dirclean' and build again`,
    image: 'building the images failed; check free disk space and the filesystem settings, then build again',
    other: 'see the log',
    unknown: 'see the log excerpt above',
  };
  return { pkg, version, step, urls, excerpt, nextStep: nextStep[step] };
}
