/** dataDisk.budget: parsing (percentage and size), the error for a budget above the disk, the figures derived from it. */
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { budgetFigures, parseBudget, parseIdle } from '../../src/config/budget.js';
import { parseAppliance } from '../../src/config/index.js';
import { repoRoot, runCli, tempDir } from '../helpers.js';

const G = 1024 ** 3;
const M = 1024 ** 2;
const load = (yaml: string) => parseAppliance(yaml, join(repoRoot, 'x.yaml'));

describe('dataDisk.budget', () => {
  it('a percentage is of dataDisk.size; a size is taken as it is', () => {
    expect(parseBudget('80%', 20 * G)).toEqual({ kind: 'percent', percent: 80, bytes: 16 * G });
    expect(parseBudget('12.5 %', 8 * G)).toEqual({ kind: 'percent', percent: 12.5, bytes: G });
    expect(parseBudget('16G', 20 * G)).toEqual({ kind: 'size', bytes: 16 * G, percent: 80 });
    expect(parseBudget('512MiB', G)?.bytes).toBe(512 * M);
    for (const bad of ['0%', '101%', 'lots', '-5G']) expect(parseBudget(bad, G), bad).toBeUndefined();
  });

  it('the default is 80% of the disk: docuum gets 30% of the disk (half of images + build cache), BuildKit a quarter of the budget', () => {
    const c = load('{}');
    expect(c.dataDisk.budget).toBe('80%');
    expect(c.budget).toEqual({ bytes: 16 * G, docuumThreshold: '30%', buildCacheKeepBytes: 4 * G });
    expect(c.volumeMaxIdleSeconds).toBe(7 * 86400);
    expect(c.journal.maxUse).toBe('64M');
  });

  it('a size budget gives docuum a size (whole MiB) and BuildKit whole MiB', () => {
    const c = load('dataDisk: {size: 2G, budget: 1G, volumeMaxIdle: 12h}\n');
    expect(c.budget).toEqual({ bytes: G, docuumThreshold: '384 MiB', buildCacheKeepBytes: 256 * M });
    expect(c.volumeMaxIdleSeconds).toBe(12 * 3600);
    expect(budgetFigures({ kind: 'size', bytes: 3 * G, percent: 30 }, undefined).docuumThreshold).toBe(
      '1152 MiB',
    );
    expect(budgetFigures({ kind: 'size', bytes: 8 * G, percent: 30 }, undefined).docuumThreshold).toBe(
      '3 GiB',
    );
  });

  it('an explicit docuum.threshold is kept', () => {
    expect(load('docuum: {threshold: "10 GB"}\n').budget.docuumThreshold).toBe('10 GB');
    expect(load('docuum: {threshold: "70%"}\ndataDisk: {budget: 50%}\n').budget.docuumThreshold).toBe('70%');
  });

  it('a budget larger than the disk, or not a budget, is a config error naming the field', () => {
    expect(() => load('dataDisk:\n  size: 20G\n  budget: 30G\n')).toThrow(
      /x\.yaml:3: dataDisk\.budget: the budget 30G is larger than the data disk \(dataDisk\.size 20G\)/,
    );
    expect(() => load('dataDisk: {budget: 120%}\n')).toThrow(
      /dataDisk\.budget: a percentage must be above 0% and at most 100%/,
    );
    expect(() => load('dataDisk: {budget: most}\n')).toThrow(
      /dataDisk\.budget: expected a size such as "16G" or a percentage such as "80%", got "most"/,
    );
    expect(() => load('dataDisk: {budget: 1M}\n')).toThrow(
      /dataDisk\.budget: the budget must be at least 64 MiB/,
    );
    expect(() => load('dataDisk: {volumeMaxIdle: soon}\n')).toThrow(
      /dataDisk\.volumeMaxIdle: expected a duration such as "7d"/,
    );
    expect(() => load('dataDisk: {volumeMaxIdle: 0d}\n')).toThrow(
      /dataDisk\.volumeMaxIdle: expected a duration/,
    );
    expect(() => load('journal: {maxUse: 1M}\n')).toThrow(
      /journal\.maxUse: Journal size must be between 8 MiB and 1 GiB/,
    );
    expect(load('dataDisk: {size: 20G, budget: 20G}\n').budget.bytes).toBe(20 * G);
  });

  it('appliance render refuses a budget above the disk in one line, exit 2, and writes nothing', () => {
    const dir = tempDir();
    const config = join(dir, 'appliance.yaml');
    writeFileSync(config, 'dataDisk:\n  size: 4G\n  budget: 5G\n');
    const out = join(dir, 'out');
    const r = runCli(['render', '--config', config, '--out', out]);
    expect(r.status).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(
      /^error: .*appliance\.yaml:3: dataDisk\.budget: the budget 5G is larger than the data disk/,
    );
    expect(existsSync(out)).toBe(false);
  });

  it('durations', () => {
    expect(parseIdle('7d')).toBe(604800);
    expect(parseIdle('2w')).toBe(1209600);
    expect(parseIdle('90s')).toBe(90);
    expect(parseIdle('30 m')).toBe(1800);
    expect(parseIdle('0h')).toBeUndefined();
    expect(parseIdle('7 days')).toBeUndefined();
  });
});
