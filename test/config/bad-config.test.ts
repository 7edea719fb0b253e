/** Every bad appliance.yaml gives one line naming the problem, exit 2, no stack trace, and writes nothing. */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCli, runCliAsync, tempDir } from '../helpers.js';

const key = 'AAAAC3NzaC1lZDI1NTE5AAAAIHh2Y2N0b3JzLXRlc3Qta2V5LW5vdC1hLXJlYWwta2V5';

const cases: [string, string, RegExp][] = [
  ['YAML syntax', 'name: [unclosed\n', /appliance.yaml:\d+: invalid YAML: Flow sequence/],
  ['duplicate key', 'name: a1\nname: b2\n', /invalid YAML: Map keys must be unique/],
  ['top level not a mapping', '- a\n- b\n', /expected a mapping of settings at the top level, got a list/],
  ['unknown top-level key', 'nmae: x\n', /:1: nmae: unknown key 'nmae' \(allowed: name, arch/],
  ['unknown nested key', 'runner:\n  urll: https://x.example\n', /runner\.urll: unknown key 'urll'/],
  ['bad name', 'name: Bad_Name\n', /name: expected a lower-case name .* got "Bad_Name"/],
  ['bad arch', 'arch: riscv64\n', /arch: expected one of "x86_64", "aarch64", got string "riscv64"/],
  [
    'wrong type: concurrent',
    'runner:\n  concurrent: many\n',
    /runner\.concurrent: expected number, got string "many"/,
  ],
  [
    'out of range: concurrent',
    'runner:\n  concurrent: 0\n',
    /runner\.concurrent: expected at least 1, got number 0/,
  ],
  [
    'wrong type: privileged',
    'runner:\n  privileged: "yes"\n',
    /runner\.privileged: expected boolean, got string "yes"/,
  ],
  [
    'bad URL scheme',
    'runner:\n  url: ftp://gitlab.example.com\n',
    /:2: runner\.url: expected an http\(s\) URL/,
  ],
  [
    'URL with credentials',
    'runner:\n  url: https://u:p@gitlab.example.com\n',
    /runner\.url: the URL must not carry credentials/,
  ],
  [
    'bad image',
    'runner:\n  defaultImage: "Alpine Latest"\n',
    /runner\.defaultImage: expected a Docker image reference/,
  ],
  ['bad volume', 'runner:\n  volumes: ["relative/path"]\n', /runner\.volumes\[0\]: expected a volume/],
  [
    'bad credential name',
    'runner:\n  tokenCredential: "a/b"\n',
    /runner\.tokenCredential: expected a credential name/,
  ],
  ['bad size', 'dataDisk:\n  size: twenty\n', /dataDisk\.size: expected a size such as "20G"/],
  ['size too small', 'dataDisk:\n  size: 10M\n', /dataDisk\.size: Data disk size must be between/],
  ['memory too small', 'vm:\n  memory: 128M\n', /vm\.memory: Memory must be between/],
  [
    'label too long',
    'dataDisk:\n  label: this-label-is-way-too-long\n',
    /dataDisk\.label: expected an ext4 label/,
  ],
  ['bad IPv6 CIDR', 'docker:\n  fixedCidrV6: 10.0.0.0/8\n', /docker\.fixedCidrV6: expected an IPv6 network/],
  [
    'IPv6 prefix too long',
    'docker:\n  fixedCidrV6: fd00::/96\n',
    /docker\.fixedCidrV6: the prefix must be \/80 or shorter/,
  ],
  [
    'bad docuum threshold',
    'docuum:\n  threshold: lots\n',
    /docuum\.threshold: expected a size such as "10 GB" or a percentage/,
  ],
  ['bad keep regex', 'docuum:\n  keep: ["(unclosed"]\n', /docuum\.keep\[0\]: expected a regular expression/],
  ['bad min age', 'docuum:\n  minAge: soon\n', /docuum\.minAge: expected a duration/],
  [
    'malformed Buildroot symbol',
    'buildroot:\n  symbols:\n    PACKAGE_HTOP: y\n',
    /buildroot\.symbols\.PACKAGE_HTOP: expected a Buildroot symbol/,
  ],
  [
    'Buildroot symbol value with a quote',
    "buildroot:\n  symbols:\n    BR2_X: 'a\"b'\n",
    /buildroot\.symbols\.BR2_X: must not contain quotes/,
  ],
  [
    'bad Buildroot version',
    'buildroot:\n  version: latest\n',
    /buildroot\.version: expected a Buildroot release/,
  ],
  [
    'malformed kernel option',
    'kernel:\n  fragment: ["FOO=y"]\n',
    /kernel\.fragment\[0\]: expected a kernel option line/,
  ],
  ['bad kernel version', 'kernel:\n  version: "6"\n', /kernel\.version: expected a kernel version/],
  [
    'SSH key of unknown type',
    'ssh:\n  authorizedKeys: ["ssh-dss AAAAB3 me"]\n',
    /ssh\.authorizedKeys\[0\]: expected an SSH public key line \(key type must be one of/,
  ],
  [
    'SSH key not matching its type',
    `ssh:\n  authorizedKeys: ["ssh-rsa ${key} me"]\n`,
    /does not encode a ssh-rsa key/,
  ],
  [
    'missing overlay folder',
    'overlays: ["does-not-exist"]\n',
    /overlays\[0\]: folder "does-not-exist" does not exist/,
  ],
  [
    'a line break in a value written into a unit',
    'docuum:\n  keep: ["a\\nb"]\n',
    /:2: docuum\.keep\[0\]: must not contain a line break, got "a\\nb"/,
  ],
  [
    'a control character in a value written into TOML',
    'runner:\n  volumes: ["/cache\\u0007"]\n',
    /runner\.volumes\[0\]: .*(must not contain the control character|expected a volume)/,
  ],
  [
    'a line break in a Buildroot symbol name',
    'buildroot:\n  symbols:\n    "BR2_X\\n": y\n',
    /buildroot\.symbols\."BR2_X\\n": expected a Buildroot symbol/,
  ],
  ['more than one YAML document', 'name: a1\n---\nname: b2\n', /:2: holds more than one YAML document/],
  [
    'a YAML alias bomb',
    [
      'a: &a [x, x, x, x, x, x, x, x, x]',
      ...'bcdefgh'.split('').map((c, i) => `${c}: &${c} [${Array(9).fill(`*${'abcdefgh'[i]}`).join(', ')}]`),
    ].join('\n'),
    /YAML aliases \(\*name\) expand to too many values/,
  ],
  [
    'executor other than docker',
    'runner:\n  executor: shell\n',
    /runner\.executor: expected one of "docker", got string "shell"/,
  ],
  [
    'a malformed block prefix',
    'network:\n  blockPrefixes: ["2001:db8::/48", "2001:db8:zz::/48"]\n',
    /:2: network\.blockPrefixes\[1\]: expected an IPv4 or IPv6 prefix such as .*, got "2001:db8:zz::\/48"/,
  ],
  [
    'a block prefix without a length',
    'network:\n  blockPrefixes: ["192.0.2.0"]\n',
    /network\.blockPrefixes\[0\]: expected an IPv4 or IPv6 prefix .*, got "192\.0\.2\.0"/,
  ],
  [
    'a block prefix with host bits set',
    'network:\n  blockPrefixes: ["2001:db8:1::1/48"]\n',
    /network\.blockPrefixes\[0\]: host bits are set beyond \/48 \(the network is 2001:db8:1::\/48\), got "2001:db8:1::1\/48"/,
  ],
  [
    'an IPv4 block prefix with host bits set',
    'network:\n  blockPrefixes: ["192.168.1.7/24"]\n',
    /network\.blockPrefixes\[0\]: host bits are set beyond \/24 \(the network is 192\.168\.1\.0\/24\)/,
  ],
  [
    'an IPv4 block prefix length out of range',
    'network:\n  blockPrefixes: ["10.0.0.0/33"]\n',
    /network\.blockPrefixes\[0\]: the prefix length must be 0-32 for IPv4, got \/33/,
  ],
  [
    'an IPv6 block prefix length out of range',
    'network:\n  blockPrefixes: ["2001:db8::/129"]\n',
    /network\.blockPrefixes\[0\]: the prefix length must be 0-128 for IPv6, got \/129/,
  ],
  ['a vm.gateway6 that is not IPv6', 'vm:\n  gateway6: 10.0.0.1\n', /vm\.gateway6: expected an IPv6 address/],
];

describe('bad appliance.yaml', () => {
  for (const [title, yaml, expected] of cases) {
    it(title, async () => {
      const dir = tempDir();
      const config = join(dir, 'appliance.yaml');
      writeFileSync(config, yaml);
      const out = join(dir, 'out');
      const r = await runCliAsync(['render', '--config', config, '--out', out]);
      expect(r.status).toBe(2);
      const lines = r.stderr.trimEnd().split('\n');
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(/^error: /);
      expect(lines[0]).toMatch(expected);
      expect(r.stderr).not.toMatch(/\n\s+at /);
      expect(r.stdout).toBe('');
      expect(existsSync(out)).toBe(false);
    });
  }

  it('a missing config file names the file', () => {
    const r = runCli(['render', '--config', '/nonexistent/appliance.yaml', '--out', join(tempDir(), 'o')]);
    expect(r.status).toBe(2);
    expect(r.stderr.trim()).toBe(
      'error: config file /nonexistent/appliance.yaml does not exist: pass an appliance.yaml with --config',
    );
  });

  it('a config that is a folder is refused', () => {
    const dir = tempDir();
    mkdirSync(join(dir, 'x.yaml'));
    const r = runCli(['render', '--config', join(dir, 'x.yaml'), '--out', join(dir, 'o')]);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/is a folder/);
  });

  it('a 10 MB value is shown cut short in a line of reasonable length', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'big.yaml'), `name: ${'x'.repeat(10_000_000)}\n`);
    const r = await runCliAsync(['validate', '--config', join(dir, 'big.yaml')]);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(
      /^error: .*big\.yaml:1: name: expected a lower-case name .*\(10000002 characters\)/,
    );
    expect(r.stderr.length).toBeLessThan(400);
  });

  it('a multi-line smoke check command is fine (it is run over SSH, never written into a file)', async () => {
    const dir = tempDir();
    writeFileSync(
      join(dir, 'a.yaml'),
      'smoke:\n  checks:\n    - name: two\n      run: |\n        true\n        true\n',
    );
    expect((await runCliAsync(['validate', '--config', join(dir, 'a.yaml')])).status).toBe(0);
  });

  it('an unknown flag fails with exit 2', () => {
    const r = runCli(['render', '--no-such-flag']);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/unknown option '--no-such-flag'/);
  });

  it('a valid SSH key and an empty file are accepted', () => {
    const dir = tempDir();
    const good = Buffer.concat([
      Buffer.from([0, 0, 0, 11]),
      Buffer.from('ssh-ed25519'),
      Buffer.from([0, 0, 0, 32]),
      Buffer.alloc(32, 7),
    ]).toString('base64');
    writeFileSync(join(dir, 'a.yaml'), `ssh:\n  authorizedKeys: ["ssh-ed25519 ${good} me@host"]\n`);
    writeFileSync(join(dir, 'empty.yaml'), '');
    expect(runCli(['validate', '--config', join(dir, 'a.yaml')]).status).toBe(0);
    expect(runCli(['validate', '--config', join(dir, 'empty.yaml')]).status).toBe(0);
  });
});
