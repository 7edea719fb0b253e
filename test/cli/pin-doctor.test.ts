import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { sha256Of } from '../../src/digest.js';
import { externalPackages } from '../../src/render/index.js';
import { runCli, tempDir } from '../helpers.js';

/** `appliance pin-hashes` for DIR/appliance.yaml (with `yaml`), downloads in DIR/dl, tree in DIR/external. */
function pinHashesIn(yaml: string) {
  const dir = tempDir();
  writeFileSync(join(dir, 'appliance.yaml'), yaml);
  const [dl, out] = [join(dir, 'dl'), join(dir, 'external')];
  const run = () =>
    runCli(['pin-hashes', '--config', join(dir, 'appliance.yaml'), '--dl-dir', dl, '--out', out]);
  return { dir, dl, out, run };
}

describe('appliance pin-hashes', () => {
  it('hashes the downloaded archives, writes appliance.hashes.json and re-renders with hash checks on', () => {
    const { dir, dl, out, run } = pinHashesIn('name: pinned\n');
    for (const p of externalPackages) {
      mkdirSync(join(dl, p.name), { recursive: true });
      writeFileSync(join(dl, p.name, p.archive), `${p.name} archive`);
    }
    // An earlier pin of another archive is kept; the file stays sorted.
    writeFileSync(join(dir, 'appliance.hashes.json'), `{"zz-older.tar.gz": "${'0'.repeat(64)}"}\n`);
    const r = run();
    expect(r.status, r.stderr).toBe(0);
    const text = readFileSync(join(dir, 'appliance.hashes.json'), 'utf8');
    const pins = JSON.parse(text);
    const expected = Object.fromEntries(
      externalPackages.map((p) => [p.archive, sha256Of(`${p.name} archive`)]),
    );
    expect(pins).toEqual({ ...expected, 'zz-older.tar.gz': '0'.repeat(64) });
    expect(Object.keys(pins)).toEqual(Object.keys(pins).sort());
    expect(text.endsWith('}\n')).toBe(true);
    const docuum = externalPackages.find((p) => p.name === 'docuum');
    expect(readFileSync(join(out, 'package/docuum/docuum.hash'), 'utf8')).toContain(
      `sha256  ${sha256Of('docuum archive')}  ${docuum?.archive}`,
    );
    expect(readFileSync(join(out, 'configs/pinned_x86_64_defconfig'), 'utf8')).toContain(
      'BR2_DOWNLOAD_FORCE_CHECK_HASHES=y',
    );
  });

  it('names the missing archives and writes nothing', () => {
    const { dir, out, run } = pinHashesIn('');
    const r = run();
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(
      /^error: no downloaded archive at .*docuum-0\.25\.1-cargo4\.tar\.gz.*: download them first/,
    );
    expect(existsSync(join(dir, 'appliance.hashes.json'))).toBe(false);
    expect(existsSync(out)).toBe(false);
  });
});

describe('appliance doctor', () => {
  it('reports every area with a status, and fixes for what is missing', () => {
    const r = runCli(['doctor', '--json']);
    const findings = JSON.parse(r.stdout) as { area: string; name: string; status: string; fix?: string }[];
    expect(new Set(findings.map((f) => f.area))).toEqual(new Set(['build', 'check', 'boot', 'libvirt']));
    expect(findings.find((f) => f.name === 'make')?.status).toBe('ok');
    expect(findings.some((f) => f.name === 'free disk')).toBe(true);
    for (const f of findings.filter((x) => x.status !== 'ok' && x.name !== 'KVM' && x.name !== 'free disk'))
      expect(f.fix).toBeTruthy();
    expect(r.status).toBe(findings.some((f) => f.status === 'fail') ? 3 : 0);
  });

  it('a missing build tool fails with its apt package', () => {
    const r = runCli(['doctor'], { env: { PATH: '/nonexistent' } });
    expect(r.status).toBe(3);
    expect(r.stderr).toMatch(/^error: \d+ prerequisite\(s\) missing: .*make/);
    expect(r.stdout).toMatch(/make missing .* → apt-get install make/);
  });
});
