/**
 * Boot and readiness: prepare what the guest needs (data disk, SSH key, test image) while the
 * accelerator is chosen, start QEMU, follow the serial console to the kernel and systemd
 * milestones, and connect over SSH. Networking is QEMU user mode bound to 127.0.0.1 with
 * restrict=on; the given data disk is never written (a qcow2 overlay takes the writes).
 */
import {
  closeSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  readSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import type { Client } from 'ssh2';
import ssh2 from 'ssh2';
import { type ApplianceConfig, type Arch, nativePlatform } from '../config/index.js';
import { ApplianceError, ExitCode } from '../errors.js';
import {
  type Accel,
  type AccelChoice,
  chooseAccelerator,
  createDataDisk,
  guestMachine,
  kernelCmdline,
  memoryMiB,
} from '../guest/index.js';
import { type BackgroundProcess, runCommand, startBackground, tail } from '../run/index.js';
import { buildxPlatforms } from './checks.js';
import { connectWithBackoff } from './ssh.js';

/** A TCP port on 127.0.0.1 that nothing listens on at the moment of the call. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}

/** ELF e_machine of each architecture. */
const elfMachine: Record<Arch, number> = { x86_64: 62, aarch64: 183 };

/** Is this ELF file a statically linked (no PT_INTERP program header) executable for `arch`? */
function isStaticElf(path: string, arch: Arch): boolean {
  const b = readFileSync(path);
  if (b.length < 64 || b.readUInt32BE(0) !== 0x7f454c46 || b[4] !== 2) return false;
  if (b.readUInt16LE(18) !== elfMachine[arch]) return false;
  const phoff = Number(b.readBigUInt64LE(32));
  const phentsize = b.readUInt16LE(54);
  const phnum = b.readUInt16LE(56);
  for (let i = 0; i < phnum; i++) if (b.readUInt32LE(phoff + i * phentsize) === 3) return false;
  return true;
}

/**
 * A one-binary rootfs tarball for `docker import`, from a static busybox on this host built for
 * the guest's architecture (an x86_64 host's busybox in an aarch64 guest would run, but under
 * the amd64 emulator: not the native run the check is about).
 */
async function defaultImageTar(work: string, arch: Arch): Promise<string | undefined> {
  for (const candidate of ['/bin/busybox', '/usr/bin/busybox']) {
    if (existsSync(candidate) && isStaticElf(candidate, arch)) {
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

/**
 * The build context of the two-platform buildx check: a Dockerfile that copies each platform's
 * busybox (taken out of the --platform-image tarballs) and runs it, so that the emulated
 * platform's step runs under its emulator during the build.
 */
async function buildContextTar(work: string, images: Record<string, string>): Promise<string> {
  const dir = join(work, 'buildx-context');
  mkdirSync(dir, { recursive: true });
  for (const platform of buildxPlatforms) {
    const from = join(work, `buildx-${platform.replaceAll('/', '-')}`);
    mkdirSync(from, { recursive: true });
    await runCommand('tar', ['-C', from, '-xf', images[platform] ?? '', './bin/busybox'], {
      purpose: `taking busybox out of the ${platform} test image`,
    });
    copyFileSync(join(from, 'bin', 'busybox'), join(dir, `busybox-${platform.split('/')[1]}`));
  }
  writeFileSync(
    join(dir, 'Dockerfile'),
    [
      'FROM scratch',
      'ARG TARGETARCH',
      'COPY busybox-$TARGETARCH /bin/busybox',
      'RUN ["/bin/busybox", "sh", "-c", "/bin/busybox uname -m >/machine"]',
      '',
    ].join('\n'),
  );
  const tarball = join(work, 'buildx-context.tar');
  await runCommand('tar', ['-C', dir, '--owner=0', '--group=0', '-cf', tarball, '.'], {
    purpose: 'packing the buildx check context',
  });
  return tarball;
}

export interface BootInput {
  arch: Arch;
  kernel: string;
  rootfs: string;
  initrd?: string;
  dataDisk?: string;
  imageTar?: string;
  /** Docker platform → rootfs tarball of a static busybox of that platform. */
  platformImages?: Record<string, string>;
  accel: AccelChoice;
  extraCmdline?: string[];
  /** A scratch folder that the caller removes. */
  work: string;
}

export interface Prepared {
  accel: Accel;
  data: { path: string; format: 'raw' | 'qcow2' };
  keys: { private: string; publicFile: string };
  imageTar?: Buffer;
  noImageReason?: string;
  platformImages: Record<string, Buffer>;
  buildContext?: Buffer;
}

/** The data disk, the SSH key and the test image, made while `--accel auto` probes KVM. */
export async function prepare(config: ApplianceConfig, b: BootInput): Promise<Prepared> {
  const dataDisk = async (): Promise<Prepared['data']> => {
    if (b.dataDisk) {
      const path = join(b.work, 'data-overlay.qcow2');
      await runCommand(
        'qemu-img',
        ['create', '-q', '-f', 'qcow2', '-F', 'raw', '-b', resolve(b.dataDisk), path],
        {
          purpose: 'making the data disk overlay',
        },
      );
      return { path, format: 'qcow2' };
    }
    const disk = await createDataDisk(join(b.work, 'data.img'), {
      sizeBytes: 8 * 1024 ** 3,
      label: config.dataDisk.label,
    });
    return { path: disk.path, format: 'raw' };
  };
  const keys = () => {
    const pair = ssh2.utils.generateKeyPairSync('ed25519', { comment: 'appliance-smoke' });
    const publicFile = join(b.work, 'authorized_keys');
    writeFileSync(publicFile, `${pair.public}\n`);
    return { private: pair.private, publicFile };
  };
  const platformImages = b.platformImages ?? {};
  // The native test image: --image-tar, else the --platform-image of the guest's own platform,
  // else this host's static busybox when it is of the guest's architecture.
  const native = nativePlatform[b.arch];
  const image = async () => {
    const tar = b.imageTar ?? platformImages[native] ?? (await defaultImageTar(b.work, b.arch));
    return tar ? readFileSync(tar) : undefined;
  };
  const buildContext = async () =>
    buildxPlatforms.every((p) => platformImages[p])
      ? readFileSync(await buildContextTar(b.work, platformImages))
      : undefined;
  const [accel, data, imageTar, context] = await Promise.all([
    chooseAccelerator(b.arch, b.kernel, b.accel),
    dataDisk(),
    image(),
    buildContext(),
  ]);
  return {
    accel,
    data,
    keys: keys(),
    imageTar,
    platformImages: Object.fromEntries(
      Object.entries(platformImages).map(([platform, path]) => [platform, readFileSync(path)]),
    ),
    buildContext: context,
    noImageReason: imageTar
      ? undefined
      : `no test image for ${native}: pass --image-tar, or --platform-image ${native}=TAR (test/fixtures/platform-images.sh makes one from Debian's busybox-static); on an ${b.arch} host, apt-get install busybox-static`,
  };
}

function qemuArgs(
  config: ApplianceConfig,
  b: BootInput,
  p: Prepared,
  serial: string,
  port: number,
): string[] {
  const m = guestMachine(b.arch);
  const cmdline = kernelCmdline(b.arch, [
    'SYSTEMD_COLORS=0',
    'systemd.show_status=1',
    'systemd.ssh_auto=no',
    ...(b.extraCmdline ?? []),
  ]);
  return [
    ...['-accel', p.accel, '-machine', m.qemuMachine, '-cpu', p.accel === 'kvm' ? 'host' : m.tcgCpu],
    ...['-m', String(memoryMiB(config)), '-smp', String(config.vm.vcpus)],
    ...['-nodefaults', '-display', 'none', '-no-reboot'],
    ...['-kernel', b.kernel, ...(b.initrd ? ['-initrd', b.initrd] : []), '-append', cmdline.join(' ')],
    ...['-drive', `file=${b.rootfs},if=virtio,format=raw,readonly=on`],
    ...['-drive', `file=${p.data.path},if=virtio,format=${p.data.format},discard=unmap`],
    ...['-fw_cfg', `name=opt/io.systemd.credentials/ssh.authorized_keys.root,file=${p.keys.publicFile}`],
    ...['-serial', `file:${serial}`],
    ...[
      '-netdev',
      `user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:${port}-:22`,
      '-device',
      'virtio-net-pci,netdev=n0',
    ],
    ...['-device', 'virtio-rng-pci'],
    ...(config.vm.balloon ? ['-device', 'virtio-balloon-pci,deflate-on-oom=on,free-page-reporting=on'] : []),
    ...['-device', 'pvpanic-pci', '-action', 'panic=exit-failure'],
  ];
}

/** The serial log, read incrementally. */
class SerialLog {
  private text = '';
  private offset = 0;
  constructor(readonly path: string) {}
  read(): string {
    if (!existsSync(this.path)) return this.text;
    const size = statSync(this.path).size;
    if (size > this.offset) {
      const fd = openSync(this.path, 'r');
      try {
        const buf = Buffer.alloc(size - this.offset);
        readSync(fd, buf, 0, buf.length, this.offset);
        this.text += buf.toString('utf8');
        this.offset = size;
      } finally {
        closeSync(fd);
      }
    }
    return this.text;
  }
}

const milestonePatterns: [string, RegExp][] = [
  ['kernel', /Linux version \d/],
  ['systemd', /systemd\[1\]: |systemd \d+ running in system mode|Welcome to /],
];

export interface Booted {
  vm: BackgroundProcess;
  client: Client;
  /** Milliseconds since the epoch just before QEMU was started. */
  bootedAt: number;
  /** Seconds from QEMU start: kernel, systemd, ssh. */
  milestones: Record<string, number>;
}

/**
 * Start QEMU and wait for the kernel, systemd and SSH, by `deadline`. Infrastructure failures
 * (QEMU exits, a milestone does not come) are ApplianceErrors with exit 3 and the serial tail;
 * QEMU is stopped before they are thrown.
 */
export async function boot(
  config: ApplianceConfig,
  b: BootInput,
  p: Prepared,
  o: { serial: string; deadline: number; timeoutSeconds: number; milestones: Record<string, number> },
): Promise<Booted> {
  const port = await freePort();
  const serial = new SerialLog(o.serial);
  const bootedAt = Date.now();
  const qemu = guestMachine(b.arch).qemuBinary;
  const vm = startBackground(qemu, qemuArgs(config, b, p, o.serial, port));
  let exitCode: number | undefined;
  void vm.exited.then((c) => {
    exitCode = c;
  });
  const milestones = o.milestones;
  const infra = async (message: string): Promise<never> => {
    await vm.stop();
    throw new ApplianceError(message, {
      exitCode: ExitCode.hostProblem,
      hint: `serial log: ${o.serial}`,
      details: `serial log tail:\n${tail(serial.read(), 25)}${vm.stderr() ? `\nqemu: ${vm.stderr().trim()}` : ''}`,
    });
  };
  const panicked = () => /Kernel panic|Unable to mount root/.test(serial.read());
  for (const [name, pattern] of milestonePatterns) {
    while (milestones[name] === undefined) {
      if (pattern.test(serial.read())) milestones[name] = (Date.now() - bootedAt) / 1000;
      else if (exitCode !== undefined)
        await infra(
          `QEMU exited (status ${exitCode}) before ${name} started${panicked() ? ': the guest kernel panicked' : ''}`,
        );
      else if (Date.now() > o.deadline)
        await infra(
          `no ${name} on the serial console within ${o.timeoutSeconds} s (accelerator: ${p.accel})`,
        );
      else await new Promise((r) => setTimeout(r, 100));
    }
  }
  let client: Client | undefined;
  try {
    client = await connectWithBackoff(port, p.keys.private, o.deadline, () => exitCode === undefined);
  } catch (e) {
    await infra(
      exitCode !== undefined
        ? `QEMU exited (status ${exitCode}) before SSH answered${panicked() ? ': the guest kernel panicked' : ''}`
        : `${(e as Error).message} within ${o.timeoutSeconds} s`,
    );
  }
  milestones.ssh = (Date.now() - bootedAt) / 1000;
  return { vm, client: client as Client, bootedAt, milestones };
}
