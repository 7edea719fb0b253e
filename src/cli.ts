/** The `appliance` command line. Each command is a thin layer over one stage module. */
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Command, CommanderError, Option } from 'commander';
import {
  build,
  downloadSources,
  fetchBuildroot,
  formatPlan,
  generateSbom,
  pinHashes,
} from './buildroot/index.js';
import { checkAppliance, formatCheckReport } from './check/index.js';
import {
  type Arch,
  applianceJsonSchema,
  configReferenceMarkdown,
  loadAppliance,
  parseSize,
} from './config/index.js';
import { createDataDisk, formatDiskInfo, inspectDataDisk } from './disk/index.js';
import { formatFindings, runDoctor } from './doctor/index.js';
import { ApplianceError, ExitCode, isApplianceError } from './errors.js';
import {
  type Accel,
  connection,
  consoleVm,
  type DefineOptions,
  defaultImagePaths,
  defaultNetworkGateway,
  defineVm,
  destroyVm,
  domainXml,
  filterGateway,
  libvirtTree,
  nwfilterXml,
  startVm,
  stopVm,
  undefineVm,
  updateVm,
  vmStatus,
} from './libvirt/index.js';
import { info, isVerbose, setVerbose } from './log.js';
import { renderToDisk, writeTree } from './render/index.js';
import { installSignalHandlers, wasInterrupted } from './run/index.js';
import { runSmoke } from './smoke/index.js';

const program = new Command();
program
  .name('appliance')
  .description('Turn appliance.yaml into a Buildroot VM that runs a GitLab Runner with Docker')
  .option('-v, --verbose', 'show each external command and full error details')
  .showHelpAfterError(false)
  .exitOverride()
  .configureOutput({ writeErr: (s) => process.stderr.write(s) })
  .hook('preAction', (cmd) => setVerbose(Boolean(cmd.opts().verbose)));

const configOption = () =>
  new Option('-c, --config <file>', 'appliance.yaml to use (default: the embedded default)');

program
  .command('render')
  .description('render the br2-external tree for the appliance')
  .addOption(configOption())
  .option('-o, --out <dir>', 'folder to render into', 'external')
  .option('--force', 'overwrite generated files that were edited since the last render')
  .action((opts: { config?: string; out: string; force?: boolean }) => {
    const config = loadAppliance(opts.config);
    const result = renderToDisk(config, opts.out, { force: opts.force });
    if (result.unchanged) info(`${result.outDir} is up to date`);
    else {
      info(`rendered ${result.written.length} files into ${result.outDir}`);
      if (result.removed.length)
        info(`removed ${result.removed.length} files no longer generated: ${result.removed.join(', ')}`);
      if (result.kept.length) info(`kept ${result.kept.length} files that appliance did not generate`);
    }
  });

program
  .command('schema')
  .description('print the JSON Schema of appliance.yaml (or write it with --out)')
  .option('-o, --out <file>', 'write to this file instead of stdout')
  .option('--markdown', 'print the configuration reference table (as in the README) instead')
  .action((opts: { out?: string; markdown?: boolean }) => {
    const text = opts.markdown
      ? `${configReferenceMarkdown()}\n`
      : `${JSON.stringify(applianceJsonSchema(), null, 2)}\n`;
    if (opts.out) writeFileSync(opts.out, text);
    else process.stdout.write(text);
  });

program
  .command('validate')
  .description('validate appliance.yaml and print the resolved settings as JSON')
  .addOption(configOption())
  .action((opts: { config?: string }) => {
    const config = loadAppliance(opts.config);
    process.stdout.write(`${JSON.stringify(config, null, 2)}\n`);
  });

program
  .command('check')
  .description(
    'verify the rendered tree offline with Buildroot: symbols kept, check-package, systemd-analyze',
  )
  .addOption(configOption())
  .option('--buildroot <dir>', 'Buildroot tree (default: $APPLIANCE_BUILDROOT, then the cache)')
  .option('--tree <dir>', 'check this rendered tree instead of rendering the config afresh')
  .addOption(new Option('--arch <arch>', 'check only this architecture').choices(['x86_64', 'aarch64']))
  .option('--json', 'print the report as JSON')
  .action(
    async (opts: { config?: string; buildroot?: string; tree?: string; arch?: Arch; json?: boolean }) => {
      const config = loadAppliance(opts.config);
      const report = await checkAppliance(config, {
        buildroot: opts.buildroot,
        tree: opts.tree,
        arches: opts.arch ? [opts.arch] : undefined,
      });
      process.stdout.write(`${opts.json ? JSON.stringify(report, null, 2) : formatCheckReport(report)}\n`);
      if (!report.ok) {
        const dropped = report.defconfigs.flatMap((d) =>
          d.problems.map((p) => `${p.symbol} (${d.arch}): ${p.reasons[0] ?? ''}`),
        );
        throw new ApplianceError(
          dropped.length > 0
            ? `Buildroot dropped or changed ${dropped.length} requested symbol(s): ${dropped.join('; ')}`
            : 'the tree failed its checks',
          { exitCode: ExitCode.checkFailed, hint: 'fix appliance.yaml (see the report above)' },
        );
      }
    },
  );

const buildroot = program.command('buildroot').description('manage the pinned Buildroot release');
buildroot
  .command('fetch')
  .description(
    'get the pinned Buildroot release into the cache (from a git repository, a folder or its download URL)',
  )
  .addOption(configOption())
  .option('--from-git <repo>', 'a local git clone or mirror of github.com/buildroot/buildroot')
  .option('--from-dir <dir>', 'a local folder holding the extracted release')
  .option('--url <url>', 'download this tarball instead of the pinned URL')
  .option('--sha256 <hash>', 'expected sha256 of the tarball')
  .option('--dest <dir>', 'where to put the tree (default: the cache)')
  .action(
    async (opts: {
      config?: string;
      fromGit?: string;
      fromDir?: string;
      url?: string;
      sha256?: string;
      dest?: string;
    }) => {
      const config = loadAppliance(opts.config);
      if (opts.fromGit && opts.fromDir)
        throw new ApplianceError('--from-git and --from-dir exclude each other', { hint: 'pass one' });
      const dir = await fetchBuildroot({ version: config.buildroot.version, ...opts });
      process.stdout.write(`${dir}\n`);
    },
  );

program
  .command('pin-hashes')
  .description("record the sha256 of docuum's and gitlab-runner's downloaded archives, then re-render")
  .addOption(configOption())
  .requiredOption('--dl-dir <dir>', 'Buildroot download folder (BR2_DL_DIR) of a networked build')
  .option('-o, --out <dir>', 'rendered tree to update', 'external')
  .action((opts: { config?: string; dlDir: string; out: string }) => {
    const config = loadAppliance(opts.config);
    const result = pinHashes(config, opts.dlDir);
    for (const p of result.pinned) info(`pinned ${p.archive} ${p.sha256}`);
    info(`wrote ${result.file}`);
    const written = renderToDisk(config, opts.out);
    info(written.unchanged ? `${written.outDir} is up to date` : `re-rendered ${written.outDir}`);
  });

program
  .command('doctor')
  .description('check host prerequisites to build, check, boot and run the appliance, with fixes')
  .addOption(configOption())
  .option('--buildroot <dir>', 'Buildroot tree to look at')
  .option('--out <dir>', 'where builds will go (for the free-disk check)', '.')
  .option('--probe-kernel <file>', 'a kernel image to test-boot under KVM')
  .option('--json', 'print findings as JSON')
  .action(
    async (opts: {
      config?: string;
      buildroot?: string;
      out: string;
      probeKernel?: string;
      json?: boolean;
    }) => {
      const config = loadAppliance(opts.config);
      const findings = await runDoctor(config, {
        buildroot: opts.buildroot,
        outDir: opts.out,
        probeKernel: opts.probeKernel,
      });
      process.stdout.write(`${opts.json ? JSON.stringify(findings, null, 2) : formatFindings(findings)}\n`);
      const failed = findings.filter((f) => f.status === 'fail');
      if (failed.length > 0) {
        throw new ApplianceError(
          `${failed.length} prerequisite(s) missing: ${failed.map((f) => f.name).join(', ')}`,
          {
            exitCode: ExitCode.hostProblem,
            hint: failed
              .map((f) => f.fix)
              .filter(Boolean)
              .join('; '),
          },
        );
      }
    },
  );

const disk = program.command('disk').description('the ext4 data disk');
disk
  .command('create <path>')
  .description('make a sparse raw image holding an empty ext4 data disk (never overwrites anything)')
  .addOption(configOption())
  .option('--size <size>', 'size, e.g. 20G (default: dataDisk.size)')
  .option('--label <label>', 'ext4 label (default: dataDisk.label)')
  .action(async (path: string, opts: { config?: string; size?: string; label?: string }) => {
    const config = loadAppliance(opts.config);
    const sizeBytes = opts.size === undefined ? config.dataDiskBytes : parseSize(opts.size);
    if (sizeBytes === undefined || sizeBytes < 64 * 1024 ** 2) {
      throw new ApplianceError(`--size ${JSON.stringify(opts.size)} is not a size of at least 64M`, {
        hint: 'pass e.g. --size 20G',
      });
    }
    const made = await createDataDisk(path, { sizeBytes, label: opts.label ?? config.dataDisk.label });
    process.stdout.write(`${formatDiskInfo(made)}\n`);
  });
disk
  .command('inspect <path>')
  .description('report a data disk image: label, size and use')
  .option('--json', 'print JSON')
  .action(async (path: string, opts: { json?: boolean }) => {
    const d = await inspectDataDisk(path);
    process.stdout.write(`${opts.json ? JSON.stringify(d, null, 2) : formatDiskInfo(d)}\n`);
  });

const accelOption = () => new Option('--accel <accel>', 'accelerator').choices(['kvm', 'tcg']).default('kvm');
const archOption = () =>
  new Option('--arch <arch>', 'architecture (default: arch in appliance.yaml)').choices([
    'x86_64',
    'aarch64',
  ]);
function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}
function parseCredentials(values: string[]): { name: string; file: string }[] {
  return values.map((v) => {
    const at = v.indexOf('=');
    if (at <= 0)
      throw new ApplianceError(`--credential ${JSON.stringify(v)} is not NAME=FILE`, {
        hint: 'e.g. --credential gitlab-runner.token=/root/token',
      });
    return { name: v.slice(0, at), file: v.slice(at + 1) };
  });
}

const libvirtCmd = program.command('libvirt').description('libvirt XML for the appliance');
libvirtCmd
  .command('domain')
  .description('print (or --out) the libvirt domain XML')
  .addOption(configOption())
  .addOption(accelOption())
  .addOption(archOption())
  .option('--kernel <path>', 'kernel image on the libvirt host')
  .option('--initrd <path>', 'initramfs on the libvirt host')
  .option('--rootfs <path>', 'squashfs root filesystem on the libvirt host')
  .option('--data-disk <path>', 'data disk image on the libvirt host')
  .option('--credential <name=file>', 'systemd credential from a host file (repeatable)', collect, [])
  .option('--network <name>', 'libvirt network', 'default')
  .option('--bridge <name>', 'host bridge instead of a libvirt network')
  .option(
    '--gateway <ip>',
    "DHCP/DNS address the isolation filter lets through (default: vm.gateway, else 192.168.122.1 on libvirt's default network)",
  )
  .option('--no-filter', 'do not attach the isolation filter')
  .option('--serial-log <path>', 'serial console log file')
  .option('--cmdline <word>', 'extra kernel command-line word (repeatable)', collect, [])
  .option('-o, --out <file>', 'write to this file')
  .action(
    (opts: {
      config?: string;
      accel: Accel;
      arch?: 'x86_64' | 'aarch64';
      kernel?: string;
      initrd?: string;
      rootfs?: string;
      dataDisk?: string;
      credential: string[];
      network: string;
      bridge?: string;
      gateway?: string;
      filter: boolean;
      serialLog?: string;
      cmdline: string[];
      out?: string;
    }) => {
      const config = loadAppliance(opts.config);
      const paths = defaultImagePaths(config.name);
      const xml = domainXml(config, {
        arch: opts.arch ?? config.arch,
        accel: opts.accel,
        kernel: opts.kernel ?? paths.kernel,
        initrd: opts.initrd,
        rootfs: opts.rootfs ?? paths.rootfs,
        dataDisk: opts.dataDisk ?? paths.dataDisk,
        credentials: parseCredentials(opts.credential),
        network: opts.bridge
          ? { type: 'bridge', name: opts.bridge }
          : { type: 'network', name: opts.network },
        gateway: filterGateway(config, {
          filter: opts.filter,
          gateway: opts.gateway,
          fallback: !opts.bridge && opts.network === 'default' ? defaultNetworkGateway : undefined,
          where: opts.bridge ? `the LAN behind bridge ${opts.bridge}` : `network ${opts.network}`,
        }),
        serialLog: opts.serialLog ?? `/var/log/libvirt/qemu/${config.name}-serial.log`,
        cmdline: opts.cmdline,
      });
      if (opts.out) writeFileSync(opts.out, xml);
      else process.stdout.write(xml);
    },
  );
libvirtCmd
  .command('render')
  .description(
    'write the domain XML (KVM and TCG) and the nwfilter XML with the default image paths into a folder',
  )
  .addOption(configOption())
  .option('-o, --out <dir>', 'folder', 'libvirt')
  .option(
    '--gateway <ip>',
    "gateway of the libvirt network (default: vm.gateway, else libvirt's default network's 192.168.122.1)",
  )
  .action((opts: { config?: string; out: string; gateway?: string }) => {
    const config = loadAppliance(opts.config);
    const gateway = opts.gateway ?? config.vm.gateway ?? defaultNetworkGateway;
    const result = writeTree(opts.out, libvirtTree(config, gateway));
    info(
      result.unchanged
        ? `${result.outDir} is up to date`
        : `wrote ${result.written.join(', ')} into ${result.outDir}`,
    );
  });
libvirtCmd
  .command('nwfilter')
  .description('print (or --out) the nwfilter XML that keeps the VM off the host LAN')
  .addOption(configOption())
  .option('-o, --out <file>', 'write to this file')
  .action((opts: { config?: string; out?: string }) => {
    const xml = nwfilterXml(loadAppliance(opts.config));
    if (opts.out) writeFileSync(opts.out, xml);
    else process.stdout.write(xml);
  });

const connectOption = () =>
  new Option('--connect <uri>', 'libvirt URI, e.g. qemu+ssh://root@host/system').default('qemu:///system');
const vm = program.command('vm').description('the VM on a libvirt host, through virsh');
const defineLike = (cmd: Command) =>
  cmd
    .addOption(configOption())
    .addOption(connectOption())
    .option('--pool <name>', 'storage pool for the images', 'runner-appliance')
    .requiredOption('--kernel <file>', 'kernel image (bzImage / Image)')
    .requiredOption('--rootfs <file>', 'rootfs.squashfs')
    .option('--initrd <file>', 'initramfs (not needed by the appliance)')
    .option(
      '--credential <name=file>',
      'systemd credential, e.g. gitlab-runner.token=/root/token (repeatable)',
      collect,
      [],
    )
    .option('--network <name>', 'libvirt network', 'default')
    .option('--bridge <name>', 'host bridge instead of a libvirt network')
    .option(
      '--gateway <ip>',
      'the DHCP/DNS address the isolation filter lets through (default: vm.gateway, else read from the network; needed with --bridge)',
    )
    .option('--no-filter', 'do not attach the isolation filter')
    .option('--cmdline <word>', 'extra kernel command-line word (repeatable)', collect, [])
    .addOption(new Option('--accel <accel>', 'accelerator').choices(['auto', 'kvm', 'tcg']).default('auto'));
type DefineFlags = {
  filter: boolean;
  config?: string;
  connect: string;
  pool: string;
  kernel: string;
  rootfs: string;
  initrd?: string;
  dataDisk?: string;
  credential: string[];
  network: string;
  bridge?: string;
  gateway?: string;
  cmdline: string[];
  accel: Accel | 'auto';
};
const defineOptions = (o: DefineFlags): DefineOptions => ({
  kernel: o.kernel,
  rootfs: o.rootfs,
  initrd: o.initrd,
  dataDisk: o.dataDisk,
  credentials: parseCredentials(o.credential),
  network: o.network,
  bridge: o.bridge,
  gateway: o.gateway,
  filter: o.filter,
  accel: o.accel,
  cmdline: o.cmdline,
});
defineLike(
  vm
    .command('define')
    .description('install the filter, the images (kernel, rootfs, data disk, credentials) and the domain'),
)
  .option('--data-disk <file>', 'upload this data disk if the VM has none yet (default: make an empty one)')
  .action(async (o: DefineFlags) => {
    const config = loadAppliance(o.config);
    await defineVm(config, connection(o.connect, o.pool), defineOptions(o));
    info(`defined ${config.name} on ${o.connect}`);
  });
defineLike(
  vm
    .command('update')
    .description('swap kernel and rootfs for a new build, keep the data disk, restart if running'),
)
  .option('--stop-timeout <seconds>', 'how long to wait for a clean shutdown', '120')
  .action(async (o: DefineFlags & { stopTimeout: string }) => {
    const config = loadAppliance(o.config);
    await updateVm(config, connection(o.connect, o.pool), defineOptions(o), Number(o.stopTimeout));
    info(`updated ${config.name} on ${o.connect}`);
  });
const simple = (name: string, description: string) =>
  vm
    .command(name)
    .description(description)
    .addOption(configOption())
    .addOption(connectOption())
    .option('--pool <name>', 'storage pool for the images', 'runner-appliance');
simple('start', 'start the VM').action(async (o: { config?: string; connect: string; pool: string }) => {
  await startVm(loadAppliance(o.config), connection(o.connect, o.pool));
});
simple('stop', 'shut the VM down cleanly')
  .option('--timeout <seconds>', 'wait this long for the guest', '120')
  .option('--force', 'power it off when the timeout passes')
  .action(async (o: { config?: string; connect: string; pool: string; timeout: string; force?: boolean }) => {
    await stopVm(loadAppliance(o.config), connection(o.connect, o.pool), Number(o.timeout), o.force);
  });
simple('destroy', 'power the VM off at once (the data disk is kept)').action(
  async (o: { config?: string; connect: string; pool: string }) => {
    await destroyVm(loadAppliance(o.config), connection(o.connect, o.pool));
  },
);
simple('undefine', 'remove the domain; volumes are kept unless --delete-images (the data disk always is)')
  .option('--delete-images', 'also delete kernel and rootfs volumes')
  .action(async (o: { config?: string; connect: string; pool: string; deleteImages?: boolean }) => {
    await undefineVm(loadAppliance(o.config), connection(o.connect, o.pool), o.deleteImages);
  });
simple('status', 'print the VM state')
  .option('--json', 'print JSON')
  .action(async (o: { config?: string; connect: string; pool: string; json?: boolean }) => {
    const s = await vmStatus(loadAppliance(o.config), connection(o.connect, o.pool));
    process.stdout.write(o.json ? `${JSON.stringify(s, null, 2)}\n` : `${s.name} on ${s.uri}: ${s.state}\n`);
  });
simple('console', 'attach to the serial console (Ctrl-] leaves)').action(
  async (o: { config?: string; connect: string; pool: string }) => {
    process.exitCode = await consoleVm(loadAppliance(o.config), connection(o.connect, o.pool));
  },
);

const buildFlags = (cmd: Command) =>
  cmd
    .addOption(configOption())
    .addOption(archOption())
    .option('--buildroot <dir>', 'Buildroot tree (default: $APPLIANCE_BUILDROOT, then the cache)')
    .option(
      '--dl-dir <dir>',
      'download folder shared between builds (default: $BR2_DL_DIR, then ~/.cache/runner-appliance/dl)',
    )
    .option('--mirror <url>', 'a download mirror (BR2_PRIMARY_SITE) tried first')
    .option('--mirror-only', 'download from the mirror only (BR2_PRIMARY_SITE_ONLY)');
type BuildFlags = {
  config?: string;
  arch?: Arch;
  buildroot?: string;
  dlDir?: string;
  mirror?: string;
  mirrorOnly?: boolean;
};

buildFlags(
  program
    .command('build')
    .description(
      'build kernel and squashfs root with Buildroot: render, configure, check, plan, make, gather artifacts',
    ),
)
  .option('-j, --jobs <n>', 'parallel jobs inside each package (BR2_JLEVEL; 0 = one per CPU)')
  .option('--ccache', 'use ccache (cache in ~/.cache/runner-appliance/ccache)')
  .option('-o, --out <dir>', 'build folder (default: output/<name>-<arch>)')
  .option('--plan', 'print what a build would do (the rebuild plan) and run nothing')
  .option('--clean', 'build from scratch')
  .option('--json', 'progress and result as JSON lines on stdout')
  .action(
    async (
      o: BuildFlags & {
        jobs?: string;
        ccache?: boolean;
        out?: string;
        plan?: boolean;
        clean?: boolean;
        json?: boolean;
      },
    ) => {
      const config = loadAppliance(o.config);
      const jobs = o.jobs === undefined ? undefined : Number(o.jobs);
      if (jobs !== undefined && !(Number.isInteger(jobs) && jobs >= 0)) {
        throw new ApplianceError(`--jobs ${JSON.stringify(o.jobs)} is not a number of jobs`, {
          hint: 'pass 0 (one per CPU) or a positive number',
        });
      }
      const result = await build(config, { ...o, jobs, planOnly: o.plan });
      if (o.plan || !o.json) process.stdout.write(`${formatPlan(result.plan)}\n`);
      if (result.manifest && !o.json) {
        for (const f of result.manifest.files)
          process.stdout.write(
            `${join(result.layout.artifacts, f.name)}  ${f.bytes} bytes  sha256 ${f.sha256}\n`,
          );
      }
    },
  );

buildFlags(
  program
    .command('source')
    .description(
      'download every source (make source) for an air-gapped build; report each package that failed',
    ),
).action(async (o: BuildFlags) => {
  const config = loadAppliance(o.config);
  const r = await downloadSources(config, o);
  if (r.failed.length > 0) {
    throw new ApplianceError(
      `${r.failed.length} package(s) could not be downloaded: ${r.failed.map((f) => `${f.pkg} ${f.version}`).join(', ')}`,
      {
        exitCode: ExitCode.checkFailed,
        hint: `check the network or --mirror; the log is ${join(r.dlDir, 'appliance-source.log')}`,
      },
    );
  }
  info(`every source is in ${r.dlDir}`);
});

program
  .command('sbom')
  .description("write a CycloneDX JSON SBOM of the image from Buildroot's show-info (needs no build)")
  .addOption(configOption())
  .addOption(archOption())
  .option('--buildroot <dir>', 'Buildroot tree (default: $APPLIANCE_BUILDROOT, then the cache)')
  .option('--include-host', 'also list host (build-time) packages, with scope "excluded"')
  .option('-o, --out <file>', 'write to this file instead of stdout')
  .action(
    async (o: { config?: string; arch?: Arch; buildroot?: string; includeHost?: boolean; out?: string }) => {
      const config = loadAppliance(o.config);
      const bom = await generateSbom(config, o);
      const text = `${JSON.stringify(bom, null, 2)}\n`;
      if (o.out) {
        writeFileSync(`${o.out}.tmp`, text);
        renameSync(`${o.out}.tmp`, o.out);
      } else process.stdout.write(text);
    },
  );

program
  .command('smoke')
  .description(
    'boot an image under QEMU, check it over SSH, write a JUnit report (exit 0 pass, 1 check failed, 3 infrastructure)',
  )
  .addOption(configOption())
  .option('--kernel <file>', 'kernel image (bzImage / Image)')
  .option('--rootfs <file>', 'squashfs root filesystem')
  .option('--initrd <file>', 'initramfs, if the kernel needs one')
  .option('--artifacts <dir>', "a build's artifacts folder (manifest.json, kernel, rootfs.squashfs)")
  .option(
    '--data-disk <file>',
    'data disk image, never written (a copy-on-write overlay takes the writes); default: a throwaway one',
  )
  .addOption(new Option('--accel <accel>', 'accelerator').choices(['auto', 'kvm', 'tcg']).default('auto'))
  .option('--timeout <seconds>', 'for boot and checks together (default 180 with KVM, 600 with TCG)')
  .option('--junit <file>', 'JUnit XML report (default: <out>/junit.xml)')
  .option('--out <dir>', 'folder for the report, serial log, timeline and summary', 'smoke-report')
  .option(
    '--image-tar <file>',
    'rootfs tarball imported as the test container image (default: made from a static busybox)',
  )
  .option(
    '--hold <seconds>',
    "keep the VM idle this long after the checks and record QEMU's memory in the timeline",
  )
  .addOption(archOption())
  .action(
    async (o: {
      config?: string;
      kernel?: string;
      rootfs?: string;
      initrd?: string;
      artifacts?: string;
      dataDisk?: string;
      accel: 'auto' | 'kvm' | 'tcg';
      timeout?: string;
      junit?: string;
      out: string;
      imageTar?: string;
      arch?: Arch;
      hold?: string;
    }) => {
      const config = loadAppliance(o.config);
      let { kernel, rootfs } = o;
      if (o.artifacts) {
        const manifestPath = join(o.artifacts, 'manifest.json');
        let manifest: { arch?: Arch; files?: { name: string }[] };
        try {
          manifest = JSON.parse(readFileSync(manifestPath, 'utf8'));
        } catch {
          throw new ApplianceError(`${manifestPath} is missing or not JSON`, {
            hint: "pass the artifacts folder 'appliance build' wrote",
          });
        }
        const names = (manifest.files ?? []).map((f) => f.name);
        kernel ??= join(o.artifacts, names.find((n) => n === 'bzImage' || n === 'Image') ?? 'bzImage');
        rootfs ??= join(o.artifacts, 'rootfs.squashfs');
        o.arch ??= manifest.arch;
      }
      if (!kernel || !rootfs)
        throw new ApplianceError('no image to boot', {
          hint: 'pass --kernel and --rootfs, or --artifacts DIR',
        });
      const timeoutSeconds = o.timeout === undefined ? undefined : Number(o.timeout);
      if (timeoutSeconds !== undefined && !(Number.isFinite(timeoutSeconds) && timeoutSeconds >= 10)) {
        throw new ApplianceError(
          `--timeout ${JSON.stringify(o.timeout)} is not a number of seconds (at least 10)`,
        );
      }
      const report = await runSmoke(config, {
        kernel,
        rootfs,
        initrd: o.initrd,
        dataDisk: o.dataDisk,
        accel: o.accel,
        timeoutSeconds,
        junit: o.junit,
        outDir: o.out,
        imageTar: o.imageTar,
        arch: o.arch,
        holdSeconds: o.hold === undefined ? undefined : holdSeconds(o.hold),
      });
      process.stdout.write(readFileSync(report.files.summary, 'utf8'));
      if (!report.passed) {
        const failed = report.cases.filter((c) => c.status === 'failed');
        throw new ApplianceError(
          `${failed.length} of ${report.cases.length} smoke checks failed: ${failed.map((c) => c.name).join(', ')}`,
          {
            exitCode: ExitCode.checkFailed,
            hint: `see ${report.files.junit} and ${report.files.serial}`,
          },
        );
      }
    },
  );

function holdSeconds(text: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 0 || n > 3600) {
    throw new ApplianceError(`--hold ${JSON.stringify(text)} is not a number of seconds from 0 to 3600`);
  }
  return n;
}

export async function main(argv: string[]): Promise<number> {
  installSignalHandlers();
  try {
    await program.parseAsync(argv);
    return process.exitCode === undefined ? ExitCode.ok : Number(process.exitCode);
  } catch (e) {
    if (wasInterrupted()) return ExitCode.interrupted;
    if (e instanceof CommanderError) {
      if (e.code === 'commander.helpDisplayed' || e.code === 'commander.version' || e.exitCode === 0)
        return ExitCode.ok;
      return ExitCode.badInput;
    }
    if (isApplianceError(e)) {
      process.stderr.write(`error: ${e.oneLine()}\n`);
      if (e.details && (isVerbose() || e.exitCode !== ExitCode.badInput))
        process.stderr.write(`${e.details}\n`);
      return e.exitCode;
    }
    const err = e as Error;
    process.stderr.write(`error: unexpected failure: ${err.message}\n`);
    if (isVerbose()) process.stderr.write(`${err.stack}\n`);
    else process.stderr.write('rerun with --verbose for the stack trace\n');
    return ExitCode.hostProblem;
  }
}

export { program };
