/**
 * Which kernel + root filesystem pairs a VM keeps, and which one `vm update` and `vm rollback`
 * switch to: pure functions over what the domain XML records, so each step can be repeated
 * after a crash. The booted pair is always read from the domain itself (its boot files and the
 * digests `vm define`/`vm update` recorded); the others from the `<appliance:pair>` list the
 * domain's metadata carries, newest first. A volume no kept pair names is unused, whatever
 * step was interrupted: uploads go to volumes named by their content and are recorded only
 * once complete, so an interrupted upload is an unused volume, deleted by the next sweep.
 */
import { basename } from 'node:path';
import { ApplianceError } from '../errors.js';
import { imageVolumes } from '../guest/index.js';
import {
  domainFiles,
  type ImageDigests,
  type ImagePair,
  type ImageRef,
  recordedDigests,
  recordedPairs,
} from './xml.js';

export type { ImagePair, ImageRef };

/** Two pairs are the same image when every file has the same content. */
export function samePair(a: ImagePair | undefined, b: ImagePair | undefined): boolean {
  if (!a || !b) return false;
  return (
    a.kernel.sha256 === b.kernel.sha256 &&
    a.rootfs.sha256 === b.rootfs.sha256 &&
    a.initrd?.sha256 === b.initrd?.sha256
  );
}

/** A short name for a pair in messages: the root filesystem's sha256, abbreviated. */
export function pairLabel(pair: ImagePair): string {
  return `rootfs ${pair.rootfs.sha256.slice(0, 12)}`;
}

/**
 * The pair the domain boots from: its kernel, initrd and first disk (the root filesystem, as
 * domainXml writes them), each a volume of the pool named by its file, with the recorded
 * digests. Undefined when the domain records no digests (it was not defined by us).
 */
export function bootedPair(xml: string, what = 'the domain XML'): ImagePair | undefined {
  const digests: ImageDigests = recordedDigests(xml, what);
  const files = domainFiles(xml, what);
  const kernelFile = files[0];
  const initrdFile = digests.initrd ? files[1] : undefined;
  const rootfsFile = files[digests.initrd ? 2 : 1];
  if (!digests.kernel || !digests.rootfs || !kernelFile || !rootfsFile) return undefined;
  const pair: ImagePair = {
    kernel: { sha256: digests.kernel, volume: basename(kernelFile) },
    rootfs: { sha256: digests.rootfs, volume: basename(rootfsFile) },
  };
  if (digests.initrd && initrdFile) pair.initrd = { sha256: digests.initrd, volume: basename(initrdFile) };
  return pair;
}

/** The pairs the VM keeps, newest first, the booted one first of all. */
export function keptPairs(xml: string, what = 'the domain XML'): ImagePair[] {
  const booted = bootedPair(xml, what);
  const others = recordedPairs(xml, what).filter((p) => !samePair(p, booted));
  return booted ? [booted, ...others] : others;
}

/** After an update to `next`: it first, then the others, without duplicates (not trimmed yet). */
export function pairsAfterUpdate(pairs: ImagePair[], next: ImagePair): ImagePair[] {
  return [next, ...pairs.filter((p) => !samePair(p, next))];
}

/** The pairs kept once the booted one proved healthy: the newest `keep`. */
export function trimPairs(pairs: ImagePair[], keep: number): ImagePair[] {
  return pairs.slice(0, Math.max(1, keep));
}

/** After a failed update: the failed pair (first) is dropped; the previous one boots again. */
export function pairsAfterFailedUpdate(pairs: ImagePair[]): ImagePair[] {
  return pairs.slice(1);
}

/**
 * `vm rollback`: the previous pair becomes the booted one; the one it replaces stays kept as
 * the newest other pair, so a second rollback goes forward again.
 */
export function pairsAfterRollback(pairs: ImagePair[], vmName: string): ImagePair[] {
  const [booted, previous, ...rest] = pairs;
  if (!booted || !previous)
    throw new ApplianceError(`${vmName} keeps no previous image to roll back to`, {
      hint: "only a VM updated with 'appliance vm update' keeps one (vm.keepImages)",
    });
  return [previous, booted, ...rest];
}

/** The volumes of the pairs, each once. */
export function pairVolumes(pairs: ImagePair[]): string[] {
  const names = new Set<string>();
  for (const p of pairs) for (const ref of [p.kernel, p.rootfs, p.initrd]) if (ref) names.add(ref.volume);
  return [...names];
}

/**
 * The appliance's kernel, initrd and root filesystem volumes among `volumes` (a pool listing)
 * that no pair in `keep` names: the fixed names of `vm define`, the content-named ones of `vm
 * update` and the old `-<sha16>` naming all match. Data disk and credentials never do.
 */
export function unusedImageVolumes(vmName: string, volumes: string[], keep: ImagePair[]): string[] {
  const v = imageVolumes(vmName);
  const kept = new Set(pairVolumes(keep));
  return volumes.filter(
    (name) =>
      !kept.has(name) &&
      [v.kernel, v.initrd, v.rootfs].some((image) => name === image || name.startsWith(`${image}-`)),
  );
}

/**
 * Where an image of the new pair goes: a volume a kept pair already holds with this content
 * (nothing to upload), else the volume named by its digest (to be uploaded, after deleting
 * whatever an interrupted upload left there).
 */
export function volumeFor(
  vmName: string,
  kind: 'kernel' | 'initrd' | 'rootfs',
  sha256: string,
  pairs: ImagePair[],
): { ref: ImageRef; upload: boolean } {
  for (const p of pairs) {
    const ref = p[kind];
    if (ref?.sha256 === sha256) return { ref, upload: false };
  }
  return { ref: { sha256, volume: imageVolumes(vmName).byDigest(kind, sha256) }, upload: true };
}
