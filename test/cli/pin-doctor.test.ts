import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCli, tempDir } from '../helpers.js';

describe('appliance pin-hashes', () => {
  it('hashes the downloaded archives, writes appliance.hashes.json and re-renders with hash checks on', () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'appliance.yaml'), 'name: pinned\n');
    const dl = join(dir, 'dl');
    const files: Record<string, string> = {
      'docuum/docuum-0.25.1-cargo4.tar.gz': 'docuum archive',
      'gitlab-runner-current/gitlab-runner-19.2.2-go2.tar.gz': 'runner archive',
    };
    for (const [path, content] of Object.entries(files)) {
      mkdirSync(join(dl, path, '..'), { recursive: true });
      writeFileSync(join(dl, path), content);
    }
    const out = join(dir, 'external');
    const r = runCli(['pin-hashes', '--config', join(dir, 'appliance.yaml'), '--dl-dir', dl, '--out', out]);
    expect(r.status, r.stderr).toBe(0);
    const pins = JSON.parse(readFileSync(join(dir, 'appliance.hashes.json'), 'utf8'));
    const sha = createHash('sha256').update('docuum archive').digest('hex');
    expect(pins['docuum-0.25.1-cargo4.tar.gz']).toBe(sha);
    expect(readFileSync(join(out, 'package/docuum/docuum.hash'), 'utf8')).toContain(
      `sha256  ${sha}  docuum-0.25.1-cargo4.tar.gz`,
    );
    expect(readFileSync(join(out, 'configs/pinned_x86_64_defconfig'), 'utf8')).toContain(
      'BR2_DOWNLOAD_FORCE_CHECK_HASHES=y',
    );
  });

  it('names the missing archives and writes nothing', () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'appliance.yaml'), '');
    const r = runCli([
      'pin-hashes',
      '--config',
      join(dir, 'appliance.yaml'),
      '--dl-dir',
      join(dir, 'dl'),
      '--out',
      join(dir, 'ext'),
    ]);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(
      /^error: no downloaded archive at .*docuum-0\.25\.1-cargo4\.tar\.gz.*: download them first/,
    );
    expect(existsSync(join(dir, 'appliance.hashes.json'))).toBe(false);
    expect(existsSync(join(dir, 'ext'))).toBe(false);
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
