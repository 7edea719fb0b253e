/**
 * The one definition of appliance.yaml. Types, validation, appliance.schema.json and the
 * README's configuration reference are all derived from this schema.
 */
import { isIPv4, isIPv6 } from 'node:net';
import { z } from 'zod';
import { shownValue } from '../fsguard.js';
import { budgetProblem, parseIdle } from './budget.js';
import { kernelVersionProblem } from './kernel.js';
import { emulateProblem } from './multiarch.js';
import {
  buildrootSymbolPattern,
  docuumThresholdPattern,
  durationPattern,
  imageReferencePattern,
  kernelOptionPattern,
  parseCidr,
  parseIPv6Cidr,
  parseSize,
  regexProblem,
  sshKeyProblem,
  volumePattern,
} from './values.js';

const shown = shownValue;

/** Settings that may hold line breaks: shell commands run over SSH, never written into a file. */
const multiLine = (path: readonly PropertyKey[]) =>
  path[0] === 'smoke' && path[1] === 'checks' && path[3] === 'run';

/**
 * No value may carry a control character (a line break above all) into a systemd unit, TOML or
 * XML file: one in `docuum.keep` would split an ExecStart= line. Checked over every string, so
 * a new setting is covered without a rule of its own.
 */
function refuseControlCharacters(value: unknown, ctx: z.RefinementCtx, path: PropertyKey[] = []): void {
  if (typeof value === 'string') {
    const ok = multiLine(path) ? ['\t', '\n'] : [];
    const bad = [...value].find((c) => (c < ' ' || c === '\x7f') && !ok.includes(c));
    if (bad !== undefined)
      ctx.addIssue({
        code: 'custom',
        path,
        message: `must not contain ${bad === '\n' || bad === '\r' ? 'a line break' : `the control character ${JSON.stringify(bad)}`}, got ${shown(value)}`,
      });
  } else if (Array.isArray(value)) {
    value.forEach((v, i) => {
      refuseControlCharacters(v, ctx, [...path, i]);
    });
  } else if (value && typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) {
      refuseControlCharacters(k, ctx, [...path, k]);
      refuseControlCharacters(v, ctx, [...path, k]);
    }
  }
}

const size = (what: string, min: number, max: number) =>
  z
    .string()
    .superRefine((text, ctx) => {
      const bytes = parseSize(text);
      if (bytes === undefined) {
        ctx.addIssue({
          code: 'custom',
          message: `expected a size such as "20G" or "512MiB", got ${shown(text)}`,
        });
      } else if (bytes < min || bytes > max) {
        ctx.addIssue({
          code: 'custom',
          message: `${what} must be between ${min / 1024 ** 2} MiB and ${max / 1024 ** 3} GiB, got ${shown(text)}`,
        });
      }
    })
    .meta({ description: `${what}: a size with a binary unit, e.g. "20G", "512MiB"` });

const matching = (pattern: RegExp, expected: string) =>
  z.string().superRefine((text, ctx) => {
    if (!pattern.test(text))
      ctx.addIssue({ code: 'custom', message: `expected ${expected}, got ${shown(text)}` });
  });

/** A JavaScript regular expression (docuum's `--keep`, a smoke check's `expect`). */
const regularExpression = z.string().superRefine((text, ctx) => {
  const problem = regexProblem(text);
  if (problem)
    ctx.addIssue({
      code: 'custom',
      message: `expected a regular expression, got ${shown(text)} (${problem})`,
    });
});

const httpUrl = z.string().superRefine((text, ctx) => {
  let url: URL | undefined;
  try {
    url = new URL(text);
  } catch {
    url = undefined;
  }
  if (!url || (url.protocol !== 'https:' && url.protocol !== 'http:') || url.hostname === '') {
    ctx.addIssue({
      code: 'custom',
      message: `expected an http(s) URL such as "https://gitlab.example.com", got ${shown(text)}`,
    });
  } else if (url.username || url.password) {
    ctx.addIssue({
      code: 'custom',
      message: 'the URL must not carry credentials; the token goes in a systemd credential',
    });
  }
});

const symbolValue = z.union([
  z.boolean(),
  z.number().int(),
  z.string().regex(/^[^"\n\\]*$/, 'must not contain quotes, backslashes or line breaks'),
]);

/** The architectures an appliance is built for; defconfigs are rendered for each. */
export const architectures = ['x86_64', 'aarch64'] as const;

export const applianceSchema = z
  .strictObject({
    name: matching(
      /^[a-z][a-z0-9-]{0,30}[a-z0-9]$/,
      'a lower-case name of 2-32 letters, digits and dashes, e.g. "ci-runner"',
    )
      .default('runner-appliance')
      .meta({ description: 'Appliance name: hostname, defconfig prefix and libvirt domain name.' }),
    arch: z.enum(architectures).default('x86_64').meta({
      description: 'Target architecture to build, define and boot. Defconfigs are rendered for both.',
    }),
    buildroot: z
      .strictObject({
        version: matching(/^\d{4}\.\d{2}(\.\d+)?$/, 'a Buildroot release such as "2026.02.3"')
          .default('2026.02.3')
          .meta({ description: 'Buildroot release the tree is checked and built against.' }),
        symbols: z
          .record(
            matching(buildrootSymbolPattern, 'a Buildroot symbol such as "BR2_PACKAGE_HTOP"'),
            symbolValue,
          )
          .default({})
          .meta({
            description:
              'Extra Buildroot symbols for the defconfig, e.g. `BR2_PACKAGE_HTOP: y`. true/false mean y/n; they override the generated ones.',
          }),
      })
      .prefault({})
      .meta({ description: 'Buildroot release and extra symbols.' }),
    kernel: z
      .strictObject({
        version: matching(/^\d+\.\d+(\.\d+)?$/, 'a kernel version such as "6.18.7"')
          .superRefine((text, ctx) => {
            const problem = /^\d+\.\d+(\.\d+)?$/.test(text) ? kernelVersionProblem(text) : undefined;
            if (problem) ctx.addIssue({ code: 'custom', message: problem });
          })
          .default('6.18.7')
          .meta({ description: 'Linux kernel version Buildroot builds.' }),
        fragment: z
          .array(
            matching(
              kernelOptionPattern,
              'a kernel option line such as "CONFIG_FOO=y" or "# CONFIG_FOO is not set"',
            ),
          )
          .default([])
          .meta({ description: 'Extra kernel config lines appended to the generated fragment.' }),
      })
      .prefault({})
      .meta({ description: 'Kernel version and extra configuration.' }),
    runner: z
      .strictObject({
        url: httpUrl
          .default('https://gitlab.com')
          .meta({ description: 'GitLab instance the runner registers with.' }),
        executor: z
          .literal('docker')
          .default('docker')
          .meta({ description: 'Runner executor; only "docker".' }),
        concurrent: z
          .number()
          .int()
          .min(1)
          .max(64)
          .default(2)
          .meta({ description: 'Jobs run at the same time.' }),
        defaultImage: matching(imageReferencePattern, 'a Docker image reference such as "alpine:3.22"')
          .default('alpine:3.22')
          .meta({ description: 'Image for jobs that name none.' }),
        privileged: z
          .boolean()
          .default(false)
          .meta({ description: 'Run job containers privileged (needed for docker-in-docker).' }),
        volumes: z
          .array(matching(volumePattern, 'a volume such as "/cache" or "/srv/cache:/cache:ro"'))
          .default(['/cache'])
          .meta({ description: 'Volumes mounted into every job container.' }),
        tokenCredential: matching(
          /^[A-Za-z0-9_.-]{1,28}$/,
          'a credential name of 1-28 letters, digits, ".", "_" or "-" (fw_cfg names are at most 55 bytes)',
        )
          .default('gitlab-runner.token')
          .meta({
            description: 'systemd credential that carries the runner authentication token (glrt-…) at boot.',
          }),
        drainTimeout: z
          .number()
          .int()
          .min(10)
          .max(7 * 24 * 3600)
          .default(3600)
          .meta({
            description:
              "Seconds a stopping runner gets to finish its running jobs (it takes no new ones) before they are killed: the unit's TimeoutStopSec, and how long `vm stop`/`vm update` wait (plus a margin) before forcing the VM off. Default 1 h, GitLab's default job timeout.",
          }),
      })
      .prefault({})
      .meta({ description: 'GitLab Runner settings.' }),
    docker: z
      .strictObject({
        ipv6: z.boolean().default(true).meta({ description: 'Enable IPv6 on the default bridge.' }),
        fixedCidrV6: z
          .string()
          .superRefine((text, ctx) => {
            const cidr = parseIPv6Cidr(text);
            if (!cidr)
              ctx.addIssue({
                code: 'custom',
                message: `expected an IPv6 network such as "fd00:d0c::/64", got ${shown(text)}`,
              });
            else if (cidr.prefix > 80)
              ctx.addIssue({
                code: 'custom',
                message: `the prefix must be /80 or shorter, got /${cidr.prefix}`,
              });
          })
          .default('fd00:d0c:0:1::/64')
          .meta({ description: 'IPv6 subnet of the default bridge (docker fixed-cidr-v6).' }),
        ip6tables: z
          .boolean()
          .default(true)
          .meta({ description: 'Let Docker manage ip6tables (IPv6 NAT for containers).' }),
        logMaxSize: matching(/^\d+[kmg]$/, 'a json-file log size such as "10m"')
          .default('10m')
          .meta({ description: 'Largest container log file before rotation.' }),
      })
      .prefault({})
      .meta({ description: 'Docker daemon options (daemon.json).' }),
    multiarch: z
      .strictObject({
        emulate: z.array(z.string()).optional().meta({
          description:
            'Foreign platforms, as Docker names them, whose containers run through statically linked QEMU user-mode emulators registered at boot (binfmt_misc, F flag), unprivileged and with nothing extra in the image; `docker buildx build --platform` builds for them with the default builder. Unset: [linux/arm64, linux/arm/v7] on an x86_64 appliance, [linux/amd64, linux/arm/v7] on an aarch64 one; [] turns emulation off.',
        }),
      })
      .prefault({})
      .meta({ description: 'Containers of other platforms (QEMU user-mode emulation).' }),
    docuum: z
      .strictObject({
        threshold: matching(docuumThresholdPattern, 'a size such as "10 GB" or a percentage such as "80%"')
          .optional()
          .meta({
            description:
              "Disk use of Docker images (as `docker system df` counts it) above which docuum deletes the least recently used. Unset: three eighths of dataDisk.budget, half of images + build cache, since with the containerd image store that count includes the build cache and leaves out the images' compressed layers (a percentage of the disk when the budget is one).",
          }),
        keep: z
          .array(regularExpression)
          .default([])
          .meta({ description: 'Regular expressions on repository:tag of images never deleted.' }),
        minAge: matching(durationPattern, 'a duration such as "1d" or "12h"')
          .optional()
          .meta({ description: 'Images used more recently than this are never deleted.' }),
        deletionChunkSize: z
          .number()
          .int()
          .min(1)
          .max(100)
          .default(1)
          .meta({ description: 'Images deleted per pass.' }),
      })
      .prefault({})
      .meta({ description: 'docuum: least-recently-used eviction of Docker images.' }),
    dataDisk: z
      .strictObject({
        label: matching(
          /^[A-Za-z0-9][A-Za-z0-9_-]{0,15}$/,
          'an ext4 label of 1-16 letters, digits, "_" or "-"',
        )
          .default('docker-data')
          .meta({
            description:
              'ext4 label of the data disk, mounted on /data; /var/lib/docker, docuum, runner and SSH host-key state live there.',
          }),
        size: size('Data disk size', 1024 ** 3, 64 * 1024 ** 4).default('20G'),
        budget: matching(
          /^(?:\d+(?:\.\d+)?\s*%|\d+(?:\.\d+)?\s*[KMGT]?(?:i?B)?)$/i,
          'a size such as "16G" or a percentage such as "80%"',
        )
          .default('80%')
          .meta({
            description:
              'What Docker may use of the data disk (a size, or a percentage of dataDisk.size): half of it is for images (docuum), a quarter for build cache (the build cache trim timer and builder.gc defaultKeepStorage); the rest is for volumes, containers and logs, bounded by time.',
          }),
        volumeMaxIdle: matching(/^\d+\s*[smhdw]$/, 'a duration such as "7d", "12h" or "2w"')
          .default('7d')
          .meta({
            description:
              "Docker volumes that no container uses and none has used for this long are removed (the runner's cache volumes included), checked every 5 minutes.",
          }),
      })
      .superRefine((disk, ctx) => {
        const problem = budgetProblem(
          disk.budget,
          parseSize(disk.size) ?? Number.POSITIVE_INFINITY,
          disk.size,
        );
        if (problem && parseSize(disk.size) !== undefined)
          ctx.addIssue({ code: 'custom', path: ['budget'], message: problem });
        if (parseIdle(disk.volumeMaxIdle) === undefined)
          ctx.addIssue({
            code: 'custom',
            path: ['volumeMaxIdle'],
            message: `expected a duration such as "7d", got ${shown(disk.volumeMaxIdle)}`,
          });
      })
      .prefault({})
      .meta({ description: 'The writable data disk.' }),
    journal: z
      .strictObject({
        maxUse: size('Journal size', 8 * 1024 ** 2, 1024 ** 3)
          .default('64M')
          .meta({
            description:
              'Largest size of the systemd journal (journald RuntimeMaxUse=). The journal is kept in memory (tmpfs), not on the data disk: the root is read-only, and a full data disk must not stop logging.',
          }),
      })
      .prefault({})
      .meta({ description: 'The systemd journal.' }),
    vm: z
      .strictObject({
        vcpus: z.number().int().min(1).max(256).default(2).meta({ description: 'Virtual CPUs.' }),
        memory: size('Memory', 512 * 1024 ** 2, 1024 ** 4).default('2G'),
        balloon: z.boolean().default(true).meta({
          description: 'virtio balloon with free page reporting, so unused memory returns to the host.',
        }),
        gateway: z
          .string()
          .superRefine((text, ctx) => {
            if (!isIPv4(text))
              ctx.addIssue({
                code: 'custom',
                message: `expected an IPv4 address such as "192.168.122.1", got ${shown(text)}`,
              });
          })
          .optional()
          .meta({
            description:
              "IPv4 address of the VM's DHCP/DNS server (the libvirt network's or the LAN's gateway), the one private address the isolation filter lets the VM reach. Unset: `vm define` reads it from the libvirt network, `libvirt domain`/`render` use libvirt's default network's 192.168.122.1; with `--bridge` it must be given (or `--gateway`).",
          }),
        gateway6: z
          .string()
          .superRefine((text, ctx) => {
            if (!isIPv6(text) || text.includes('%'))
              ctx.addIssue({
                code: 'custom',
                message: `expected an IPv6 address such as "2001:db8:1::1", got ${shown(text)}`,
              });
          })
          .optional()
          .meta({
            description:
              "IPv6 address of the VM's DNS server on an IPv6 network (the libvirt network's IPv6 address, or the LAN router's): the isolation filter lets DNS to it through, even when it is a unique local address. Unset: `vm define` reads it from the libvirt network when the network has an IPv6 address (and neither gateway is given); `libvirt domain`/`render` let no IPv6 DNS through unless `--gateway6` is given.",
          }),
        healthTimeout: z
          .number()
          .int()
          .min(10)
          .max(24 * 3600)
          .default(300)
          .meta({
            description:
              '`vm update`: seconds the new image gets to report itself healthy before the VM is rolled back (tripled under TCG, as smoke timeouts are).',
          }),
        keepImages: z.number().int().min(2).max(20).default(3).meta({
          description:
            'Kernel + root filesystem pairs `vm update` keeps on the libvirt host (the running one included), so `vm rollback` has a previous image to go back to; older pairs are deleted.',
        }),
      })
      .prefault({})
      .meta({ description: 'Virtual machine resources.' }),
    network: z
      .strictObject({
        blockPrefixes: z
          .array(
            z.string().superRefine((text, ctx) => {
              const { problem } = parseCidr(text);
              if (problem) ctx.addIssue({ code: 'custom', message: `${problem}, got ${shown(text)}` });
            }),
          )
          .max(256)
          .default([])
          .meta({
            description:
              'Extra destination prefixes (IPv4 or IPv6 CIDR, e.g. "2001:db8:42::/48", "203.0.113.0/24") the isolation filter drops, on top of the private, link-local, unique local and multicast ranges it always drops: a LAN with global IPv6 addresses (or public IPv4 ones) is otherwise reachable from the VM. DNS to the gateway passes even inside them.',
          }),
      })
      .prefault({})
      .meta({ description: "The VM's network isolation." }),
    ssh: z
      .strictObject({
        authorizedKeys: z
          .array(
            z.string().superRefine((text, ctx) => {
              const problem = sshKeyProblem(text);
              if (problem)
                ctx.addIssue({
                  code: 'custom',
                  message: `expected an SSH public key line (${problem}), got ${shown(text.slice(0, 40))}`,
                });
            }),
          )
          .default([])
          .meta({
            description:
              'Public keys allowed to log in as root. More can be passed at boot in the ssh.authorized_keys.root credential.',
          }),
      })
      .prefault({})
      .meta({ description: 'SSH access.' }),
    smoke: z
      .strictObject({
        checks: z
          .array(
            z.strictObject({
              name: matching(
                /^[a-z0-9][a-z0-9._-]{0,62}$/,
                'a check name of lower-case letters, digits, ".", "_" or "-"',
              ).meta({
                description: 'Test case name in the JUnit report.',
              }),
              run: z
                .string()
                .min(1)
                .meta({ description: 'Shell command run in the guest over SSH; exit 0 passes.' }),
              expect: regularExpression
                .optional()
                .meta({ description: 'Regular expression the output must match as well.' }),
            }),
          )
          .default([])
          .meta({
            description:
              'Extra checks `appliance smoke` runs in the booted appliance, one JUnit test case each.',
          }),
      })
      .prefault({})
      .meta({ description: 'Smoke test settings.' }),
    overlays: z.array(z.string().min(1)).default([]).meta({
      description: 'Extra rootfs overlay folders, relative to appliance.yaml; copied into the rendered tree.',
    }),
  })
  .superRefine((settings, ctx) => refuseControlCharacters(settings, ctx))
  .superRefine((settings, ctx) => {
    settings.multiarch.emulate?.forEach((platform, i) => {
      const problem = emulateProblem(platform, settings.arch);
      if (problem) ctx.addIssue({ code: 'custom', path: ['multiarch', 'emulate', i], message: problem });
    });
  })
  .meta({
    title: 'runner-appliance',
    description: 'One appliance: a Buildroot VM running a GitLab Runner with Docker.',
  });

export type ApplianceInput = z.input<typeof applianceSchema>;
export type ApplianceSettings = z.output<typeof applianceSchema>;

/** appliance.schema.json: the schema of what users write (inputs), for editor completion. */
export function applianceJsonSchema(): Record<string, unknown> {
  const schema = z.toJSONSchema(applianceSchema, { io: 'input', unrepresentable: 'any' }) as Record<
    string,
    unknown
  >;
  return schema;
}
