/**
 * `appliance smoke`: boot an image under QEMU (KVM when it really works, else TCG), wait for the
 * kernel, systemd and SSH, run the checks over SSH, and write a JUnit report, the serial log,
 * a boot timeline and a summary. The given data disk is never written (a qcow2 overlay takes the
 * writes); networking is QEMU user mode bound to 127.0.0.1 with restrict=on.
 */
import {
  closeSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import ssh2 from 'ssh2';
import type { ApplianceConfig, Arch } from '../config/index.js';
import { ApplianceError, ExitCode } from '../errors.js';
import { createDataDisk, guestMachine, probeKvm } from '../guest/index.js';
import { info } from '../log.js';
import { hasTool, runCommand, startBackground, tail } from '../run/index.js';
import { junitXml, type TestCase } from './junit.js';
import { connectWithBackoff, exec } from './ssh.js';

export interface SmokeOptions {
  kernel: string;
  rootfs: string;
  initrd?: string;
  dataDisk?: string;
  accel: 'auto' | 'kvm' | 'tcg';
  /** Seconds for boot and checks together (default: 180 with KVM, 600 with TCG). */
  timeoutSeconds?: number;
  junit?: string;
  /** Where the report files go. */
  outDir: string;
  /** A rootfs tarball to import as the test image (default: one made from a static busybox). */
  imageTar?: string;
  arch?: Arch;
  extraCmdline?: string[];
  /** Keep the VM idle this many seconds after the checks, then record QEMU's resident memory. */
  holdSeconds?: number;
}

export interface SmokeReport {
  accel: 'kvm' | 'tcg';
  passed: boolean;
  cases: TestCase[];
  milestones: Record<string, number>;
  files: { junit: string; serial: string; timeline: string; summary: string };
}

const milestonePatterns: [string, RegExp][] = [
  ['kernel', /Linux version \d/],
  ['systemd', /systemd\[1\]: |systemd \d+ running in system mode|Welcome to /],
];

/** A TCP port on 127.0.0.1 that nothing listens on at the moment of the call. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}

function readFrom(path: string, offset: number): string {
  if (!existsSync(path)) return '';
  const size = statSync(path).size;
  if (size <= offset) return '';
  const fd = openSync(path, 'r');
  try {
    const buf = Buffer.alloc(size - offset);
    readSync(fd, buf, 0, buf.length, offset);
    return buf.toString('utf8');
  } finally {
    closeSync(fd);
  }
}

/** Is this ELF file statically linked (no PT_INTERP program header)? */
function isStaticElf(path: string): boolean {
  const b = readFileSync(path);
  if (b.length < 64 || b.readUInt32BE(0) !== 0x7f454c46 || b[4] !== 2) return false;
  const phoff = Number(b.readBigUInt64LE(32));
  const phentsize = b.readUInt16LE(54);
  const phnum = b.readUInt16LE(56);
  for (let i = 0; i < phnum; i++) if (b.readUInt32LE(phoff + i * phentsize) === 3) return false;
  return true;
}

/** A one-binary rootfs tarball for `docker import`, from a static busybox on this host. */
async function defaultImageTar(work: string): Promise<string | undefined> {
  for (const candidate of ['/bin/busybox', '/usr/bin/busybox']) {
    if (existsSync(candidate) && isStaticElf(candidate)) {
      const root = join(work, 'image-root');
      mkdirSync(join(root, 'bin'), { recursive: true });
      copyFileSync(candidate, join(root, 'bin', 'busybox'));
      const tarball = join(work, 'image.tar');
      await runCommand('tar', ['-C', root, '--owner=0', '--group=0', '-cf', tarball, '.'], {
        purpose: 'packing the test image',
      });
      return tarball;
    }
  }
  return undefined;
}

function qemuArgs(
  arch: Arch,
  accel: 'kvm' | 'tcg',
  o: SmokeOptions,
  config: ApplianceConfig,
  files: { data: string; dataFormat: string; serial: string; key: string },
  port: number,
): string[] {
  const x86 = arch === 'x86_64';
  const cmdline = [
    `console=${x86 ? 'ttyS0' : 'ttyAMA0'},115200`,
    'root=/dev/vda',
    'ro',
    'rootfstype=squashfs',
    'rootwait',
    'panic=-1',
    'SYSTEMD_COLORS=0',
    'systemd.show_status=1',
    'systemd.ssh_auto=no',
    ...(o.extraCmdline ?? []),
  ];
  const memMiB = Math.max(1024, Math.floor(config.memoryBytes / 1024 ** 2));
  return [
    '-accel',
    accel,
    '-machine',
    x86 ? 'q35' : 'virt,gic-version=3',
    '-cpu',
    accel === 'kvm' ? 'host' : 'max',
    '-m',
    String(memMiB),
    '-smp',
    String(config.vm.vcpus),
    '-nodefaults',
    '-display',
    'none',
    '-no-reboot',
    '-kernel',
    o.kernel,
    ...(o.initrd ? ['-initrd', o.initrd] : []),
    '-append',
    cmdline.join(' '),
    '-drive',
    `file=${o.rootfs},if=virtio,format=raw,readonly=on`,
    '-drive',
    `file=${files.data},if=virtio,format=${files.dataFormat},discard=unmap`,
    '-fw_cfg',
    `name=opt/io.systemd.credentials/ssh.authorized_keys.root,file=${files.key}`,
    '-serial',
    `file:${files.serial}`,
    '-netdev',
    `user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:${port}-:22`,
    '-device',
    'virtio-net-pci,netdev=n0',
    '-device',
    'virtio-rng-pci',
    ...(config.vm.balloon ? ['-device', 'virtio-balloon-pci,deflate-on-oom=on,free-page-reporting=on'] : []),
    '-device',
    'pvpanic-pci',
    '-action',
    'panic=exit-failure',
  ];
}

function requireFile(what: string, path: string): string {
  if (!existsSync(path) || !statSync(path).isFile())
    throw new ApplianceError(`${what} ${path} does not exist or is not a file`, {
      hint: `pass an existing --${what}`,
    });
  return resolve(path);
}

export async function runSmoke(config: ApplianceConfig, o: SmokeOptions): Promise<SmokeReport> {
  const arch = o.arch ?? config.arch;
  const kernel = requireFile('kernel', o.kernel);
  const rootfs = requireFile('rootfs', o.rootfs);
  if (o.initrd) requireFile('initrd', o.initrd);
  if (o.dataDisk) requireFile('data-disk', o.dataDisk);
  const qemu = guestMachine(arch).qemuBinary;
  if (!(await hasTool(qemu))) {
    throw new ApplianceError(`host tool '${qemu}' not found`, {
      hint: `apt-get install ${arch === 'x86_64' ? 'qemu-system-x86' : 'qemu-system-arm'}`,
      exitCode: ExitCode.hostProblem,
    });
  }
  let accel: 'kvm' | 'tcg' = o.accel === 'kvm' ? 'kvm' : 'tcg';
  if (o.accel === 'auto') {
    const probe = await probeKvm(arch, kernel, 10);
    accel = probe.result === 'works' ? 'kvm' : 'tcg';
    info(
      probe.result === 'works'
        ? 'KVM runs a guest here: using KVM'
        : `KVM ${probe.result === 'hangs' ? 'hangs here' : 'is unavailable'}: using TCG`,
    );
  }
  const timeoutSeconds = o.timeoutSeconds ?? (accel === 'kvm' ? 180 : 600);
  const out = resolve(o.outDir);
  mkdirSync(out, { recursive: true });
  const files = {
    junit: resolve(o.junit ?? join(out, 'junit.xml')),
    serial: join(out, 'serial.log'),
    timeline: join(out, 'timeline.json'),
    summary: join(out, 'summary.txt'),
  };
  rmSync(files.serial, { force: true });
  const work = mkdtempSync(join(tmpdir(), 'appliance-smoke-'));
  const cases: TestCase[] = [];
  const milestones: Record<string, number> = {};
  const started = Date.now();
  const deadline = started + timeoutSeconds * 1000;
  const since = () => (Date.now() - started) / 1000;
  let vm: ReturnType<typeof startBackground> | undefined;
  try {
    // The data disk: a copy-on-write overlay over the given one, or a throwaway labelled disk.
    let data: string;
    let dataFormat: string;
    if (o.dataDisk) {
      data = join(work, 'data-overlay.qcow2');
      dataFormat = 'qcow2';
      await runCommand(
        'qemu-img',
        ['create', '-q', '-f', 'qcow2', '-F', 'raw', '-b', resolve(o.dataDisk), data],
        { purpose: 'making the data disk overlay' },
      );
    } else {
      data = (
        await createDataDisk(join(work, 'data.img'), {
          sizeBytes: 8 * 1024 ** 3,
          label: config.dataDisk.label,
        })
      ).path;
      dataFormat = 'raw';
    }
    const keys = ssh2.utils.generateKeyPairSync('ed25519', { comment: 'appliance-smoke' });
    const keyFile = join(work, 'authorized_keys');
    writeFileSync(keyFile, `${keys.public}\n`);
    const imageTar = o.imageTar ? requireFile('image-tar', o.imageTar) : await defaultImageTar(work);
    const port = await freePort();
    const boot = Date.now();
    vm = startBackground(
      qemu,
      qemuArgs(
        arch,
        accel,
        { ...o, kernel, rootfs },
        config,
        { data, dataFormat, serial: files.serial, key: keyFile },
        port,
      ),
    );
    let exitCode: number | undefined;
    void vm.exited.then((c) => {
      exitCode = c;
    });
    const infra = (message: string): never => {
      throw new ApplianceError(message, {
        exitCode: ExitCode.hostProblem,
        hint: `serial log: ${files.serial}`,
        details: `serial log tail:\n${tail(readFrom(files.serial, 0), 25)}${vm?.stderr() ? `\nqemu: ${vm.stderr().trim()}` : ''}`,
      });
    };
    // Kernel and systemd milestones from the serial console.
    for (const [name, pattern] of milestonePatterns) {
      while (milestones[name] === undefined) {
        if (pattern.test(readFrom(files.serial, 0))) milestones[name] = (Date.now() - boot) / 1000;
        else if (exitCode !== undefined)
          infra(
            `QEMU exited (status ${exitCode}) before ${name} started${/Kernel panic/.test(readFrom(files.serial, 0)) ? ': the guest kernel panicked' : ''}`,
          );
        else if (Date.now() > deadline)
          infra(`no ${name} on the serial console within ${timeoutSeconds} s (accelerator: ${accel})`);
        else await new Promise((r) => setTimeout(r, 250));
      }
    }
    let client: Awaited<ReturnType<typeof connectWithBackoff>>;
    try {
      client = await connectWithBackoff(port, keys.private, deadline, () => exitCode === undefined);
    } catch (e) {
      const panicked = /Kernel panic|Unable to mount root/.test(readFrom(files.serial, 0));
      infra(
        exitCode !== undefined
          ? `QEMU exited (status ${exitCode}) before SSH answered${panicked ? ': the guest kernel panicked' : ''}`
          : `${(e as Error).message} within ${timeoutSeconds} s`,
      );
      throw e;
    }
    milestones.ssh = (Date.now() - boot) / 1000;
    const remaining = () => Math.max(5000, deadline - Date.now());
    // One check may not eat the whole budget (a hung command would).
    const perCheck = accel === 'kvm' ? 30_000 : 90_000;
    const run = async (
      name: string,
      command: string,
      judge: (r: { code: number; stdout: string; stderr: string }) => string | undefined,
      input?: Buffer,
      timeoutMs = Math.min(perCheck, remaining()),
    ) => {
      const t0 = Date.now();
      const r = await exec(client, command, timeoutMs, input);
      const problem = r.timedOut ? `timed out: ${command}` : judge(r);
      cases.push({
        name,
        seconds: (Date.now() - t0) / 1000,
        status: problem ? 'failed' : 'passed',
        message: problem,
        output: `$ ${command}\n${r.stdout}${r.stderr ? `\n${r.stderr}` : ''}`.trim(),
      });
      return r;
    };
    await run(
      'boot.multi-user',
      'systemctl is-system-running --wait; systemctl --failed --plain --no-legend --no-pager',
      (r) => {
        const state = r.stdout.split('\n')[0]?.trim();
        return state === 'running'
          ? undefined
          : `system state is ${state || 'unknown'}; failed units: ${
              r.stdout
                .split('\n')
                .slice(1)
                .map((l) => l.trim().split(/\s+/)[0])
                .filter(Boolean)
                .join(', ') || 'none listed'
            }`;
      },
      undefined,
      remaining(),
    );
    milestones['multi-user'] = (Date.now() - boot) / 1000;
    await run('rootfs.read-only-squashfs', 'findmnt -n -o FSTYPE,OPTIONS /', (r) => {
      const [fstype, options] = r.stdout.trim().split(/\s+/);
      return fstype === 'squashfs' && (options ?? '').split(',').includes('ro')
        ? undefined
        : `/ is ${fstype} (${options}), not a read-only squashfs`;
    });
    await run(
      'data-disk.var-lib-docker',
      'findmnt -n -o SOURCE,FSTYPE -T /var/lib/docker; findmnt -n -o SOURCE,FSTYPE,LABEL /data',
      (r) => {
        const [docker, dataLine] = r.stdout.trim().split('\n');
        const [dockerSource, dockerFs] = (docker ?? '').trim().split(/\s+/);
        const [dataSource, dataFs, label] = (dataLine ?? '').trim().split(/\s+/);
        if (dockerFs !== 'ext4') return `/var/lib/docker is on ${dockerFs ?? 'nothing'}, not ext4`;
        if (!dataSource || !dockerSource?.startsWith(dataSource))
          return `/var/lib/docker (${dockerSource}) is not on the data disk (${dataSource ?? 'not mounted'})`;
        if (dataFs !== 'ext4' || label !== config.dataDisk.label)
          return `/data is ${dataFs} labelled ${label ?? '(none)'}, not ext4 labelled ${config.dataDisk.label}`;
        return undefined;
      },
    );
    await run('containerd.state-on-tmpfs', 'findmnt -n -o FSTYPE /var/lib/containerd', (r) =>
      r.stdout.trim() === 'tmpfs'
        ? undefined
        : `/var/lib/containerd is ${r.stdout.trim() || 'not a mount'}, not tmpfs`,
    );
    // Ask systemd first: the docker CLI waits on docker.socket when the daemon cannot start.
    const dockerInfo = await run(
      'docker.info',
      'systemctl is-active --quiet docker.service || { echo "docker.service is $(systemctl is-active docker.service)" >&2; exit 3; }; docker info --format \'{{.Driver}} {{.CgroupVersion}}\'',
      (r) => {
        if (r.code !== 0) return `docker info failed: ${r.stderr.trim().split('\n')[0]}`;
        return r.stdout.trim() === 'overlay2 2'
          ? undefined
          : `docker reports storage driver and cgroup version "${r.stdout.trim()}", not "overlay2 2"`;
      },
    );
    milestones.docker = (Date.now() - boot) / 1000;
    if (dockerInfo.code !== 0) {
      cases.push({
        name: 'docker.run-imported-image',
        seconds: 0,
        status: 'skipped',
        message: 'docker is not working (see docker.info)',
      });
    } else if (imageTar) {
      await run(
        'docker.run-imported-image',
        'docker import - appliance-smoke:local >/dev/null && docker run --rm --network none appliance-smoke:local /bin/busybox echo smoke-ok',
        (r) =>
          r.code === 0 && r.stdout.includes('smoke-ok')
            ? undefined
            : `the container did not run (exit ${r.code}): ${r.stderr.trim().split('\n').pop() ?? ''}`,
        readFileSync(imageTar),
      );
    } else {
      cases.push({
        name: 'docker.run-imported-image',
        seconds: 0,
        status: 'skipped',
        message:
          'no static busybox on this host to make a test image (apt-get install busybox-static, or pass --image-tar)',
      });
    }
    await run('docuum.active', 'systemctl is-active docuum.service', (r) =>
      r.stdout.trim() === 'active' ? undefined : `docuum.service is ${r.stdout.trim()}`,
    );
    await run(
      'gitlab-runner.state',
      'systemctl show -p ActiveState -p Result -p ConditionResult gitlab-runner.service; test -s /data/gitlab-runner/config.toml && echo configured || echo unconfigured',
      (r) => {
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
    );
    for (const check of config.smoke.checks) {
      await run(`config.${check.name}`, check.run, (r) => {
        if (r.code !== 0) return `exit status ${r.code}`;
        if (check.expect && !new RegExp(check.expect).test(r.stdout))
          return `output does not match /${check.expect}/`;
        return undefined;
      });
    }
    const analyze = await exec(
      client,
      'systemd-analyze; systemd-analyze blame --no-pager | head -n 15',
      60_000,
    );
    let memory: { qemuRssKiB: number; guestMemoryKiB: number; idleSeconds: number } | undefined;
    if (o.holdSeconds && vm.pid) {
      await new Promise((r) => setTimeout(r, (o.holdSeconds ?? 0) * 1000));
      const rss = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${vm.pid}/status`, 'utf8'))?.[1]);
      const guestMemoryKiB = Math.max(1024, Math.floor(config.memoryBytes / 1024 ** 2)) * 1024;
      memory = { qemuRssKiB: rss, guestMemoryKiB, idleSeconds: o.holdSeconds };
    }
    writeFileSync(
      files.timeline,
      `${JSON.stringify({ accel, milestones, ...memory, systemdAnalyze: analyze.stdout.trim() }, null, 2)}\n`,
    );
    await exec(client, 'systemctl poweroff', 10_000);
    client.end();
  } catch (e) {
    if (e instanceof ApplianceError && e.exitCode === ExitCode.hostProblem && cases.length === 0) {
      writeFileSync(files.timeline, `${JSON.stringify({ accel, milestones, error: e.message }, null, 2)}\n`);
    }
    throw e;
  } finally {
    if (vm) {
      const quit = await Promise.race([
        vm.exited,
        new Promise<undefined>((r) => setTimeout(() => r(undefined), 20_000)),
      ]);
      if (quit === undefined) await vm.stop();
    }
    rmSync(work, { recursive: true, force: true });
  }
  const passed = cases.every((c) => c.status !== 'failed');
  writeFileSync(
    files.junit,
    junitXml(
      'appliance.smoke',
      cases,
      { accel, arch, kernel, rootfs },
      new Date(started).toISOString().replace(/\.\d+Z$/, ''),
    ),
  );
  const summary = [
    `appliance smoke: ${passed ? 'PASSED' : 'FAILED'} (${accel.toUpperCase()}, ${since().toFixed(0)} s)`,
    `milestones: ${Object.entries(milestones)
      .map(([k, v]) => `${k} ${v.toFixed(1)} s`)
      .join(', ')}`,
    ...cases.map(
      (c) =>
        `  ${c.status === 'passed' ? 'ok  ' : c.status === 'skipped' ? 'skip' : 'FAIL'}  ${c.name}${c.message ? `: ${c.message}` : ''}`,
    ),
    `report: ${files.junit}`,
    `serial log: ${files.serial}`,
  ].join('\n');
  writeFileSync(files.summary, `${summary}\n`);
  return { accel, passed, cases, milestones, files };
}
