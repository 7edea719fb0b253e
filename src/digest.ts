/**
 * Content digests and name-based identifiers, written once for every stage: the sha256 of a
 * buffer or of a file (streamed, so a root filesystem image is not read into memory), and
 * RFC 4122 version-5 UUIDs.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { pipeline } from 'node:stream/promises';

/** Hex sha256 of bytes or a UTF-8 string. */
export function sha256Of(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Hex sha256 of a file's content, streamed. */
export async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  await pipeline(createReadStream(path), hash);
  return hash.digest('hex');
}

/** RFC 4122's URL namespace, for names that are URLs or URNs. */
export const urlNamespace = Buffer.from('6ba7b8119dad11d180b400c04fd430c8', 'hex');

/**
 * A name-based UUID (RFC 4122 version 5: SHA-1 of namespace and name). An empty namespace is
 * allowed: the libvirt domain UUIDs have always been made that way, and machine-id follows them.
 */
export function uuidV5(name: string, namespace: Buffer = urlNamespace): string {
  const b = createHash('sha1').update(namespace).update(name, 'utf8').digest().subarray(0, 16);
  b[6] = ((b[6] ?? 0) & 0x0f) | 0x50;
  b[8] = ((b[8] ?? 0) & 0x3f) | 0x80;
  const h = b.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}
