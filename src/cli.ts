/** The `appliance` command line. Each command is a thin layer over one stage module. */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { Command, CommanderError, Option } from 'commander';
import {
  build,
  downloadSources,
  fetchBuildroot,
  formatPlan,
  generateSbom,
  hashArchives,
} from './buildroot/index.js';
import { checkAppliance, formatCheckReport } from './check/index.js';
import {
  type Credential,
  collect,
  credential,
  libvirtUri,
  refuseDashValues,
  seconds,
  setting,
  settingOption,
  sha256Hex,
  wholeNumber,
} from './cli-input.js';
import {
  type ApplianceConfig,
  type Arch,
  applianceJsonSchema,
  configReferenceMarkdown,
  formatSize,
  loadAppliance,
  parseSize,
  platformTargets,
} from './config/index.js';
import { sha256File } from './digest.js';
import { createDataDisk, formatDiskInfo, growDataDisk, inspectDataDisk } from './disk/index.js';
import { formatFindings, runDoctor } from './doctor/index.js';
import { ApplianceError, ExitCode, isApplianceError } from './errors.js';
import {
  applyFleet,
  type FleetMember,
  fleetJsonSchema,
  fleetMembers,
  fleetStatus,
  formatPlan as formatFleetPlan,
  formatFleetStatus,
  formatSummary,
  type HostOps,
  loadFleet,
  planFleet,
  type VmReport,
} from './fleet/index.js';
import {
  inputDir,
  inputFile,
  outputDir,
  outputFile,
  readInputFile,
  shownValue,
  writeOutput,
} from './fsguard.js';
import {
  type Accel,
  type AccelChoice,
  acceleratorChoices,
  chooseAccelerator,
  defaultImagePaths,
  defaultPool,
  libvirtSerialLog,
  requireKernelArch,
} from './guest/index.js';
import {
  connection,
  consoleVm,
  type DefineOptions,
  defaultConnectUri,
  defaultNetworkGateway,
  defineVm,
  deployVm,
  destroyVm,
  domainXml,
  drainMarginSeconds,
  filterGateway,
  formatVmStatus,
  growVm,
  libvirtTree,
  nwfilterXml,
  rollbackVm,
  startVm,
  stopVm,
  undefineVm,
  updateVm,
  type VmStatus,
  vmStatus,
} from './libvirt/index.js';
import { info, isVerbose, setVerbose } from './log.js';
import { packageRoot } from './paths.js';
import {
  externalPackages,
  hashPinsPath,
  readHashPins,
  renderToDisk,
  renderTree,
  writeTree,
} from './render/index.js';
import { installSignalHandlers, runCommand, wasInterrupted } from './run/index.js';
import { runSmoke } from './smoke/index.js';

const program = new Command();
program
  .name('appliance')
  .description('Turn appliance.yaml into a Buildroot VM that runs a GitLab Runner with Docker')
  .version(
    (JSON.parse(readFileSync(join(packageRoot(), 'package.json'), 'utf8')) as { version: string }).version,
    '-V, --version',
    'print the version of appliance',
  )
  .option('-v, --verbose', 'show each external command and full error details')
  .showHelpAfterError(false)
  .exitOverride()
  .configureOutput({ writeErr: (s) => process.stderr.write(s) })
  .hook('preAction', (cmd) => setVerbose(Boolean(cmd.opts().verbose)));

const configOption = () =>
  new Option(
    '-c, --config <file>',
    'appliance.yaml to use (default: ./appliance.yaml if there is one, else the embedded default)',
  );

/** --arch mirrors `arch`: choices and parser from the schema; `fallback` names another default. */
const archOption = (fallback?: string) =>
  settingOption('--arch <arch>', ['arch'], {
    help: fallback ? 'only this architecture' : 'architecture',
    what: 'an architecture',
    fallback,
  });
/** --accel, the same in every command: auto (KVM only when a probe boot shows it runs here), kvm, tcg. */
const accelOption = () =>
  new Option(
    '--accel <accel>',
    'accelerator; auto: KVM when a probe boot shows a guest runs under it, else TCG',
  )
    .choices(acceleratorChoices)
    .default('auto' satisfies AccelChoice);
/** -o/--out is where a command writes: a file (stdout without it) or a folder, as --help says. */
const outFileOption = () => new Option('-o, --out <file>', 'file to write (atomically; default: stdout)');
const outDirOption = (what: string, fallback?: string) => {
  const option = new Option('-o, --out <dir>', `folder ${what}`);
  return fallback === undefined ? option : option.default(fallback);
};
/** Where `render` writes the br2-external tree and `pin-hashes` re-renders it, unless told otherwise. */
const renderedTree = 'external';
const buildrootOption = () =>
  new Option('--buildroot <dir>', 'Buildroot tree (default: $APPLIANCE_BUILDROOT, then the cache)');

/** Optional path checks, run before the config is even read. */
const maybe = <T>(check: (what: string, path: string) => T, what: string, path: string | undefined) =>
  path === undefined ? undefined : check(what, path);

program
  .command('render')
  .description('render the br2-external tree for the appliance')
  .addOption(configOption())
  .addOption(outDirOption('to render the br2-external tree into', renderedTree))
  .option('--force', 'overwrite generated files that were edited since the last render')
  .action((opts: { config?: string; out: string; force?: boolean }) => {
    outputDir('--out', opts.out, { refuseSystemRoots: true });
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
  .addOption(outFileOption())
  .option('--markdown', 'print the configuration reference table (as in the README) instead')
  .action((opts: { out?: string; markdown?: boolean }) => {
    maybe(outputFile, '--out', opts.out);
    const text = opts.markdown
      ? `${configReferenceMarkdown()}\n`
      : `${JSON.stringify(applianceJsonSchema(), null, 2)}\n`;
    writeOutput('--out', opts.out, text);
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
  .addOption(buildrootOption())
  .option('--tree <dir>', 'check this rendered tree instead of rendering the config afresh')
  .addOption(archOption('both'))
  .option('--json', 'print the report as JSON')
  .action(
    async (opts: { config?: string; buildroot?: string; tree?: string; arch?: Arch; json?: boolean }) => {
      maybe(inputDir, '--buildroot', opts.buildroot);
      maybe(inputDir, '--tree', opts.tree);
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
  .addOption(
    new Option(
      '--from-git <repo>',
      'a local git clone or mirror of github.com/buildroot/buildroot',
    ).conflicts('fromDir'),
  )
  .option('--from-dir <dir>', 'a local folder holding the extracted release')
  .option('--url <url>', 'download this tarball instead of the pinned URL')
  .option('--sha256 <hash>', 'expected sha256 of the tarball', sha256Hex('--sha256'))
  .addOption(outDirOption('to put the Buildroot tree in (default: the cache)'))
  .action(
    async (opts: {
      config?: string;
      fromGit?: string;
      fromDir?: string;
      url?: string;
      sha256?: string;
      out?: string;
    }) => {
      maybe(inputDir, '--from-git', opts.fromGit);
      maybe(inputDir, '--from-dir', opts.fromDir);
      maybe(outputDir, '--out', opts.out);
      const config = loadAppliance(opts.config);
      const { out: dest, ...from } = opts;
      const dir = await fetchBuildroot({ version: config.buildroot.version, ...from, dest });
      process.stdout.write(`${dir}\n`);
    },
  );

program
  .command('pin-hashes')
  .description("record the sha256 of docuum's and gitlab-runner's downloaded archives, then re-render")
  .addOption(configOption())
  .requiredOption('--dl-dir <dir>', 'Buildroot download folder (BR2_DL_DIR) of a networked build')
  .addOption(outDirOption('of the rendered tree to re-render', renderedTree))
  .action(async (opts: { config?: string; dlDir: string; out: string }) => {
    outputDir('--out', opts.out, { refuseSystemRoots: true });
    const config = loadAppliance(opts.config);
    const pins = { ...readHashPins(config) };
    for (const p of await hashArchives(opts.dlDir, externalPackages)) {
      pins[p.archive] = p.sha256;
      info(`pinned ${p.archive} ${p.sha256}`);
    }
    const sorted = Object.fromEntries(Object.entries(pins).sort(([a], [b]) => (a < b ? -1 : 1)));
    writeOutput('hash pins', hashPinsPath(config), `${JSON.stringify(sorted, null, 2)}\n`);
    info(`wrote ${hashPinsPath(config)}`);
    const written = renderToDisk(config, opts.out);
    info(written.unchanged ? `${written.outDir} is up to date` : `re-rendered ${written.outDir}`);
  });

program
  .command('doctor')
  .description('check host prerequisites to build, check, boot and run the appliance, with fixes')
  .addOption(configOption())
  .option('--buildroot <dir>', 'Buildroot tree to look at')
  .addOption(outDirOption("builds will write into (build's --out), for the free-disk check", '.'))
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
      maybe(inputDir, '--buildroot', opts.buildroot);
      maybe(inputFile, '--probe-kernel', opts.probeKernel);
      outputDir('--out', opts.out);
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

/** --size of disk grow and vm grow: the new size, required, parsed as dataDisk.size is. */
const growSizeOption = () =>
  new Option('--size <size>', 'the new size, e.g. 40G: any size dataDisk.size accepts, never smaller')
    .makeOptionMandatory()
    .argParser(setting('--size', ['dataDisk', 'size'], 'a size', '40G'));
const disk = program.command('disk').description('the ext4 data disk');
disk
  .command('create <path>')
  .description('make a sparse raw image holding an empty ext4 data disk (never overwrites anything)')
  .addOption(configOption())
  .addOption(
    settingOption('--size <size>', ['dataDisk', 'size'], {
      help: 'size of the image, accepted as dataDisk.size accepts it',
      what: 'a size',
    }),
  )
  .addOption(
    settingOption('--label <label>', ['dataDisk', 'label'], { help: 'ext4 label', what: 'an ext4 label' }),
  )
  .action(async (path: string, opts: { config?: string; size?: string; label?: string }) => {
    const config = loadAppliance(opts.config);
    const sizeBytes = opts.size === undefined ? config.dataDiskBytes : (parseSize(opts.size) ?? 0);
    const made = await createDataDisk(path, { sizeBytes, label: opts.label ?? config.dataDisk.label });
    process.stdout.write(`${formatDiskInfo(made)}\n`);
  });
disk
  .command('inspect <path>')
  .description('report a data disk image: label, size and use')
  .option('--json', 'print JSON')
  .action(async (path: string, opts: { json?: boolean }) => {
    inputFile('data disk', path, 'pass a data disk image');
    const d = await inspectDataDisk(path);
    process.stdout.write(`${opts.json ? JSON.stringify(d, null, 2) : formatDiskInfo(d)}\n`);
  });
disk
  .command('grow <path>')
  .description(
    'enlarge a data disk image in place (sparse, never shrinks); the guest grows its filesystem at boot',
  )
  .addOption(growSizeOption())
  .option('--json', 'print JSON')
  .action(async (path: string, opts: { size: string; json?: boolean }) => {
    const r = await growDataDisk(path, parseSize(opts.size) ?? 0);
    if (opts.json) process.stdout.write(`${JSON.stringify(r, null, 2)}\n`);
    else if (!r.changed) process.stdout.write(`${r.after.path} is already ${opts.size}: nothing to do\n`);
    else
      process.stdout.write(
        `${formatDiskInfo(r.after)}\ngrown from ${formatSize(r.before.imageBytes)} to ${formatSize(r.after.imageBytes)}; the guest grows the filesystem to fill it at its next boot\n`,
      );
  });

/** --network NAME and --bridge NAME: one of them, never both. */
const networkOption = () =>
  new Option('--network <name>', 'libvirt network').default('default').conflicts('bridge');
const bridgeOption = () => new Option('--bridge <name>', 'host bridge instead of a libvirt network');

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
  .option('--credential <name=file>', 'systemd credential from a host file (repeatable)', credential, [])
  .addOption(networkOption())
  .addOption(bridgeOption())
  .option(
    '--gateway <ip>',
    `DHCP/DNS address the isolation filter lets through (default: vm.gateway, else ${defaultNetworkGateway} on libvirt's default network)`,
  )
  .option(
    '--gateway6 <ip>',
    'IPv6 DNS server the isolation filter lets through (default: vm.gateway6, else none)',
  )
  .option('--no-filter', 'do not attach the isolation filter')
  .option('--serial-log <path>', 'serial console log file')
  .option('--cmdline <word>', 'extra kernel command-line word (repeatable)', collect, [])
  .addOption(outFileOption())
  .action(
    async (opts: {
      config?: string;
      accel: AccelChoice;
      arch?: Arch;
      kernel?: string;
      initrd?: string;
      rootfs?: string;
      dataDisk?: string;
      credential: Credential[];
      network: string;
      bridge?: string;
      gateway?: string;
      gateway6?: string;
      filter: boolean;
      serialLog?: string;
      cmdline: string[];
      out?: string;
    }) => {
      maybe(outputFile, '--out', opts.out);
      const config = loadAppliance(opts.config);
      const paths = defaultImagePaths(config.name);
      const arch = opts.arch ?? config.arch;
      const kernel = opts.kernel ?? paths.kernel;
      const xmlFor = (accel: Accel) =>
        domainXml(config, {
          arch,
          accel,
          kernel,
          initrd: opts.initrd,
          rootfs: opts.rootfs ?? paths.rootfs,
          dataDisk: opts.dataDisk ?? paths.dataDisk,
          credentials: opts.credential,
          network: opts.bridge
            ? { type: 'bridge', name: opts.bridge }
            : { type: 'network', name: opts.network },
          ...filterGateway(config, {
            filter: opts.filter,
            gateway: opts.gateway,
            gateway6: opts.gateway6,
            fallback:
              !opts.bridge && opts.network === 'default' ? { gateway: defaultNetworkGateway } : undefined,
            where: opts.bridge ? `the LAN behind bridge ${opts.bridge}` : `network ${opts.network}`,
          }),
          serialLog: opts.serialLog ?? libvirtSerialLog(config.name),
          cmdline: opts.cmdline,
        });
      // Every value is checked (the TCG variant is built) before a probe boot may take seconds.
      const tcg = xmlFor('tcg');
      const accel = await chooseAccelerator(arch, existsSync(kernel) ? kernel : undefined, opts.accel);
      writeOutput('--out', opts.out, accel === 'tcg' ? tcg : xmlFor(accel));
    },
  );
libvirtCmd
  .command('render')
  .description(
    'write the domain XML (KVM and TCG) and the nwfilter XML with the default image paths into a folder',
  )
  .addOption(configOption())
  .addOption(outDirOption('to write the domain and filter XML files into', 'libvirt'))
  .option(
    '--gateway <ip>',
    `gateway of the libvirt network (default: vm.gateway, else libvirt's default network's ${defaultNetworkGateway})`,
  )
  .option('--gateway6 <ip>', 'IPv6 DNS server of the libvirt network (default: vm.gateway6, else none)')
  .action((opts: { config?: string; out: string; gateway?: string; gateway6?: string }) => {
    outputDir('--out', opts.out, { refuseSystemRoots: true });
    const config = loadAppliance(opts.config);
    const gateways = filterGateway(config, {
      gateway: opts.gateway,
      gateway6: opts.gateway6,
      fallback: { gateway: defaultNetworkGateway },
      where: "libvirt's default network",
    });
    const result = writeTree(opts.out, libvirtTree(config, gateways ?? {}), { kind: 'libvirt' });
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
  .option(
    '--ipv6',
    'with DNS rules for an IPv6 gateway (parameter GATEWAY6) too (default when vm.gateway6 is set)',
  )
  .option('--ipv6-only', 'with DNS rules for an IPv6 gateway only (no GATEWAY parameter)')
  .addOption(outFileOption())
  .action((opts: { config?: string; out?: string; ipv6?: boolean; ipv6Only?: boolean }) => {
    maybe(outputFile, '--out', opts.out);
    const config = loadAppliance(opts.config);
    const v6 = opts.ipv6 || opts.ipv6Only || config.vm.gateway6 !== undefined;
    const gateways = {
      ...(opts.ipv6Only ? {} : { gateway: config.vm.gateway ?? defaultNetworkGateway }),
      ...(v6 ? { gateway6: config.vm.gateway6 ?? '::' } : {}),
    };
    writeOutput('--out', opts.out, nwfilterXml(config, gateways));
  });

const connectOption = () =>
  new Option('--connect <uri>', 'libvirt URI, e.g. qemu+ssh://root@host/system')
    .default(defaultConnectUri)
    .argParser(libvirtUri);
/** --pool, only on the commands that put volumes in a pool or delete them (define, update, undefine). */
const poolOption = () =>
  new Option('--pool <name>', 'storage pool for the images (a dir pool vm define creates)').default(
    defaultPool,
  );
/** How long `vm stop --timeout`, `vm update`/`vm rollback --stop-timeout` wait for a clean (drained) shutdown. */
const stopTimeoutOption = (flag: string, help: string) =>
  new Option(
    `${flag} <seconds>`,
    `${help} (default: runner.drainTimeout + ${drainMarginSeconds} s, the margin tripled under TCG)`,
  ).argParser(seconds(flag, 1));

/** Fail with exit 3 when libvirt does not answer at `uri`, so no state is read from a failed call. */
async function requireConnection(uri: string): Promise<void> {
  const r = await runCommand('virsh', ['-q', '-c', uri, 'uri'], {
    allowFailure: true,
    purpose: `connecting to ${uri}`,
    timeoutMs: 60_000,
  });
  if (r.exitCode !== 0) {
    const why =
      r.stderr
        .trim()
        .split('\n')
        .pop()
        ?.replace(/^error: /, '') ?? `exit status ${r.exitCode}`;
    throw new ApplianceError(`cannot connect to libvirt at ${uri} (${why})`, {
      hint: "check the URI and that libvirtd runs there ('appliance doctor')",
      exitCode: ExitCode.hostProblem,
    });
  }
}
const vm = program.command('vm').description('the VM on a libvirt host, through virsh');
const defineLike = (cmd: Command) =>
  cmd
    .addOption(configOption())
    .addOption(connectOption())
    .addOption(poolOption())
    .requiredOption('--kernel <file>', 'kernel image (bzImage / Image)')
    .requiredOption('--rootfs <file>', 'rootfs.squashfs')
    .option('--initrd <file>', 'initramfs (not needed by the appliance)')
    .option(
      '--credential <name=file>',
      'systemd credential, e.g. gitlab-runner.token=/root/token (repeatable)',
      credential,
      [],
    )
    .addOption(networkOption())
    .addOption(bridgeOption())
    .option(
      '--gateway <ip>',
      'the DHCP/DNS address the isolation filter lets through (default: vm.gateway, else read from the network; needed with --bridge)',
    )
    .option(
      '--gateway6 <ip>',
      "the IPv6 DNS server the isolation filter lets through (default: vm.gateway6, else the network's IPv6 address when neither gateway is given)",
    )
    .option('--no-filter', 'do not attach the isolation filter')
    .option('--cmdline <word>', 'extra kernel command-line word (repeatable)', collect, [])
    .addOption(accelOption());
type DefineFlags = {
  filter: boolean;
  config?: string;
  connect: string;
  pool: string;
  kernel: string;
  rootfs: string;
  initrd?: string;
  dataDisk?: string;
  credential: Credential[];
  network: string;
  bridge?: string;
  gateway?: string;
  gateway6?: string;
  cmdline: string[];
  accel: Accel | 'auto';
};
/** Every local file `vm define`/`vm update` uploads, checked before anything is done. */
/** The files vm define/update upload, checked before anything connects; the kernel must fit the arch. */
function checkDefineFiles(config: ApplianceConfig, o: DefineFlags): void {
  requireKernelArch(inputFile('--kernel', o.kernel), config.arch, 'arch in appliance.yaml');
  inputFile('--rootfs', o.rootfs);
  maybe(inputFile, '--initrd', o.initrd);
  maybe(inputFile, '--data-disk', o.dataDisk);
  for (const c of o.credential) inputFile(`--credential ${c.name}`, c.file);
}
const defineOptions = (o: DefineFlags): DefineOptions => ({
  kernel: o.kernel,
  rootfs: o.rootfs,
  initrd: o.initrd,
  dataDisk: o.dataDisk,
  credentials: o.credential,
  network: o.network,
  bridge: o.bridge,
  gateway: o.gateway,
  gateway6: o.gateway6,
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
    checkDefineFiles(config, o);
    await requireConnection(o.connect);
    await defineVm(config, connection(o.connect, o.pool), defineOptions(o));
    info(`defined ${config.name} on ${o.connect}`);
  });
defineLike(
  vm
    .command('update')
    .description(
      'boot a new kernel + rootfs, keeping the previous ones and the data disk: drain, switch, start, wait for health (vm.healthTimeout); not healthy: roll back and exit 1',
    ),
)
  .addOption(stopTimeoutOption('--stop-timeout', 'how long to wait for the drained shutdown before forcing'))
  .action(async (o: DefineFlags & { stopTimeout?: number }) => {
    const config = loadAppliance(o.config);
    checkDefineFiles(config, o);
    await requireConnection(o.connect);
    const r = await updateVm(config, connection(o.connect, o.pool), defineOptions(o), {
      stopTimeoutSeconds: o.stopTimeout,
    });
    if (r.changed) info(`updated ${config.name} on ${o.connect}`);
  });
const simple = (name: string, description: string) =>
  vm.command(name).description(description).addOption(configOption()).addOption(connectOption());
/** The config and a connection that answers, for the lifecycle commands. */
async function vmTarget(o: { config?: string; connect: string; pool?: string }) {
  const config = loadAppliance(o.config);
  await requireConnection(o.connect);
  return [config, connection(o.connect, o.pool)] as const;
}
simple('start', 'start the VM').action(async (o: { config?: string; connect: string }) => {
  await startVm(...(await vmTarget(o)));
});
simple('stop', 'shut the VM down cleanly: the runner drains (no new jobs, running ones finish) first')
  .addOption(stopTimeoutOption('--timeout', 'wait this long for the guest'))
  .option('--force', 'power it off when the timeout passes')
  .action(async (o: { config?: string; connect: string; timeout?: number; force?: boolean }) => {
    await stopVm(...(await vmTarget(o)), { timeoutSeconds: o.timeout, force: o.force });
  });
simple('rollback', 'boot the previous kept kernel + rootfs (drained stop, switch, start, wait for health)')
  .addOption(poolOption())
  .addOption(stopTimeoutOption('--stop-timeout', 'how long to wait for the drained shutdown before forcing'))
  .action(async (o: { config?: string; connect: string; pool: string; stopTimeout?: number }) => {
    await rollbackVm(...(await vmTarget(o)), { stopTimeoutSeconds: o.stopTimeout });
  });
simple('destroy', 'power the VM off at once (the data disk is kept)').action(
  async (o: { config?: string; connect: string }) => {
    await destroyVm(...(await vmTarget(o)));
  },
);
simple('undefine', 'remove the domain; volumes are kept unless --delete-images (the data disk always is)')
  .addOption(poolOption())
  .option('--delete-images', 'also delete kernel and rootfs volumes')
  .action(async (o: { config?: string; connect: string; pool: string; deleteImages?: boolean }) => {
    await undefineVm(...(await vmTarget(o)), o.deleteImages);
  });
simple('grow', 'enlarge the data disk volume (never shrinks); a running guest grows /data at once')
  .addOption(poolOption())
  .addOption(growSizeOption())
  .action(async (o: { config?: string; connect: string; pool: string; size: string }) => {
    const [config, conn] = await vmTarget(o);
    const r = await growVm(config, conn, parseSize(o.size) ?? 0);
    info(
      !r.changed
        ? `${conn.pool}/${r.volume} is already ${o.size}: nothing to do`
        : `${conn.pool}/${r.volume} grown from ${formatSize(r.beforeBytes)} to ${formatSize(r.afterBytes)}; ${r.online ? 'the running guest grows /data now' : 'the guest grows /data at its next boot'}`,
    );
  });
simple(
  'status',
  "print the VM's state, its health (the guest's own verdict, read through the guest agent) and since when",
)
  .option('--json', 'print JSON: uri, name, state, healthy, image (rootfs sha256), since, reasons, …')
  .action(async (o: { config?: string; connect: string; json?: boolean }) => {
    const s = await vmStatus(...(await vmTarget(o)), { health: true });
    process.stdout.write(o.json ? `${JSON.stringify(s, null, 2)}\n` : formatVmStatus(s));
  });
simple('console', 'attach to the serial console (Ctrl-] leaves)').action(
  async (o: { config?: string; connect: string }) => {
    process.exitCode = await consoleVm(...(await vmTarget(o)));
  },
);

/**
 * The kernel and root filesystem a command boots: --kernel/--rootfs, else what an --artifacts
 * folder ('appliance build') holds, per its manifest.json; both must be readable files.
 */
function imageFiles(o: { artifacts?: string; kernel?: string; rootfs?: string }): {
  kernel: string;
  rootfs: string;
  arch?: Arch;
} {
  let { kernel, rootfs } = o;
  let arch: Arch | undefined;
  if (o.artifacts) {
    const manifestPath = join(o.artifacts, 'manifest.json');
    let manifest: { arch?: Arch; files?: { name: string }[] };
    try {
      manifest = JSON.parse(readInputFile('artifacts manifest', manifestPath).toString('utf8'));
    } catch {
      throw new ApplianceError(`${manifestPath} is missing or not JSON`, {
        hint: "pass the artifacts folder 'appliance build' wrote",
      });
    }
    const names = (manifest.files ?? []).map((f) => f.name);
    kernel ??= join(o.artifacts, names.find((n) => n === 'bzImage' || n === 'Image') ?? 'bzImage');
    rootfs ??= join(o.artifacts, 'rootfs.squashfs');
    arch = manifest.arch;
  }
  if (!kernel || !rootfs)
    throw new ApplianceError('no image to boot', {
      hint: 'pass --kernel and --rootfs, or --artifacts DIR',
    });
  inputFile('kernel', kernel, 'pass --kernel, or an --artifacts folder that holds one');
  inputFile('root filesystem', rootfs, 'pass --rootfs, or an --artifacts folder that holds one');
  return { kernel, rootfs, arch };
}

const fleet = program
  .command('fleet')
  .description('one image on several libvirt hosts (fleet.yaml): plan, rolling health-gated apply, status');
const fleetOption = () =>
  new Option(
    '--fleet <file>',
    'fleet.yaml: the hosts (uri, optional name, network|bridge, …)',
  ).makeOptionMandatory();
const fleetImageFlags = (cmd: Command) =>
  cmd
    .addOption(fleetOption())
    .addOption(configOption())
    .option('--artifacts <dir>', "a build's artifacts folder (manifest.json, kernel, rootfs.squashfs)")
    .option('--kernel <file>', 'kernel image (instead of --artifacts)')
    .option('--rootfs <file>', 'rootfs.squashfs (instead of --artifacts)');
type FleetFlags = {
  fleet: string;
  config?: string;
  artifacts?: string;
  kernel?: string;
  rootfs?: string;
  pool?: string;
  credential?: Credential[];
  accel?: Accel | 'auto';
  maxParallel?: number;
  stopTimeout?: number;
  json?: boolean;
};
/** The fleet's VMs (fleet.yaml + appliance.yaml), checked before anything connects. */
function fleetTarget(o: FleetFlags) {
  const base = loadAppliance(o.config);
  return fleetMembers(base, loadFleet(o.fleet), o.fleet);
}
/** The per-host operations of the fleet stage, done with the libvirt stage. */
function fleetOps(o: FleetFlags, files?: { kernel: string; rootfs: string }): HostOps {
  const conn = (m: FleetMember) => connection(m.uri, m.entry.pool ?? o.pool);
  const options = (m: FleetMember): DefineOptions => ({
    kernel: files?.kernel ?? '',
    rootfs: files?.rootfs ?? '',
    credentials: [
      ...(o.credential ?? []),
      ...(m.entry.credential ? [{ name: m.config.runner.tokenCredential, file: m.entry.credential }] : []),
    ],
    network: m.entry.network ?? 'default',
    bridge: m.entry.bridge,
    gateway: m.config.vm.gateway,
    filter: true,
    accel: o.accel ?? 'auto',
    cmdline: [],
  });
  return {
    async status(m) {
      await requireConnection(m.uri);
      return (await vmStatus(m.config, conn(m), { health: true })) as VmReport & VmStatus;
    },
    async update(m, action) {
      info(`fleet: ${action === 'define' ? 'defining' : 'updating'} ${m.name} on ${m.uri}`);
      if (action === 'define') await deployVm(m.config, conn(m), options(m));
      else await updateVm(m.config, conn(m), options(m), { stopTimeoutSeconds: o.stopTimeout });
    },
  };
}
fleetImageFlags(
  fleet.command('plan').description('print, per host, the image it runs and what apply would do'),
).action(async (o: FleetFlags) => {
  const members = fleetTarget(o);
  const files = imageFiles(o);
  const image = await sha256File(files.rootfs);
  process.stdout.write(formatFleetPlan(await planFleet(members, fleetOps(o, files), image), image));
});
fleetImageFlags(
  fleet
    .command('apply')
    .description(
      'bring every host to the image through the health-gated update, one at a time; stops at the first failure (that host is rolled back, the rest untouched)',
    ),
)
  .option(
    '--max-parallel <n>',
    'update this many hosts at a time',
    wholeNumber(
      '--max-parallel',
      'a whole number of hosts',
      1,
      64,
      'pass how many hosts to update at a time, e.g. --max-parallel 2',
    ),
    1,
  )
  .option(
    '--credential <name=file>',
    'systemd credential for every VM, e.g. ssh.authorized_keys.root=/root/key.pub (repeatable)',
    credential,
    [],
  )
  .addOption(poolOption())
  .addOption(accelOption())
  .addOption(
    stopTimeoutOption('--stop-timeout', 'how long each host waits for the drained shutdown before forcing'),
  )
  .action(async (o: FleetFlags) => {
    const members = fleetTarget(o);
    const files = imageFiles(o);
    for (const m of members) {
      requireKernelArch(files.kernel, m.config.arch, 'arch in appliance.yaml');
      if (m.entry.credential) inputFile(`credential of hosts[${m.index}]`, m.entry.credential);
    }
    for (const c of o.credential ?? []) inputFile(`--credential ${c.name}`, c.file);
    const image = await sha256File(files.rootfs);
    const result = await applyFleet(members, fleetOps(o, files), image, { maxParallel: o.maxParallel });
    process.stdout.write(formatSummary(result));
    if (!result.ok) {
      const failed = result.hosts.find((h) => h.outcome === 'failed');
      throw new ApplianceError(
        `fleet apply stopped at ${failed?.member.name} on ${failed?.member.uri}: ${(failed?.error ?? '').split('\n')[0]}`,
        {
          exitCode: ExitCode.checkFailed,
          hint: 'the hosts after it were not touched; fix the image and apply again',
          ...(failed?.details ? { details: failed.details } : {}),
        },
      );
    }
  });
fleet
  .command('status')
  .description("print every host's VM: state, health and since when, image (rootfs sha256)")
  .addOption(fleetOption())
  .addOption(configOption())
  .option(
    '--json',
    'print a JSON list, per VM: uri, name, state, healthy, image, since (as vm status --json)',
  )
  .action(async (o: FleetFlags) => {
    const reports = await fleetStatus(fleetTarget(o), fleetOps(o));
    process.stdout.write(o.json ? `${JSON.stringify(reports, null, 2)}\n` : formatFleetStatus(reports));
  });
fleet
  .command('schema')
  .description('print the JSON Schema of fleet.yaml (or write it with --out)')
  .addOption(outFileOption())
  .action((opts: { out?: string }) => {
    maybe(outputFile, '--out', opts.out);
    writeOutput('--out', opts.out, `${JSON.stringify(fleetJsonSchema(), null, 2)}\n`);
  });

const buildFlags = (cmd: Command) =>
  cmd
    .addOption(configOption())
    .addOption(archOption())
    .addOption(buildrootOption())
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
function checkBuildFlags(o: BuildFlags): void {
  maybe(inputDir, '--buildroot', o.buildroot);
  maybe(outputDir, '--dl-dir', o.dlDir);
}

buildFlags(
  program
    .command('build')
    .description(
      'build kernel and squashfs root with Buildroot: render, configure, check, plan, make, gather artifacts',
    ),
)
  .option(
    '-j, --jobs <n>',
    'parallel jobs inside each package (BR2_JLEVEL; 0 = one per CPU)',
    wholeNumber(
      '--jobs',
      'a number of jobs',
      0,
      1024,
      'pass 0 (one per CPU) or a number of jobs, e.g. --jobs 4',
    ),
  )
  .option('--ccache', 'use ccache (cache in ~/.cache/runner-appliance/ccache)')
  .addOption(outDirOption('to build in (default: output/<name>-<arch>)'))
  .option('--plan', 'print what a build would do (the rebuild plan) and run nothing')
  .option('--clean', 'build from scratch')
  .option('--json', 'progress and result as JSON lines on stdout')
  .action(
    async (
      o: BuildFlags & {
        jobs?: number;
        ccache?: boolean;
        out?: string;
        plan?: boolean;
        clean?: boolean;
        json?: boolean;
      },
    ) => {
      checkBuildFlags(o);
      maybe((w, p) => outputDir(w, p, { refuseSystemRoots: true }), '--out', o.out);
      const config = loadAppliance(o.config);
      const result = await build(config, renderTree(config), { ...o, planOnly: o.plan });
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
  checkBuildFlags(o);
  const config = loadAppliance(o.config);
  const r = await downloadSources(config, renderTree(config), o);
  const list = (ps: { pkg: string; version: string }[]) => ps.map((f) => `${f.pkg} ${f.version}`).join(', ');
  if (r.failed.length > 0 || r.notTried.length > 0) {
    throw new ApplianceError(
      [
        r.failed.length > 0 ? `${r.failed.length} package(s) could not be downloaded: ${list(r.failed)}` : '',
        r.notTried.length > 0
          ? `${r.notTried.length} more not tried, since a download dependency failed: ${list(r.notTried)}`
          : '',
      ]
        .filter(Boolean)
        .join('; '),
      {
        exitCode: ExitCode.checkFailed,
        hint: `check the network or --mirror; the log is ${r.log}`,
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
  .addOption(buildrootOption())
  .option('--include-host', 'also list host (build-time) packages, with scope "excluded"')
  .addOption(outFileOption())
  .action(
    async (o: { config?: string; arch?: Arch; buildroot?: string; includeHost?: boolean; out?: string }) => {
      maybe(inputDir, '--buildroot', o.buildroot);
      maybe(outputFile, '--out', o.out);
      const config = loadAppliance(o.config);
      const bom = await generateSbom(config, renderTree(config), o);
      writeOutput('--out', o.out, `${JSON.stringify(bom, null, 2)}\n`);
    },
  );

/** `--platform-image PLATFORM=TAR`, repeatable: one test image per Docker platform. */
function platformImage(value: string, previous: Record<string, string> = {}): Record<string, string> {
  const at = value.indexOf('=');
  const platform = value.slice(0, at);
  if (at <= 0 || at === value.length - 1 || !platformTargets[platform])
    throw new ApplianceError(`--platform-image ${shownValue(value)} is not PLATFORM=TAR`, {
      hint: `PLATFORM is one of ${Object.keys(platformTargets).join(', ')}, e.g. --platform-image linux/arm64=busybox-arm64.tar`,
    });
  if (previous[platform])
    throw new ApplianceError(`--platform-image ${platform} is given twice`, {
      hint: 'pass one image per platform',
    });
  return { ...previous, [platform]: value.slice(at + 1) };
}

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
  .addOption(accelOption())
  .option(
    '--timeout <seconds>',
    'for boot and checks together (default 180 with KVM, 600 with TCG)',
    seconds('--timeout', 10),
  )
  .option('--junit <file>', 'JUnit XML report (default: <out>/junit.xml)')
  .addOption(outDirOption('for the report, serial log, timeline and summary', 'smoke-report'))
  .option(
    '--image-tar <file>',
    'rootfs tarball imported as the test container image (default: made from a static busybox)',
  )
  .option(
    '--platform-image <platform=tar>',
    "a static busybox rootfs tarball of an emulated platform (multiarch checks; repeatable; test/fixtures/platform-images.sh makes them from Debian's busybox-static)",
    platformImage,
  )
  .option(
    '--hold <seconds>',
    "keep the VM idle this long after the checks and record QEMU's memory in the timeline",
    seconds('--hold', 0, 3600),
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
      timeout?: number;
      junit?: string;
      out: string;
      imageTar?: string;
      platformImage?: Record<string, string>;
      arch?: Arch;
      hold?: number;
    }) => {
      for (const [flag, path] of [
        ['--kernel', o.kernel],
        ['--rootfs', o.rootfs],
        ['--initrd', o.initrd],
        ['--data-disk', o.dataDisk],
        ['--image-tar', o.imageTar],
      ] as const)
        maybe(inputFile, flag, path);
      for (const [platform, path] of Object.entries(o.platformImage ?? {}))
        inputFile(`--platform-image ${platform}`, path);
      maybe(inputDir, '--artifacts', o.artifacts);
      const outDir = outputDir('--out', o.out, { refuseSystemRoots: true });
      // A report directly inside a --out folder that smoke is about to create cannot clash yet.
      const junitInNewOut =
        o.junit !== undefined && dirname(resolve(o.junit)) === outDir && !existsSync(outDir);
      if (o.junit !== undefined && !junitInNewOut) outputFile('--junit', o.junit);
      const config = loadAppliance(o.config);
      const { kernel, rootfs, arch } = imageFiles(o);
      o.arch ??= arch;
      const report = await runSmoke(config, {
        kernel,
        rootfs,
        initrd: o.initrd,
        dataDisk: o.dataDisk,
        accel: o.accel,
        timeoutSeconds: o.timeout,
        junit: o.junit,
        outDir: o.out,
        imageTar: o.imageTar,
        platformImages: o.platformImage,
        arch: o.arch,
        holdSeconds: o.hold,
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

refuseDashValues(program);

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
