/**
 * What the schema says about one setting (choices, default, bounds, description) is read from
 * the schema itself, so flags that mirror a setting cannot drift from it; the regular
 * expression rule is one schema for both settings that take one.
 */
import { describe, expect, it } from 'vitest';
import { settingOption } from '../../src/cli-input.js';
import {
  applianceSchema,
  arches,
  parseAppliance,
  parseSetting,
  settingFacts,
} from '../../src/config/index.js';
import { ApplianceError } from '../../src/errors.js';

describe('settingFacts', () => {
  it('arch: its choices are the schema enum, and `arches` is that list', () => {
    const facts = settingFacts(['arch']);
    expect(facts.choices).toEqual(applianceSchema.shape.arch.unwrap().options);
    expect(arches).toEqual(facts.choices);
    expect(facts.default).toBe('x86_64');
    expect(facts.description).toMatch(/^Target architecture/);
  });

  it('dataDisk.size: default and description, no choices', () => {
    const facts = settingFacts(['dataDisk', 'size']);
    expect(facts).toMatchObject({ default: '20G', description: expect.stringMatching(/^Data disk size/) });
    expect(facts.choices).toBeUndefined();
    expect(facts.integer).toBeUndefined();
  });

  it('whole-number settings carry their bounds', () => {
    expect(settingFacts(['vm', 'vcpus'])).toMatchObject({ default: 2, integer: { min: 1, max: 256 } });
    expect(settingFacts(['runner', 'concurrent']).integer).toEqual({ min: 1, max: 64 });
  });

  it('an optional setting without a default has none', () => {
    expect(settingFacts(['vm', 'gateway']).default).toBeUndefined();
  });

  it('refuses a path that is no setting', () => {
    expect(() => settingFacts(['vm', 'nope'])).toThrow(/no setting vm\.nope/);
    expect(() => settingFacts([])).toThrow(/no setting/);
  });
});

describe('settingOption builds a flag from the schema', () => {
  const parse = (o: ReturnType<typeof settingOption>, value: string) =>
    (o as unknown as { parseArg: (v: string, p: unknown) => unknown }).parseArg(value, undefined);

  it('an enum setting: choices shown in --help, values checked by the schema', () => {
    const o = settingOption('--arch <arch>', ['arch'], { help: 'architecture', what: 'an architecture' });
    expect(o.argChoices).toEqual([...arches]);
    expect(o.description).toBe('architecture (default: arch in appliance.yaml, x86_64 unless set)');
    expect(o.defaultValue).toBeUndefined();
    expect(parse(o, 'aarch64')).toBe('aarch64');
    expect(() => parse(o, 'armv7')).toThrow(ApplianceError);
    expect(() => parse(o, 'armv7')).toThrow(/--arch "armv7" is not an architecture that arch accepts/);
  });

  it('a size setting accepts exactly what the config accepts (64M is below dataDisk.size minimum)', () => {
    const o = settingOption('--size <size>', ['dataDisk', 'size'], { help: 'size', what: 'a size' });
    for (const value of ['1G', '20G', '1024MiB', '64T']) {
      expect(parseSetting(['dataDisk', 'size'], value)).toBeUndefined();
      expect(parse(o, value)).toBe(value);
    }
    for (const value of ['64M', '1023MiB', '65T', '2O G', '20']) {
      expect(parseSetting(['dataDisk', 'size'], value)).toBeDefined();
      expect(() => parse(o, value), value).toThrow(/--size .* is not a size that dataDisk\.size accepts/);
      expect(() => parseAppliance(`dataDisk: {size: "${value}"}\n`, 'x.yaml'), value).toThrow(
        /dataDisk\.size/,
      );
    }
  });

  it('a whole-number setting takes digits within its bounds', () => {
    const o = settingOption('--vcpus <n>', ['vm', 'vcpus'], {
      help: 'virtual CPUs',
      what: 'a number of vCPUs',
    });
    expect(parse(o, '4')).toBe(4);
    for (const value of ['0', '257', '2.5', 'four', '1e1'])
      expect(() => parse(o, value), value).toThrow(/--vcpus .* is not a number of vCPUs from 1 to 256/);
  });

  it('a fallback replaces the default named in --help', () => {
    const o = settingOption('--arch <arch>', ['arch'], {
      help: 'only',
      what: 'an architecture',
      fallback: 'both',
    });
    expect(o.description).toBe('only (default: both)');
  });
});

describe('one regular-expression rule', () => {
  it('docuum.keep and smoke.checks[].expect refuse a bad expression alike', () => {
    expect(() => parseAppliance('docuum: {keep: ["(a"]}\n', 'x.yaml')).toThrow(
      /docuum\.keep\[0\]: expected a regular expression, got "\(a"/,
    );
    expect(() =>
      parseAppliance('smoke: {checks: [{name: a, run: "true", expect: "(a"}]}\n', 'x.yaml'),
    ).toThrow(/smoke\.checks\[0\]\.expect: expected a regular expression, got "\(a"/);
    expect(parseAppliance('smoke: {checks: [{name: a, run: "true"}]}\n', 'x.yaml').smoke.checks[0]).toEqual({
      name: 'a',
      run: 'true',
    });
  });
});
