/** The `appliance` command line. Each command is a thin layer over one stage module. */
import { writeFileSync } from 'node:fs';
import { Command, CommanderError, Option } from 'commander';
import { fetchBuildroot, pinHashes } from './buildroot/index.js';
import { checkAppliance, formatCheckReport } from './check/index.js';
import { type Arch, applianceJsonSchema, configReferenceMarkdown, loadAppliance } from './config/index.js';
import { formatFindings, runDoctor } from './doctor/index.js';
import { ApplianceError, ExitCode, isApplianceError } from './errors.js';
import { info, isVerbose, setVerbose } from './log.js';
import { renderToDisk } from './render/index.js';
import { installSignalHandlers } from './run/index.js';

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

export async function main(argv: string[]): Promise<number> {
  installSignalHandlers();
  try {
    await program.parseAsync(argv);
    return process.exitCode === undefined ? ExitCode.ok : Number(process.exitCode);
  } catch (e) {
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
