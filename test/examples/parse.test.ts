/** The examples in examples/ are valid appliance.yaml files that say what they show and are linked. */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadAppliance } from '../../src/config/index.js';
import { repoRoot } from '../helpers.js';
import { exampleFiles, examplesDir, filesUnder } from './list.js';

const files = exampleFiles();

describe('examples/', () => {
  it('holds the examples issue 9 asks for', () => {
    for (const name of [
      'minimal.yaml',
      'aarch64.yaml',
      'ipv6-docker.yaml',
      'extra-buildroot-symbols.yaml',
      'extra-overlay.yaml',
    ])
      expect(files).toContain(name);
  });

  for (const file of files) {
    describe(file, () => {
      const path = join(examplesDir, file);

      it('parses with the config loader', () => {
        const config = loadAppliance(path);
        expect(config.source).toBe(path);
      });

      it('opens with a comment header that says what it shows and when to use it', () => {
        const header = readFileSync(path, 'utf8').split('\n');
        const comments = header.slice(
          0,
          header.findIndex((l) => !l.startsWith('#')),
        );
        expect(comments.length).toBeGreaterThan(3);
        const text = comments.join('\n');
        expect(text).toMatch(/^# Shows: /m);
        expect(text).toMatch(/^# Use it /m);
      });

      it('is linked from the README', () => {
        const readme = readFileSync(join(repoRoot, 'README.md'), 'utf8');
        expect(readme.includes(`](examples/${file})`), `README.md links examples/${file}`).toBe(true);
      });
    });
  }

  it('every overlay folder holds files and is used by an example', () => {
    const overlays = join(examplesDir, 'overlays');
    const used = new Set(files.flatMap((f) => loadAppliance(join(examplesDir, f)).overlayDirs));
    for (const name of readdirSync(overlays)) {
      const dir = join(overlays, name);
      expect(statSync(dir).isDirectory()).toBe(true);
      expect(used, `${relative(repoRoot, dir)} is used by no example`).toContain(dir);
      expect(filesUnder(dir).length).toBeGreaterThan(0);
    }
    expect(used.size).toBeGreaterThan(0);
  });

  it('cover both arches', () => {
    const arches = new Set(files.map((f) => loadAppliance(join(examplesDir, f)).arch));
    expect([...arches].sort()).toEqual(['aarch64', 'x86_64']);
  });
});
