/**
 * What `appliance smoke` checks in the booted guest: one table entry per check. The runner
 * (runner.ts) starts every check as soon as SSH answers and the checks it depends on are done,
 * over one SSH connection. Adding a check is adding one entry here.
 */
import { type ApplianceConfig, dockerStorageDriver, platformTargets } from '../config/index.js';
import type { ExecResult } from './ssh.js';

export interface CheckContext {
  config: ApplianceConfig;
  /** The rootfs tarball imported as the test container image, when there is one. */
  imageTar?: Buffer;
  /** Why there is no test image (shown when a check that needs it is skipped). */
  noImageReason?: string;
  /** Docker platform → rootfs tarball of a static busybox of that platform (--platform-image). */
  platformImages?: Readonly<Record<string, Buffer>>;
  /** The build context (tar) of the two-platform buildx check, when both busybox images are given. */
  buildContext?: Buffer;
}

export interface SmokeCheck {
  /** The JUnit test case name. */
  name: string;
  /** Shell command run as root in the guest. */
  command: string;
  /**
   * What is wrong with the result, or undefined when the check passed; `{ skip }` when the
   * command found that what it checks could not run (a check that starts before its gate).
   */
  judge: (r: ExecResult, ctx: CheckContext) => string | undefined | { skip: string };
  /**
   * Seconds the command may take under KVM (TCG gets three times as long; default 30), or
   * 'deadline' for a check that waits for the boot and may take what is left of --timeout.
   */
  timeout?: number | 'deadline';
  /** Checks that must pass first; when one fails or is skipped, this one is skipped. */
  dependsOn?: readonly string[];
  /** Checks that must have finished first, whatever their result (ordering only). */
  after?: readonly string[];
  /** Bytes for the command's stdin, or why the check cannot run (then it is skipped). */
  stdin?: (ctx: CheckContext) => Buffer | { skip: string };
  /** Not a test case: its output is recorded in the timeline (diagnostics). */
  informational?: boolean;
}

/**
 * A guest shell snippet that returns once the start job `unit` has when it runs has finished (at
 * once when it has none), without starting anything: it polls the unit's job over systemd's
 * private socket, which costs a fraction of a transient unit ordered after it under TCG. It ends on
 * a new job id too: a socket with a waiting client queues the next start job as soon as one
 * fails. The runner's timeout bounds the loop.
 */
export function afterUnit(unit: string): string {
  const job = `systemctl show -p Job --value ${unit}`;
  return `j=$(${job}); while [ -n "$j" ] && [ "$(${job})" = "$j" ]; do sleep 0.5; done`;
}

/**
 * A guest shell snippet for a Docker command started when SSH answers, before Docker is up:
 * docker.socket holds the request until the daemon answers, so the CLI is loaded and the request
 * on its way when Docker comes up, and the snippet returns the moment it is answered (`wait`, no
 * polling: under TCG a poll's `systemctl` costs a second or more while the boot goes on). Beside
 * it a watcher waits for docker.service's start job (afterUnit); when that leaves the service not
 * active it abandons the request (a socket may hold it forever) and the snippet exits 3 with
 * "docker.service is <state>" on stderr. When the early request failed (no socket listening yet)
 * it is made again once the start job has left Docker active. The watcher's output goes to a
 * file, not to the SSH channel, so that nothing it leaves running holds the channel open.
 */
function whenDockerAnswers(command: string): string {
  return [
    `${command} 2>/dev/null & early=$!`,
    'down=/tmp/docker-down.$$',
    `( ${afterUnit('docker.service')}; s=$(systemctl is-active docker.service); [ "$s" = active ] || { echo "$s" >"$down"; kill $early; } ) >/dev/null 2>&1 & watcher=$!`,
    'if wait $early; then kill $watcher 2>/dev/null; rm -f "$down"; else',
    '  wait $watcher; s=$(cat "$down"); rm -f "$down"',
    '  if [ -n "$s" ]; then echo "docker.service is $s" >&2; exit 3; fi',
    `  ${command} || exit`,
    'fi',
  ].join('\n');
}

/** The judge's view of whenDockerAnswers's exit 3: Docker did not come up, so the check is skipped. */
function dockerDown(r: ExecResult): { skip: string } | undefined {
  return r.code === 3 && r.stderr.startsWith('docker.service is ')
    ? { skip: `needs docker.active, which failed (${firstLine(r.stderr)})` }
    : undefined;
}

const firstLine = (text: string) => text.trim().split('\n')[0] ?? '';

/** The built-in checks, in report order. */
export const builtinChecks: readonly SmokeCheck[] = [
  {
    name: 'boot.multi-user',
    command: 'systemctl is-system-running --wait; systemctl --failed --plain --no-legend --no-pager',
    timeout: 'deadline',
    judge: (r) => {
      const [state, ...failed] = r.stdout.split('\n');
      const units = failed.map((l) => l.trim().split(/\s+/)[0]).filter(Boolean);
      return state?.trim() === 'running'
        ? undefined
        : `system state is ${state?.trim() || 'unknown'}; failed units: ${units.join(', ') || 'none listed'}`;
    },
  },
  {
    name: 'rootfs.read-only-squashfs',
    command: 'findmnt -n -o FSTYPE,OPTIONS /',
    judge: (r) => {
      const [fstype, options] = r.stdout.trim().split(/\s+/);
      return fstype === 'squashfs' && (options ?? '').split(',').includes('ro')
        ? undefined
        : `/ is ${fstype} (${options}), not a read-only squashfs`;
    },
  },
  {
    name: 'data-disk.var-lib-docker',
    command: 'findmnt -n -o SOURCE,FSTYPE -T /var/lib/docker; findmnt -n -o SOURCE,FSTYPE,LABEL /data',
    judge: (r, { config }) => {
      const [docker, dataLine] = r.stdout.trim().split('\n');
      const [dockerSource, dockerFs] = (docker ?? '').trim().split(/\s+/);
      const [dataSource, dataFs, label] = (dataLine ?? '').trim().split(/\s+/);
      const wanted = config.dataDisk.label;
      if (dockerFs !== 'ext4') return `/var/lib/docker is on ${dockerFs ?? 'nothing'}, not ext4`;
      if (!dataSource || !dockerSource?.startsWith(dataSource))
        return `/var/lib/docker (${dockerSource}) is not on the data disk (${dataSource ?? 'not mounted'})`;
      if (dataFs !== 'ext4' || label !== wanted)
        return `/data is ${dataFs} labelled ${label ?? '(none)'}, not ext4 labelled ${wanted}`;
      return undefined;
    },
  },
  {
    // The filesystem fills its device: a disk grown by 'appliance disk grow' was grown by the guest.
    name: 'data-disk.fills-device',
    command: `${afterUnit('appliance-data.service')}; d=$(findmnt -n -o SOURCE /data) && echo $(( $(cat /sys/class/block/\${d#/dev/}/size) * 512 )) && dumpe2fs -h "$d" 2>/dev/null | sed -n 's/^Block count: *//p; s/^Block size: *//p'`,
    judge: (r) => {
      const [device, blocks, blockSize] = r.stdout.trim().split('\n').map(Number);
      if (!device || !blocks || !blockSize)
        return `could not read the sizes of /data's device and filesystem (exit ${r.code})`;
      const missing = device - blocks * blockSize;
      return missing <= 16 * 1024 ** 2
        ? undefined
        : `/data's filesystem is ${blocks * blockSize} bytes on a ${device}-byte device: it was not grown to fill it`;
    },
  },
  {
    // Docker's containerd image store keeps images in containerd's root: on the data disk.
    name: 'data-disk.var-lib-containerd',
    command: 'findmnt -n -o SOURCE,FSTYPE -T /var/lib/containerd; findmnt -n -o SOURCE /data',
    judge: (r) => {
      const [line, data] = r.stdout.trim().split('\n');
      const [source, fstype] = (line ?? '').trim().split(/\s+/);
      return fstype === 'ext4' && data && source?.startsWith(data.trim())
        ? undefined
        : `/var/lib/containerd is on ${source ?? 'nothing'} (${fstype ?? '?'}), not on the data disk (${data?.trim() || 'not mounted'})`;
    },
  },
  {
    // The gate of the checks that need Docker: docker.service's start job of this boot finished
    // and left it active. Asking systemd first matters: the docker CLI waits on docker.socket
    // when the daemon cannot start. It also says when Docker became active, on the guest's
    // monotonic clock, with the clock's reading last: the host maps it to the time since QEMU
    // started (dockerActiveSeconds in smoke.ts). One command for both: under TCG every extra
    // process and SSH session while Docker's first container starts costs the smoke's wall time.
    name: 'docker.active',
    command: `${afterUnit('docker.service')}; systemctl show -p ActiveState -p ActiveEnterTimestampMonotonic docker.service; cat /proc/uptime`,
    timeout: 'deadline',
    informational: true,
    judge: (r) => {
      const state = /^ActiveState=(\S*)/m.exec(r.stdout)?.[1];
      return state === 'active' ? undefined : `docker.service is ${state || 'unknown'}`;
    },
  },
  {
    // Asked when SSH answers (see whenDockerAnswers); fails, not skipped, when Docker is down.
    name: 'docker.info',
    command: whenDockerAnswers(
      "docker info --format '{{.Driver}} {{.CgroupVersion}} {{json .DriverStatus}}'",
    ),
    timeout: 'deadline',
    judge: (r) => {
      if (r.code !== 0) return `docker info failed: ${firstLine(r.stderr)}`;
      const [driver, cgroup, ...status] = r.stdout.trim().split(' ');
      return `${driver} ${cgroup}` === `${dockerStorageDriver} 2`
        ? undefined
        : `docker reports storage driver and cgroup version "${driver} ${cgroup}", not "${dockerStorageDriver} 2" (driver status ${status.join(' ') || 'empty'})`;
    },
  },
  {
    // Starts when SSH answers: the import is on its way when Docker comes up (whenDockerAnswers),
    // and the container runs right after it. No --rm: the VM is stopped right after, and its data
    // disk is a throwaway or an overlay.
    name: 'docker.run-imported-image',
    command: [
      'image=$(mktemp) && cat >"$image"',
      whenDockerAnswers('docker import "$image" appliance-smoke:local >/dev/null'),
      'rm -f "$image"',
      'docker run --network none appliance-smoke:local /bin/busybox echo smoke-ok',
    ].join('\n'),
    timeout: 'deadline',
    stdin: (ctx) => ctx.imageTar ?? { skip: ctx.noImageReason ?? 'no test image' },
    judge: (r) => {
      const down = dockerDown(r);
      if (down) return down;
      return r.code === 0 && r.stdout.includes('smoke-ok')
        ? undefined
        : `the container did not run (exit ${r.code}): ${r.stderr.trim().split('\n').pop() ?? ''}`;
    },
  },
  {
    name: 'docuum.active',
    command: `${afterUnit('docuum.service')}; systemctl is-active docuum.service`,
    dependsOn: ['docker.active'],
    judge: (r) => (r.stdout.trim() === 'active' ? undefined : `docuum.service is ${r.stdout.trim()}`),
  },
  {
    name: 'gitlab-runner.state',
    command: `${afterUnit('gitlab-runner.service')}; systemctl show -p ActiveState -p Result -p ConditionResult gitlab-runner.service; test -s /data/gitlab-runner/config.toml && echo configured || echo unconfigured`,
    dependsOn: ['docker.active'],
    judge: (r) => {
      const active = /ActiveState=(\S+)/.exec(r.stdout)?.[1];
      const condition = /ConditionResult=(\S+)/.exec(r.stdout)?.[1];
      if (r.stdout.includes('unconfigured'))
        return condition === 'no' && active !== 'failed'
          ? undefined
          : `the runner has no token but gitlab-runner.service is ${active}`;
      return active === 'active'
        ? undefined
        : `the runner is configured but gitlab-runner.service is ${active}`;
    },
  },
  {
    name: 'systemd-analyze',
    command: 'systemd-analyze',
    after: ['boot.multi-user'],
    informational: true,
    judge: (r) => (r.code === 0 ? undefined : `exit status ${r.code}`),
  },
];

/**
 * Diagnostics for the timeline, gathered after the checks only when one failed or `--hold` keeps
 * the VM anyway: each reads every unit over D-Bus, which costs tens of seconds of guest CPU under
 * TCG — as long as the Docker checks themselves.
 */
export const diagnostics: readonly SmokeCheck[] = [
  {
    name: 'systemd-analyze.blame',
    command: 'systemd-analyze blame --no-pager | head -n 20',
    informational: true,
    timeout: 60,
    judge: (r) => (r.code === 0 ? undefined : `exit status ${r.code}`),
  },
  {
    name: 'systemd-analyze.critical-chain',
    command: 'systemd-analyze critical-chain --no-pager',
    informational: true,
    timeout: 60,
    judge: (r) => (r.code === 0 ? undefined : `exit status ${r.code}`),
  },
];

/** The `smoke.checks` entries of the config, run once the boot has finished. */
export function configChecks(config: ApplianceConfig): SmokeCheck[] {
  return config.smoke.checks.map((check) => ({
    name: `config.${check.name}`,
    command: check.run,
    after: ['boot.multi-user'],
    judge: (r: ExecResult) => {
      if (r.code !== 0) return `exit status ${r.code}`;
      if (check.expect && !new RegExp(check.expect).test(r.stdout))
        return `output does not match /${check.expect}/`;
      return undefined;
    },
  }));
}

/** What the buildx check prints between the OCI documents it reads out of the tarball. */
export const ociSeparator = '--- end of OCI document ---';

/** The platforms of the two-platform buildx check. */
export const buildxPlatforms = ['linux/amd64', 'linux/arm64'] as const;

/** Why a platform check has no image: how to give it one. */
const noPlatformImage = (platform: string) => ({
  skip: `no ${platform} test image: pass --platform-image ${platform}=TAR (test/fixtures/platform-images.sh makes one from Debian's busybox-static)`,
});

/**
 * The checks of multiarch.emulate: per emulated platform, its busybox image imported (no
 * registry) runs in an unprivileged container (no capabilities at all) and reports that
 * platform's `uname -m`; and, when amd64 and arm64 are both available (one of them native), a
 * `docker buildx build` for both with the default builder to an OCI tarball whose index lists
 * both. Each starts when SSH answers and waits for Docker itself (whenDockerAnswers).
 */
export function platformChecks(emulated: readonly string[], native: string): SmokeCheck[] {
  const checks: SmokeCheck[] = emulated.map((platform) => {
    const machine = platformTargets[platform]?.machine ?? '?';
    const tag = `appliance-smoke:${platform.replace(/^linux\//, '').replaceAll('/', '-')}`;
    return {
      name: `multiarch.run-${tag.slice('appliance-smoke:'.length)}`,
      command: [
        'image=$(mktemp) && cat >"$image"',
        `docker import --platform ${platform} "$image" ${tag} >/dev/null`,
        'rm -f "$image"',
        `docker run --pull never --network none --cap-drop ALL --security-opt no-new-privileges --platform ${platform} ${tag} /bin/busybox uname -m`,
      ].join('\n'),
      // As docker.run-imported-image: bounded by --timeout (under a loaded TCG host the native
      // import and run took 490 s here, and 180 s was too short for these).
      timeout: 'deadline',
      dependsOn: ['docker.active'],
      stdin: (ctx) => ctx.platformImages?.[platform] ?? noPlatformImage(platform),
      judge: (r) => {
        if (r.code !== 0)
          return `the ${platform} container did not run (exit ${r.code}): ${r.stderr.trim().split('\n').pop() ?? ''}`;
        return r.stdout.trim() === machine
          ? undefined
          : `the ${platform} container reports uname -m "${r.stdout.trim()}", not "${machine}"`;
      },
    };
  });
  if (buildxPlatforms.every((p) => p === native || emulated.includes(p)))
    checks.push({
      name: 'multiarch.buildx-two-platforms',
      command: [
        // A multi-platform build with the default builder needs Docker's containerd image store
        // (daemon.json turns it on).
        `docker info --format '{{json .DriverStatus}}' | grep -q io.containerd.snapshotter || { echo "Docker's containerd image store is off: daemon.json has no features.containerd-snapshotter" >&2; exit 4; }`,
        'dir=$(mktemp -d) && cat >"$dir/context.tar"',
        `docker buildx build -q --platform ${buildxPlatforms.join(',')} --output type=oci,dest="$dir/image.tar" - <"$dir/context.tar" >/dev/null || exit`,
        // index.json, then every blob it names (the image index BuildKit nests in it), each
        // followed by a separator line: BuildKit writes some of them one-line, some indented.
        `tar -xOf "$dir/image.tar" index.json; printf '\\n${ociSeparator}\\n'`,
        `for d in $(tar -xOf "$dir/image.tar" index.json | grep -o 'sha256:[0-9a-f]*' | sed s/^sha256://); do tar -xOf "$dir/image.tar" "blobs/sha256/$d"; printf '\\n${ociSeparator}\\n'; done`,
        'rm -rf "$dir"',
      ].join('\n'),
      timeout: 'deadline',
      dependsOn: ['docker.active'],
      stdin: (ctx) =>
        ctx.buildContext ?? noPlatformImage(buildxPlatforms.find((p) => !ctx.platformImages?.[p]) ?? ''),
      judge: (r) => {
        if (r.code === 4)
          return `${r.stderr.trim().split('\n').pop() ?? ''}: a multi-platform build needs it`;
        if (r.code !== 0)
          return `docker buildx build failed (exit ${r.code}): ${r.stderr.trim().split('\n').pop() ?? ''}`;
        const listed = new Set<string>();
        for (const blob of r.stdout.split(`\n${ociSeparator}\n`)) {
          let doc: { manifests?: { platform?: { os?: string; architecture?: string } }[] };
          try {
            doc = JSON.parse(blob);
          } catch {
            continue; // a blob that is not JSON (a layer)
          }
          for (const m of doc.manifests ?? [])
            if (m.platform?.os && m.platform.architecture)
              listed.add(`${m.platform.os}/${m.platform.architecture}`);
        }
        const missing = buildxPlatforms.filter((p) => !listed.has(p));
        return missing.length === 0
          ? undefined
          : `the OCI index lists ${[...listed].join(', ') || 'no platform'}, not ${missing.join(', ')}`;
      },
    });
  return checks;
}
