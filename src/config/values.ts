/** Parsers and validators for the value formats appliance.yaml uses. Pure functions. */
import { isIPv6 } from 'node:net';

const units: Record<string, number> = { '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3, T: 1024 ** 4 };

/** "20G", "512MiB", "1.5 GiB" → bytes (binary units). Returns undefined for anything else. */
export function parseSize(text: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?$/i.exec(text.trim());
  if (!m?.[1]) return undefined;
  const unit = units[(m[2] ?? '').toUpperCase()];
  if (unit === undefined) return undefined;
  const bytes = Math.round(Number(m[1]) * unit);
  return Number.isSafeInteger(bytes) && bytes > 0 ? bytes : undefined;
}

export function formatSize(bytes: number): string {
  for (const [suffix, unit] of [
    ['T', 1024 ** 4],
    ['G', 1024 ** 3],
    ['M', 1024 ** 2],
    ['K', 1024],
  ] as const) {
    if (bytes % unit === 0) return `${bytes / unit}${suffix}`;
  }
  return `${bytes}`;
}

/** An IPv6 network in CIDR notation, e.g. fd00:d0c::/64. */
export function parseIPv6Cidr(text: string): { address: string; prefix: number } | undefined {
  const m = /^([0-9a-fA-F:.]+)\/(\d{1,3})$/.exec(text);
  if (!m?.[1] || !m[2]) return undefined;
  const prefix = Number(m[2]);
  if (!isIPv6(m[1]) || prefix > 128) return undefined;
  return { address: m[1], prefix };
}

const sshKeyTypes = [
  'ssh-ed25519',
  'ssh-rsa',
  'ecdsa-sha2-nistp256',
  'ecdsa-sha2-nistp384',
  'ecdsa-sha2-nistp521',
  'sk-ssh-ed25519@openssh.com',
  'sk-ecdsa-sha2-nistp256@openssh.com',
];

/** Why an authorized_keys line is not a public key we accept, or undefined when it is fine. */
export function sshKeyProblem(line: string): string | undefined {
  if (/[\r\n]/.test(line)) return 'contains a line break';
  const [type, blob] = line.trim().split(/\s+/);
  if (!type || !sshKeyTypes.includes(type)) return `key type must be one of ${sshKeyTypes.join(', ')}`;
  if (!blob || !/^[A-Za-z0-9+/]+={0,2}$/.test(blob)) return 'the key data is not base64';
  const raw = Buffer.from(blob, 'base64');
  const len = raw.length >= 4 ? raw.readUInt32BE(0) : -1;
  if (len <= 0 || len + 4 > raw.length || raw.subarray(4, 4 + len).toString('latin1') !== type) {
    return `the key data does not encode a ${type} key`;
  }
  return undefined;
}

/** A kernel config fragment line: CONFIG_X=y|m|n|number|"string", or "# CONFIG_X is not set". */
export const kernelOptionPattern =
  /^(?:CONFIG_[A-Z0-9_]+=(?:[ymn]|-?\d+|0x[0-9a-fA-F]+|"(?:[^"\\]|\\.)*")|# CONFIG_[A-Z0-9_]+ is not set)$/;

export const buildrootSymbolPattern = /^BR2_[A-Z0-9_]+$/;

/** docuum's --threshold: a byte size ("10 GB", "10GiB") or, on Linux, a percentage ("80%"). */
export const docuumThresholdPattern =
  /^(?:\d+(?:\.\d+)?\s*(?:B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)|(?:100|[1-9]?\d)(?:\.\d+)?\s*%)$/;

/** docuum's --min-age: a duration such as "1d", "12h", "30m", "2 weeks". */
export const durationPattern =
  /^\d+\s*(?:s|sec|secs|second|seconds|m|min|mins|minute|minutes|h|hr|hrs|hour|hours|d|day|days|w|week|weeks)$/;

export function regexProblem(pattern: string): string | undefined {
  try {
    new RegExp(pattern);
    return undefined;
  } catch (e) {
    return (e as Error).message.replace(/^Invalid regular expression: /, '');
  }
}

/** A Docker image reference: [registry/]name[:tag][@digest]. */
export const imageReferencePattern =
  /^(?:[a-z0-9]+(?:[._-][a-z0-9]+)*(?::\d+)?\/)?[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*(?::[\w][\w.-]{0,127})?(?:@sha256:[0-9a-f]{64})?$/;

/** A docker volume spec as gitlab-runner takes it: "/path" or "/host:/container[:ro|rw]". */
export const volumePattern = /^(?:\/[^:\s"]*|[A-Za-z0-9][\w.-]*:\/[^:\s"]*)(?::\/[^:\s"]*)?(?::(?:ro|rw))?$/;
