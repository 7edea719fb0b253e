/** The `appliance` command line. Each command is a thin layer over one stage module. */
import { writeFileSync } from 'node:fs';
import { Command, CommanderError, Option } from 'commander';
import { applianceJsonSchema, loadAppliance } from './config/index.js';
import { ExitCode, isApplianceError } from './errors.js';
import { info, isVerbose, setVerbose } from './log.js';
import { renderToDisk } from './render/index.js';

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
  .action((opts: { out?: string }) => {
    const text = `${JSON.stringify(applianceJsonSchema(), null, 2)}\n`;
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

export async function main(argv: string[]): Promise<number> {
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
