#!/usr/bin/env node
import { main } from './cli.js';
import { wasInterrupted } from './run/index.js';

// A reader that went away (`appliance sbom | head`) is not an error of ours.
for (const stream of [process.stdout, process.stderr]) stream.on('error', () => {});

/** Exit once everything written to stdout and stderr has reached the pipe or file. */
function exitAfterDrain(code: number): void {
  process.exitCode = code;
  process.stdout.write('', () => process.stderr.write('', () => process.exit(code)));
}

// After Ctrl-C the signal handler stops the children, prints how to resume and exits with 130.
main(process.argv).then((code) => {
  if (!wasInterrupted()) exitAfterDrain(code);
});
