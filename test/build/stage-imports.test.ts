/**
 * Issue 9's architecture rule, checked on the source: a pipeline stage imports only `config`,
 * the process runner (`run`), the guest model (`guest`) and the shared helpers, never another
 * stage. Commands that compose stages (cli.ts, check/, doctor/) may import them.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { repoRoot } from '../helpers.js';

const src = join(repoRoot, 'src');
const stages = ['config', 'render', 'buildroot', 'disk', 'libvirt', 'smoke', 'fleet'];
const allowedFolders = ['config', 'run', 'guest'];
const sharedHelpers = ['errors', 'log', 'paths', 'digest', 'tree', 'fsguard', 'cli-input'];

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
  );
}

/** Every relative module `text` (of `file`) imports, statically, re-exported or dynamically, as a path below src/. */
function importsOf(file: string, text = readFileSync(file, 'utf8')): string[] {
  const specs = [...text.matchAll(/(?:\bfrom\s+|\bimport\s*\(\s*|^\s*import\s+)['"](\.[^'"]+)['"]/gm)];
  return specs.map((m) => relative(src, resolve(dirname(file), m[1] ?? '')));
}

/** Why `target` (a path below src/) may not be imported by stage `stage`, or undefined. */
function forbidden(stage: string, target: string): string | undefined {
  const [top = '', ...rest] = target.split('/');
  if (rest.length > 0) {
    return top === stage || allowedFolders.includes(top) ? undefined : `imports the ${top} stage`;
  }
  const name = top.replace(/\.js$/, '');
  return sharedHelpers.includes(name) ? undefined : `imports ${top}, which is not a shared helper`;
}

describe('stage imports', () => {
  it('no pipeline stage imports another stage', () => {
    const problems: string[] = [];
    for (const stage of stages.filter((s) => existsSync(join(src, s)))) {
      for (const file of sources(join(src, stage))) {
        for (const target of importsOf(file)) {
          const why = forbidden(stage, target);
          if (why) problems.push(`${relative(repoRoot, file)} ${why} (${target})`);
        }
      }
    }
    expect(problems).toEqual([]);
  });

  it('the rule catches what it is meant to', () => {
    expect(forbidden('buildroot', 'render/index.js')).toBe('imports the render stage');
    expect(forbidden('buildroot', 'cli.js')).toMatch(/not a shared helper/);
    expect(forbidden('buildroot', 'buildroot/check.js')).toBeUndefined();
    expect(forbidden('smoke', 'guest/index.js')).toBeUndefined();
    expect(forbidden('libvirt', 'tree.js')).toBeUndefined();
    const text = [
      "import { a } from '../render/index.js';",
      'export { b } from "./check.js";',
      "const c = await import('../smoke/index.js');",
      "import '../log.js';",
      "import { d } from 'node:fs';",
    ].join('\n');
    expect(importsOf(join(src, 'buildroot', 'x.ts'), text)).toEqual([
      'render/index.js',
      'buildroot/check.js',
      'smoke/index.js',
      'log.js',
    ]);
  });
});
