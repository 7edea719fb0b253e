/**
 * Every command checks its paths and flags before it does anything: a bad value gives one line,
 * exit 2, and nothing is written. Runs that used to hang (a FIFO, procfs) run under a timeout, so
 * a regression fails instead of hanging.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Command, Option } from 'commander';
import { describe, expect, it } from 'vitest';
import { defaultPool } from '../../src/guest/index.js';
import { cliPath, repoRoot, spawnCollect, tempDir } from '../helpers.js';

/** Run the CLI (or `file`) without blocking the test worker, killed after `seconds` (status -1 then). */
function cli(args: string[], options: { cwd?: string; seconds?: number } = {}) {
  return run(process.execPath, [cliPath, ...args], options);
}

function run(file: string, args: string[], options: { cwd?: string; seconds?: number } = {}) {
  return spawnCollect(file, args, { cwd: options.cwd ?? repoRoot, seconds: options.seconds ?? 20 });
}

/** One `error:` line matching `pattern`, exit 2, nothing on stdout. */
async function refused(args: string[], pattern: RegExp, cwd?: string) {
  const r = await cli(args, { cwd });
  expect(r.status, `${args.join(' ')}: ${r.stderr}`).toBe(2);
  const lines = r.stderr.trimEnd().split('\n');
  expect(lines, r.stderr).toHaveLength(1);
  expect(lines[0]).toMatch(/^error: /);
  expect(lines[0]).toMatch(pattern);
  expect(r.stdout).toBe('');
}

describe('paths are checked before any work', () => {
  const dir = tempDir();
  const fifo = join(dir, 'fifo.yaml');
  spawnSync('mkfifo', [fifo]);

  it('render --out under /proc is refused at once (it used to spin past SIGINT and SIGTERM)', async () => {
    await refused(['render', '--out', '/proc/x'], /--out \/proc\/x is under \/proc/);
    await refused(['render', '--out', '/sys/kernel/x'], /is under \/sys/);
    await refused(['libvirt', 'render', '--out', '/proc/x'], /is under \/proc/);
  });

  it('a config that is a FIFO without a writer is refused, not read forever', async () => {
    for (const cmd of [['validate'], ['render', '--out', join(dir, 'o')], ['libvirt', 'nwfilter']])
      await refused([...cmd, '-c', fifo], /config file .*fifo\.yaml is a FIFO, not a regular file/);
    await refused(['validate', '-c', '/dev/zero'], /is a character device, not a regular file/);
    await refused(['validate', '-c', '/proc/self/status'], /is under \/proc/);
    expect(existsSync(join(dir, 'o'))).toBe(false);
  });

  it('a FIFO inside an overlay folder or as appliance.hashes.json is refused, not read forever', async () => {
    const d = tempDir();
    mkdirSync(join(d, 'extra'));
    spawnSync('mkfifo', [join(d, 'extra', 'pipe')]);
    writeFileSync(join(d, 'appliance.yaml'), 'overlays: [extra]\n');
    await refused(
      ['render', '-c', join(d, 'appliance.yaml'), '--out', join(d, 'o')],
      /overlay file .*pipe is not a regular file/,
    );
    const e = tempDir();
    writeFileSync(join(e, 'appliance.yaml'), '');
    spawnSync('mkfifo', [join(e, 'appliance.hashes.json')]);
    await refused(
      ['render', '-c', join(e, 'appliance.yaml'), '--out', join(e, 'o')],
      /hash pins .* is a FIFO/,
    );
    expect(existsSync(join(d, 'o')) || existsSync(join(e, 'o'))).toBe(false);
  });

  it('render refuses / and other system folders without walking them', async () => {
    await refused(['render', '--out', '/'], /--out \/ is a system folder/);
    await refused(['render', '--out', '/usr'], /--out \/usr is a system folder/);
    await refused(['pin-hashes', '--dl-dir', dir, '--out', '/etc'], /--out \/etc is a system folder/);
  });

  it('file outputs: a folder, a missing folder, a FIFO, /proc are refused and nothing is left', async () => {
    for (const cmd of [['schema'], ['libvirt', 'domain'], ['libvirt', 'nwfilter'], ['sbom']]) {
      await refused([...cmd, '--out', dir], new RegExp(`--out ${dir} is a folder; name a file`));
      await refused(
        [...cmd, '--out', join(dir, 'missing', 'x')],
        /folder .*missing does not exist: create it first/,
      );
      await refused([...cmd, '--out', fifo], /is a FIFO, not a regular file/);
      await refused([...cmd, '--out', '/proc/x.json'], /is under \/proc/);
    }
    expect(readdirSync(dir)).toEqual(['fifo.yaml']);
  });

  it('writes --out atomically through a temporary file in the same folder', async () => {
    const out = join(dir, 'schema.json');
    expect((await cli(['schema', '--out', out])).status).toBe(0);
    expect(JSON.parse(readFileSync(out, 'utf8')).title).toBe('runner-appliance');
    expect(readdirSync(dir).sort()).toEqual(['fifo.yaml', 'schema.json']);
  });

  it('input paths: doctor --buildroot /missing and --probe-kernel /missing stop before any probe', async () => {
    await refused(['doctor', '--buildroot', '/missing'], /--buildroot \/missing does not exist/);
    await refused(['doctor', '--probe-kernel', '/missing'], /--probe-kernel \/missing does not exist/);
    await refused(['doctor', '--probe-kernel', dir], /is a folder, not a regular file/);
    await refused(['check', '--tree', '/missing'], /--tree \/missing does not exist/);
    await refused(['smoke', '--kernel', fifo, '--rootfs', fifo], /--kernel .* is a FIFO/);
    await refused(['smoke', '--artifacts', '/missing'], /--artifacts \/missing does not exist/);
    await refused(
      ['vm', 'define', '--kernel', '/missing', '--rootfs', '/missing'],
      /--kernel \/missing does not exist/,
    );
  });

  it('smoke --junit may name a file inside the --out folder that smoke will create (as the CI template does)', async () => {
    const work = tempDir();
    const image = join(work, 'image');
    writeFileSync(image, '');
    const badConfig = join(work, 'bad.yaml');
    writeFileSync(badConfig, 'nmae: x\n');
    const out = join(work, 'smoke');
    // The paths pass; the run stops at the config, which is checked next, before anything boots.
    const smoke = ['smoke', '--kernel', image, '--rootfs', image, '--out', out];
    const r = await cli([...smoke, '-c', badConfig, '--junit', join(out, 'junit.xml')]);
    expect(r.status, r.stderr).toBe(2);
    expect(r.stderr).not.toContain('--junit');
    expect(r.stderr).toMatch(/nmae/);
    expect(existsSync(out)).toBe(false);
    await refused([...smoke, '--junit', join(work, 'missing', 'junit.xml')], /--junit .* does not exist/);
  });
});

describe('numeric flags are validated before anything is done', () => {
  const cases: [string[], RegExp][] = [
    [['vm', 'stop', '--timeout', '2m', '--force'], /--timeout "2m" is not a whole number of seconds/],
    [['vm', 'stop', '--timeout', 'abc', '--force'], /--timeout "abc" is not a whole number/],
    [['vm', 'stop', '--timeout', '-5'], /--timeout "-5" is not a whole number of seconds from 1/],
    [
      ['vm', 'update', '--stop-timeout', 'abc', '--kernel', 'k', '--rootfs', 'r'],
      /--stop-timeout "abc" is not/,
    ],
    [['build', '--jobs', ''], /--jobs "" is not a number of jobs/],
    [['build', '--jobs', ' '], /--jobs " " is not a number of jobs/],
    [['build', '--jobs', '1e2'], /--jobs "1e2" is not a number of jobs/],
    [['smoke', '--timeout', '5'], /--timeout "5" is not a whole number of seconds from 10/],
    [['smoke', '--hold', '1.5'], /--hold "1.5" is not a whole number of seconds from 0 to 3600/],
    [
      ['disk', 'create', '/tmp/never.img', '--size', '64M'],
      /--size "64M" is not a size that dataDisk\.size accepts \(Data disk size must be between 1024 MiB/,
    ],
    [['disk', 'create', '/tmp/never.img', '--size', '2m'], /--size "2m" is not a size/],
    [['disk', 'create', '/tmp/never.img', '--size', '2O G'], /--size "2O G" is not a size that dataDisk/],
    [['disk', 'create', '/tmp/never.img', '--label', 'a/b'], /--label "a\/b" is not an ext4 label/],
    [
      ['vm', 'stop', '--timeout', '86401'],
      /--timeout "86401" is not a whole number of seconds from 1 to 86400/,
    ],
    [
      ['vm', 'update', '--kernel', 'k', '--rootfs', 'r', '--stop-timeout', '0'],
      /--stop-timeout "0" is not a whole number of seconds from 1 to 86400/,
    ],
    [
      [
        'buildroot',
        'fetch',
        '--url',
        'http://127.0.0.1:9/x.tar.gz',
        '--sha256',
        'abc',
        '--out',
        '/tmp/never-br',
      ],
      /--sha256 "abc" is not a sha256 of 64 hex digits/,
    ],
    ...['0', '2x', '-1', '65'].map((n): [string[], RegExp] => [
      ['fleet', 'apply', '--fleet', 'f.yaml', '--kernel', 'k', '--rootfs', 'r', '--max-parallel', n],
      new RegExp(`--max-parallel "${n}" is not a whole number of hosts from 1 to 64`),
    ]),
    [
      ['fleet', 'apply', '--fleet', 'f.yaml', '--kernel', 'k', '--rootfs', 'r', '--stop-timeout', '0'],
      /--stop-timeout "0" is not a whole number of seconds from 1 to 86400/,
    ],
    [['fleet', 'status'], /required option '--fleet <file>' not specified/],
  ];
  for (const [args, pattern] of cases) it(args.join(' '), () => refused(args, pattern));
});

describe('flags that mirror a setting take its values from the schema', () => {
  const arch =
    /--arch "armv7" is not an architecture that arch accepts \(expected one of "x86_64", "aarch64"/;
  const cases: [string[], RegExp][] = [
    [['check', '--arch', 'armv7'], arch],
    [['build', '--arch', 'armv7'], arch],
    [['source', '--arch', 'armv7'], arch],
    [['sbom', '--arch', 'armv7'], arch],
    [['smoke', '--arch', 'armv7'], arch],
    [['libvirt', 'domain', '--arch', 'armv7'], arch],
    [['libvirt', 'domain', '--accel', 'hvf'], /'hvf' is invalid\. Allowed choices are auto, kvm, tcg/],
    [['smoke', '--accel', 'KVM'], /Allowed choices are auto, kvm, tcg/],
    [
      ['vm', 'define', '--kernel', 'k', '--rootfs', 'r', '--accel', 'kvn'],
      /Allowed choices are auto, kvm, tcg/,
    ],
  ];
  for (const [args, pattern] of cases) it(args.join(' '), () => refused(args, pattern));

  it('--accel is auto by default in every command (libvirt domain used kvm)', async () => {
    const r = await cli(['libvirt', 'domain', '--kernel', '/nonexistent/bzImage']);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^<domain type="qemu"/);
    expect(r.stderr).toMatch(/using TCG/);
    const kvm = await cli(['libvirt', 'domain', '--accel', 'kvm']);
    expect(kvm.stdout).toMatch(/^<domain type="kvm"/);
  });
});

describe('every command declares its options from one table', () => {
  const options = async () => {
    const { program } = await import('../../src/cli.js');
    const { arches } = await import('../../src/config/index.js');
    const { acceleratorChoices } = await import('../../src/guest/index.js');
    const all: { command: string; option: Option }[] = [];
    const visit = (cmd: Command, path: string[]) => {
      for (const option of cmd.options as readonly Option[]) all.push({ command: path.join(' '), option });
      for (const sub of cmd.commands) visit(sub, [...path, sub.name()]);
    };
    visit(program, []);
    return { all, arches, acceleratorChoices };
  };

  it('--arch and --accel: the same choices everywhere (the schema enum, the guest model), --accel defaults to auto', async () => {
    const { all, arches, acceleratorChoices } = await options();
    const archs = all.filter((o) => o.option.long === '--arch');
    const accels = all.filter((o) => o.option.long === '--accel');
    expect(archs.map((o) => o.command).sort()).toEqual(
      ['build', 'check', 'libvirt domain', 'sbom', 'smoke', 'source'].sort(),
    );
    for (const { option } of archs) expect(option.argChoices).toEqual([...arches]);
    expect(accels.map((o) => o.command).sort()).toEqual([
      'fleet apply',
      'libvirt domain',
      'smoke',
      'vm define',
      'vm update',
    ]);
    for (const { option } of accels) {
      expect(option.argChoices).toEqual([...acceleratorChoices]);
      expect(option.defaultValue).toBe('auto');
    }
  });

  it('-o/--out is where a command writes, and its help says whether that is a file or a folder', async () => {
    const { all } = await options();
    const outs = all.filter((o) => o.option.long === '--out');
    expect(outs.length).toBeGreaterThanOrEqual(10);
    for (const { command, option } of outs) {
      expect(option.short, command).toBe('-o');
      expect(option.flags, command).toMatch(/^-o, --out <(file|dir)>$/);
      const kind = option.flags.endsWith('<file>') ? 'file' : 'folder';
      expect(option.description, command).toMatch(new RegExp(`^${kind} `));
    }
    expect(outs.find((o) => o.command === 'buildroot fetch')?.option.flags).toBe('-o, --out <dir>');
    const otherSpellings = all.filter((o) =>
      ['--dest', '--output', '--dir', '--out-dir'].includes(o.option.long ?? ''),
    );
    expect(otherSpellings).toEqual([]);
  });

  it('--pool only where a pool is used (define, update, rollback, grow, undefine, fleet apply)', async () => {
    const { all } = await options();
    const pools = all.filter((o) => o.option.long === '--pool');
    expect(pools.map((o) => o.command).sort()).toEqual([
      'fleet apply',
      'vm define',
      'vm grow',
      'vm rollback',
      'vm undefine',
      'vm update',
    ]);
    for (const { option } of pools) expect(option.defaultValue).toBe(defaultPool);
    await refused(['vm', 'status', '--pool', 'x'], /unknown option '--pool'/);
  });
});

describe('option values and combinations', () => {
  it('refuses a value that starts with "-" (a forgotten value), on every option', async () => {
    const dir = tempDir();
    await refused(['render', '--out', '--force'], /--out needs a value, got the option-like "--force"/, dir);
    await refused(['libvirt', 'domain', '--kernel', '-x'], /--kernel needs a value/);
    await refused(['validate', '--config', '--verbose'], /--config/);
    expect(readdirSync(dir)).toEqual([]);
  });

  it('refuses repeated --credential names', async () => {
    await refused(
      ['libvirt', 'domain', '--credential', 'a=/x', '--credential', 'a=/y'],
      /--credential a is given twice/,
    );
    await refused(['libvirt', 'domain', '--credential', 'a='], /--credential "a=" is not NAME=FILE/);
  });

  it('refuses --network together with --bridge', async () => {
    await refused(
      ['libvirt', 'domain', '--network', 'n', '--bridge', 'br0'],
      /--network .* cannot be used with .*--bridge/,
    );
    await refused(
      ['vm', 'define', '--kernel', 'k', '--rootfs', 'r', '--network', 'n', '--bridge', 'br0'],
      /cannot be used with/,
    );
  });

  it('vm status: a malformed URI exits 2, a connection that fails exits 3 (it printed "undefined", exit 0)', async () => {
    await refused(
      ['vm', 'status', '--connect', 'bogus:///x'],
      /--connect "bogus:\/\/\/x" is not a libvirt URI/,
    );
    const r = await cli(['vm', 'status', '--connect', 'qemu+unix:///system?socket=/nonexistent/sock']);
    expect(r.status, r.stderr).toBe(3);
    expect(r.stderr).toMatch(/^error: cannot connect to libvirt at qemu\+unix/);
    expect(r.stdout).toBe('');
  });
});

describe('defaults', () => {
  it('--version and -V print the package version; -v stays verbose', async () => {
    const version = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')).version;
    for (const flag of ['--version', '-V']) {
      const r = await cli([flag]);
      expect(r.status).toBe(0);
      expect(r.stdout).toBe(`${version}\n`);
    }
    expect((await cli(['-v', 'validate'])).status).toBe(0);
  });

  it('uses ./appliance.yaml when the current folder has one, and says so', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'appliance.yaml'), 'name: local-one\n');
    const r = await cli(['validate'], { cwd: dir });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toBe('using ./appliance.yaml\n');
    expect(JSON.parse(r.stdout).name).toBe('local-one');
    const render = await cli(['render', '--out', 'ext'], { cwd: dir });
    expect(render.status, render.stderr).toBe(0);
    expect(readFileSync(join(dir, 'ext/external.desc'), 'utf8')).toMatch(/^name: LOCAL_ONE$/m);
    const elsewhere = tempDir();
    const d = await cli(['validate'], { cwd: elsewhere });
    expect(d.stderr).toBe('');
    expect(JSON.parse(d.stdout).name).toBe('runner-appliance');
  });

  it('output longer than a pipe buffer reaches a slow reader whole', async () => {
    const dir = tempDir();
    const checks = Array.from({ length: 3000 }, (_, i) => `    - {name: c${i}, run: "echo ${i}"}`);
    writeFileSync(join(dir, 'big.yaml'), `smoke:\n  checks:\n${checks.join('\n')}\n`);
    const r = await run(
      'bash',
      ['-o', 'pipefail', '-c', `"${process.execPath}" "${cliPath}" validate -c big.yaml | (sleep 1; cat)`],
      { cwd: dir },
    );
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout.length).toBeGreaterThan(128 * 1024);
    expect(JSON.parse(r.stdout).smoke.checks).toHaveLength(3000);
  });
});
