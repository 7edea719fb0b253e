/** Finding, identifying and fetching Buildroot trees. */
import { createWriteStream, existsSync, mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { sha256File } from '../digest.js';
import { ApplianceError, ExitCode } from '../errors.js';
import { info } from '../log.js';
import { cacheDir, packageRoot } from '../paths.js';
import { runCommand } from '../run/index.js';

export interface ReleasePin {
  tag: string;
  commit: string | null;
  url: string;
  sha256: string | null;
}

export function releasePin(version: string): ReleasePin | undefined {
  const pins = JSON.parse(readFileSync(join(packageRoot(), 'buildroot', 'pin.json'), 'utf8')) as Record<
    string,
    ReleasePin
  >;
  return pins[version];
}

/** The release a Buildroot tree says it is (BR2_VERSION in its Makefile), or undefined. */
export function buildrootVersionOf(dir: string): string | undefined {
  const makefile = join(dir, 'Makefile');
  if (!existsSync(makefile) || !existsSync(join(dir, 'Config.in')) || !existsSync(join(dir, 'package')))
    return undefined;
  const m = /^export BR2_VERSION := (\S+)/m.exec(readFileSync(makefile, 'utf8'));
  return m?.[1];
}

export function cachedBuildrootDir(version: string): string {
  return join(cacheDir(), 'buildroot', version);
}

/** Locate the Buildroot tree to use: --buildroot, then APPLIANCE_BUILDROOT, then the cache. */
export function locateBuildroot(version: string, explicit?: string): string {
  const candidates: [string, string][] = [];
  if (explicit) candidates.push([explicit, '--buildroot']);
  else if (process.env.APPLIANCE_BUILDROOT)
    candidates.push([process.env.APPLIANCE_BUILDROOT, 'APPLIANCE_BUILDROOT']);
  else candidates.push([cachedBuildrootDir(version), 'the cache']);
  const [dir, from] = candidates[0] as [string, string];
  const found = buildrootVersionOf(dir);
  if (!found) {
    throw new ApplianceError(`no Buildroot tree at ${resolve(dir)} (from ${from})`, {
      hint: `run 'appliance buildroot fetch' (or pass --buildroot DIR / set APPLIANCE_BUILDROOT) to get Buildroot ${version}`,
      exitCode: ExitCode.hostProblem,
    });
  }
  if (found !== version) {
    throw new ApplianceError(
      `the Buildroot tree at ${resolve(dir)} is ${found}, but appliance.yaml pins ${version}`,
      {
        hint: `point to a ${version} tree, or change buildroot.version`,
      },
    );
  }
  return resolve(dir);
}

export interface FetchOptions {
  version: string;
  /** A local git repository (clone or mirror) of Buildroot. */
  fromGit?: string;
  /** A local folder holding an extracted Buildroot tree. */
  fromDir?: string;
  /** Download the release tarball (default: the pinned URL). */
  url?: string;
  sha256?: string;
  /** Where to put the tree (default: the cache). */
  dest?: string;
}

/** Get a Buildroot release into `dest` atomically; returns the tree's path. */
export async function fetchBuildroot(options: FetchOptions): Promise<string> {
  const dest = resolve(options.dest ?? cachedBuildrootDir(options.version));
  if (buildrootVersionOf(dest) === options.version) {
    info(`Buildroot ${options.version} is already at ${dest}`);
    return dest;
  }
  if (existsSync(dest)) {
    throw new ApplianceError(`${dest} exists but is not a Buildroot ${options.version} tree`, {
      hint: 'remove it or choose another --out',
    });
  }
  const pin = releasePin(options.version);
  const staging = `${dest}.partial-${process.pid}`;
  rmSync(staging, { recursive: true, force: true });
  mkdirSync(staging, { recursive: true });
  try {
    if (options.fromGit) await extractFromGit(options.fromGit, options.version, pin, staging);
    else if (options.fromDir) await copyFromDir(options.fromDir, staging);
    else
      await download(
        options.url ?? pin?.url,
        options.sha256 ?? pin?.sha256 ?? undefined,
        options.version,
        staging,
      );
    const found = buildrootVersionOf(staging);
    if (found !== options.version) {
      throw new ApplianceError(
        `the fetched tree is Buildroot ${found ?? '(unrecognised)'}, not ${options.version}`,
        {
          hint: 'check the source you fetched from',
        },
      );
    }
    renameSync(staging, dest);
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
  info(`Buildroot ${options.version} is ready at ${dest}`);
  return dest;
}

async function extractFromGit(
  repo: string,
  version: string,
  pin: ReleasePin | undefined,
  staging: string,
): Promise<void> {
  const tag = pin?.tag ?? version;
  const rev = await runCommand(
    'git',
    ['-C', repo, 'rev-parse', '--verify', '--quiet', `refs/tags/${tag}^{commit}`],
    {
      allowFailure: true,
    },
  );
  if (rev.exitCode !== 0) {
    throw new ApplianceError(`git repository ${repo} has no tag ${tag}`, {
      hint: 'fetch the tags of buildroot/buildroot into it',
    });
  }
  const commit = rev.stdout.trim();
  if (pin?.commit && commit !== pin.commit) {
    throw new ApplianceError(`tag ${tag} in ${repo} points to ${commit}, but the pin says ${pin.commit}`, {
      hint: 'the repository is not the public Buildroot history; use a genuine clone',
    });
  }
  await runCommand('sh', ['-c', 'git -C "$1" archive "$2" | tar -x -C "$3"', 'sh', repo, commit, staging], {
    purpose: `extracting Buildroot ${tag} from ${repo}`,
  });
}

async function copyFromDir(dir: string, staging: string): Promise<void> {
  if (!buildrootVersionOf(dir)) {
    throw new ApplianceError(`${dir} is not a Buildroot tree (no Makefile with BR2_VERSION)`, {
      hint: 'pass the top folder of a Buildroot release',
    });
  }
  await runCommand('cp', ['-a', `${resolve(dir)}/.`, staging], { purpose: `copying Buildroot from ${dir}` });
}

async function download(
  url: string | undefined,
  sha256: string | undefined,
  version: string,
  staging: string,
): Promise<void> {
  if (!url)
    throw new ApplianceError(`no download URL is known for Buildroot ${version}`, {
      hint: 'pass --url, --from-git or --from-dir',
    });
  if (!sha256) {
    throw new ApplianceError(`no sha256 is pinned for ${url}`, {
      hint: 'pass --sha256 with the hash from the release .sign file, or use --from-git with a Buildroot clone',
    });
  }
  if (!/^[0-9a-f]{64}$/.test(sha256))
    throw new ApplianceError(`--sha256 must be 64 hex digits, got ${JSON.stringify(sha256)}`);
  const archive = join(staging, '..', `.buildroot-${version}-${process.pid}.tar`);
  try {
    let response: Response;
    try {
      response = await fetch(url);
    } catch (e) {
      throw new ApplianceError(
        `cannot download ${url}: ${(e as Error).cause ? String((e as Error & { cause: Error }).cause.message) : (e as Error).message}`,
        {
          hint: 'check the network, or use --from-git / --from-dir on an offline machine',
          exitCode: ExitCode.hostProblem,
        },
      );
    }
    if (!response.ok || !response.body) {
      throw new ApplianceError(`downloading ${url} failed: HTTP ${response.status}`, {
        exitCode: ExitCode.hostProblem,
        hint: 'check the URL',
      });
    }
    await pipeline(
      Readable.fromWeb(response.body as import('node:stream/web').ReadableStream),
      createWriteStream(archive),
    );
    const got = await sha256File(archive);
    if (got !== sha256) {
      throw new ApplianceError(`sha256 mismatch for ${url}: expected ${sha256}, got ${got}`, {
        hint: 'the download is corrupt or not the pinned release; nothing was extracted',
        exitCode: ExitCode.checkFailed,
      });
    }
    await runCommand('tar', ['-x', '-f', archive, '-C', staging, '--strip-components=1'], {
      purpose: `extracting ${url}`,
    });
  } finally {
    rmSync(archive, { force: true });
  }
}
