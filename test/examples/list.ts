/** The example configurations in examples/: every *.yaml there, found afresh so a new one is covered. */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from '../helpers.js';

export const examplesDir = join(repoRoot, 'examples');

/** File names (e.g. "aarch64.yaml") of the examples, sorted. */
export function exampleFiles(): string[] {
  return readdirSync(examplesDir)
    .filter((f) => /\.ya?ml$/.test(f))
    .sort();
}

/** Every file below a folder (an overlay folder of an example), as absolute paths. */
export function filesUnder(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? filesUnder(join(dir, e.name)) : [join(dir, e.name)],
  );
}
