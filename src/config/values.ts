/** Parsers and validators for the value formats appliance.yaml uses. Pure functions. */
import { isIPv4, isIPv6 } from 'node:net';

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

/** The 4 or 16 bytes of an IPv4 or IPv6 address (node:net has checked its form). */
function addressBytes(address: string): number[] {
  if (isIPv4(address)) return address.split('.').map(Number);
  let text = address;
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text)?.[1];
  if (v4) {
    const [a = 0, b = 0, c = 0, d = 0] = v4.split('.').map(Number);
    text = `${text.slice(0, -v4.length)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head = '', tail] = text.split('::');
  const words = (part: string) => (part === '' ? [] : part.split(':').map((w) => Number.parseInt(w, 16)));
  const left = words(head);
  const right = tail === undefined ? [] : words(tail);
  const all = [...left, ...new Array(8 - left.length - right.length).fill(0), ...right];
  return all.flatMap((w) => [w >> 8, w & 0xff]);
}

/** 4 or 16 address bytes as text (IPv6 with its longest run of zero words shortened to "::"). */
function formatAddress(bytes: number[]): string {
  if (bytes.length === 4) return bytes.join('.');
  const words = Array.from({ length: 8 }, (_, i) => ((bytes[2 * i] ?? 0) << 8) | (bytes[2 * i + 1] ?? 0));
  let best = { at: -1, length: 1 };
  for (let i = 0; i < 8; i++) {
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > best.length) best = { at: i, length: j - i };
  }
  const hex = (ws: number[]) => ws.map((w) => w.toString(16)).join(':');
  if (best.at < 0) return hex(words);
  return `${hex(words.slice(0, best.at))}::${hex(words.slice(best.at + best.length))}`;
}

/** A prefix of network.blockPrefixes: an IPv4 or IPv6 network in CIDR notation, no host bits set. */
export interface Cidr {
  family: 'ipv4' | 'ipv6';
  address: string;
  prefix: number;
}

/** "2001:db8:1::/48", "192.0.2.0/24" → the network, or why it is not one (undefined problem = fine). */
export function parseCidr(text: string): { cidr?: Cidr; problem?: string } {
  const m = /^([^/\s]+)\/(\d{1,3})$/.exec(text);
  const address = m?.[1] ?? '';
  const family = isIPv4(address) ? 'ipv4' : isIPv6(address) && !address.includes('%') ? 'ipv6' : undefined;
  if (!m?.[2] || !family)
    return { problem: 'expected an IPv4 or IPv6 prefix such as "192.0.2.0/24" or "2001:db8:1::/48"' };
  const prefix = Number(m[2]);
  const max = family === 'ipv4' ? 32 : 128;
  if (prefix > max)
    return {
      problem: `the prefix length must be 0-${max} for ${family === 'ipv4' ? 'IPv4' : 'IPv6'}, got /${prefix}`,
    };
  const bytes = addressBytes(address);
  const hostBits = bytes.some((byte, i) => {
    const keep = Math.max(0, Math.min(8, prefix - i * 8));
    return (byte & (0xff >> keep)) !== 0;
  });
  if (hostBits) {
    const network = bytes.map(
      (byte, i) => byte & (0xff << (8 - Math.max(0, Math.min(8, prefix - i * 8)))) & 0xff,
    );
    return {
      problem: `host bits are set beyond /${prefix} (the network is ${formatAddress(network)}/${prefix})`,
    };
  }
  return { cidr: { family, address, prefix } };
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
