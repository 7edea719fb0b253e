#!/usr/bin/env node
import { main } from './cli.js';
import { wasInterrupted } from './run/index.js';

// After Ctrl-C the signal handler stops the children, prints how to resume and exits with 130.
main(process.argv).then((code) => {
  if (!wasInterrupted()) process.exit(code);
});
