/**
 * Parsers for command-line values, shared by every command: whole numbers (seconds, counts),
 * sizes and settings that mirror appliance.yaml (checked by the schema itself), NAME=FILE pairs,
 * libvirt URIs. Each is a commander argParser, so a bad value stops the command with one line
 * and exit 2 before anything is done.
 */
import { type Command, Option } from 'commander';
import { parseSetting, settingFacts } from './config/index.js';
import { ApplianceError } from './errors.js';
import { shownValue } from './fsguard.js';

/** A whole number from `min` to `max`, written as plain digits ("120", not "2m", "1e2" or " "). */
export function wholeNumber(
  flag: string,
  what: string,
  min: number,
  max: number,
  hint?: string,
): (value: string) => number {
  return (value: string) => {
    const n = /^\d{1,15}$/.test(value) ? Number(value) : Number.NaN;
    if (!Number.isSafeInteger(n) || n < min || n > max) {
      throw new ApplianceError(`${flag} ${shownValue(value)} is not ${what} from ${min} to ${max}`, {
        hint: hint ?? `pass a whole number, e.g. ${flag} ${Math.max(min, Math.min(max, 120))}`,
      });
    }
    return n;
  };
}

/** The longest wait any flag accepts: a day. */
export const maxSeconds = 86_400;

/** A number of seconds from `min` to `max` (default: a day). */
export const seconds = (flag: string, min: number, max = maxSeconds) =>
  wholeNumber(
    flag,
    'a whole number of seconds',
    min,
    max,
    `pass seconds as digits, e.g. ${flag} ${Math.max(min, Math.min(max, 120))}`,
  );

/**
 * A value for a setting of appliance.yaml (e.g. `dataDisk.size`), checked by that setting's own
 * schema so the flag and the config accept exactly the same values. Returns the text.
 */
export function setting(
  flag: string,
  path: readonly string[],
  what: string,
  example: string,
  hint = `pass e.g. ${flag} ${example}`,
): (value: string) => string {
  return (value: string) => {
    const problem = parseSetting(path, value);
    if (problem)
      throw new ApplianceError(
        `${flag} ${shownValue(value)} is not ${what} that ${path.join('.')} accepts (${problem})`,
        { hint },
      );
    return value;
  };
}

/**
 * A commander option for a flag that mirrors the setting at `path` of appliance.yaml, built from
 * the schema so the two cannot drift: its choices (an enum's values, shown in --help), its
 * parser (the setting's own validation, or a whole number within the setting's bounds) and the
 * default named in its help. It has no commander default: a command uses the config's value
 * when the flag is not given. `fallback` replaces the "default: …" text where the command's
 * default is not the setting's (e.g. `check` without --arch checks both).
 */
export function settingOption(
  flags: string,
  path: readonly string[],
  o: { help: string; what: string; fallback?: string },
): Option {
  const facts = settingFacts(path);
  const flag = /--[\w-]+/.exec(flags)?.[0] ?? flags;
  const name = path.join('.');
  const example = String(facts.default ?? facts.choices?.[0] ?? '');
  const fallback =
    o.fallback ?? `${name} in appliance.yaml${facts.default === undefined ? '' : `, ${example} unless set`}`;
  const option = new Option(flags, `${o.help} (default: ${fallback})`);
  if (facts.choices) option.choices(facts.choices);
  if (facts.integer) return option.argParser(wholeNumber(flag, o.what, facts.integer.min, facts.integer.max));
  const hint = facts.choices ? `pass one of ${facts.choices.join(', ')}` : undefined;
  return option.argParser(setting(flag, path, o.what, example, hint));
}

/** A sha256 written as 64 hex digits. */
export function sha256Hex(flag: string): (value: string) => string {
  return (value: string) => {
    if (!/^[0-9a-fA-F]{64}$/.test(value))
      throw new ApplianceError(`${flag} ${shownValue(value)} is not a sha256 of 64 hex digits`, {
        hint: `pass the tarball's sha256, e.g. from 'sha256sum'`,
      });
    return value.toLowerCase();
  };
}

export interface Credential {
  name: string;
  file: string;
}

/** Collects repeated --credential NAME=FILE, refusing malformed pairs and repeated names. */
export function credential(value: string, previous: Credential[] = []): Credential[] {
  const at = value.indexOf('=');
  if (at <= 0 || at === value.length - 1)
    throw new ApplianceError(`--credential ${shownValue(value)} is not NAME=FILE`, {
      hint: 'e.g. --credential gitlab-runner.token=/root/token',
    });
  const name = value.slice(0, at);
  if (previous.some((c) => c.name === name))
    throw new ApplianceError(`--credential ${name} is given twice`, {
      hint: 'pass each credential name once',
    });
  return [...previous, { name, file: value.slice(at + 1) }];
}

/** Collects a repeatable string option. */
export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

const libvirtDrivers = [
  'qemu',
  'test',
  'lxc',
  'xen',
  'libxl',
  'ch',
  'bhyve',
  'vbox',
  'vz',
  'esx',
  'gsx',
  'vpx',
  'hyperv',
  'openvz',
  'vmwareplayer',
  'vmwarews',
  'vmwarefusion',
  'remote',
];
const libvirtTransports = ['unix', 'ssh', 'libssh', 'libssh2', 'tcp', 'tls', 'ext'];

/** A libvirt connection URI: driver[+transport]://[user@][host][:port]/path[?params]. */
export function libvirtUri(value: string): string {
  if (!isLibvirtUri(value)) {
    throw new ApplianceError(`--connect ${shownValue(value)} is not a libvirt URI`, {
      hint: 'e.g. qemu:///system or qemu+ssh://root@host/system',
    });
  }
  return value;
}

/** A libvirt URI of a known driver and transport: qemu:///system, qemu+ssh://user@host/system, … */
export function isLibvirtUri(value: string): boolean {
  const m = /^([a-z0-9]+)(?:\+([a-z0-9]+))?:\/\/[^\s/]*\/[^\s]*$/.exec(value);
  return Boolean(m?.[1] && libvirtDrivers.includes(m[1]) && (!m[2] || libvirtTransports.includes(m[2])));
}

interface OptionLike {
  flags: string;
  long?: string;
  required?: boolean;
  optional?: boolean;
  variadic?: boolean;
  parseArg?: (value: string, previous: unknown) => unknown;
}

/**
 * Refuse option values that start with "-" on every option that takes a value, in `program`
 * and all its subcommands: `--out --force` means a forgotten value, not a folder named --force.
 * Numeric options keep their own parser (which says why "-5" is no number).
 */
export function refuseDashValues(program: Command): void {
  const visit = (cmd: Command) => {
    for (const opt of cmd.options as unknown as OptionLike[]) {
      if (!(opt.required || opt.optional)) continue;
      const inner = opt.parseArg;
      const name = opt.long ?? opt.flags;
      opt.parseArg = (value: string, previous: unknown) => {
        // A negative number goes to the option's own parser, which says why it is out of range.
        if (value.startsWith('-') && !(inner && /^-\d/.test(value))) {
          throw new ApplianceError(`${name} needs a value, got the option-like ${shownValue(value)}`, {
            hint: `give ${name} a value (write a path that starts with "-" as ./${value})`,
          });
        }
        return inner ? inner(value, previous) : value;
      };
    }
    for (const sub of cmd.commands) visit(sub);
  };
  visit(program);
}
