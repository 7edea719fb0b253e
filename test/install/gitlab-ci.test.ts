/**
 * The GitLab CI template (ci/gitlab-ci.yml): GitLab's schema accepts it (checked by
 * gitlab-ci-local, a dev dependency), its image's Node meets package.json's engines, and its
 * smoke job's script runs, line by line as a runner would, against the stand-in image.
 */
import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, linkSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { commandExists, execAsync, repoRoot, skipReason, tempDir } from '../helpers.js';

const template = join(repoRoot, 'ci', 'gitlab-ci.yml');
const gitlabCiLocal = join(repoRoot, 'node_modules', 'gitlab-ci-local', 'src', 'index.js');

interface Job {
  script?: string[];
  image?: string;
  before_script?: string[];
  variables?: Record<string, string>;
}

/** gitlab-ci-local in a scratch git repository holding `yaml` as .gitlab-ci.yml. */
function lint(yaml: string, ...args: string[]): { status: number; output: string; stdout: string } {
  const dir = tempDir('appliance-gitlab-ci-');
  writeFileSync(join(dir, '.gitlab-ci.yml'), yaml);
  spawnSync('git', ['init', '-q', dir]);
  const r = spawnSync(process.execPath, [gitlabCiLocal, ...args], {
    cwd: dir,
    encoding: 'utf8',
    timeout: 120_000,
    env: { ...process.env, FORCE_COLOR: '0' },
  });
  return { status: r.status ?? -1, output: `${r.stdout}${r.stderr}`, stdout: r.stdout };
}

describe('ci/gitlab-ci.yml', () => {
  const yaml = readFileSync(template, 'utf8');

  it('passes gitlab-ci-local (GitLab schema) with --list and --preview', () => {
    expect(existsSync(gitlabCiLocal), 'gitlab-ci-local is a dev dependency: run npm ci').toBe(true);
    const list = lint(yaml, '--list');
    expect(list.status, list.output).toBe(0);
    expect(list.output).toMatch(/json schema validated/);
    expect(list.output).toMatch(/^build\s+build\b/m);
    expect(list.output).toMatch(/^smoke\s+test\b/m);
    const preview = lint(yaml, '--preview');
    expect(preview.status, preview.output).toBe(0);
    const merged = parse(preview.stdout.slice(preview.stdout.search(/^\S+:/m))) as Record<string, Job>;
    expect(merged.smoke?.script?.join('\n')).toMatch(/appliance smoke/);
  }, 240_000);

  it('gitlab-ci-local rejects what GitLab rejects (so the check above can fail)', () => {
    const broken = yaml.replace(/^( {4}when: )always$/m, '$1sometimes');
    expect(broken).not.toBe(yaml);
    const r = lint(broken, '--list');
    expect(r.status, r.output).not.toBe(0);
    expect(r.output).toMatch(/schema/i);
  }, 120_000);

  it("runs in an image whose Node meets package.json's engines, and installs no Debian nodejs", () => {
    const doc = parse(yaml) as { default: Job };
    const engines = (
      JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { engines: { node: string } }
    ).engines.node;
    const [wantMajor, wantMinor] = (/>=\s*(\d+)\.(\d+)/.exec(engines) ?? []).slice(1).map(Number);
    const image = doc.default.image ?? '';
    const m = /^node:(\d+)(?:\.(\d+))?/.exec(image);
    expect(m, `image ${image} is not a node:<version> image`).not.toBeNull();
    const major = Number(m?.[1]);
    const minor = m?.[2] === undefined ? Number.POSITIVE_INFINITY : Number(m[2]); // node:20 is the newest 20.x
    expect(major > (wantMajor ?? 0) || (major === wantMajor && minor >= (wantMinor ?? 0))).toBe(true);
    expect((doc.default.before_script ?? []).join('\n')).not.toMatch(/\bnodejs\b|\bnpm\b(?! install)/);
  });
});

function smokePrerequisite(): string | undefined {
  if (process.env.APPLIANCE_SKIP_SMOKE_TIER) return 'APPLIANCE_SKIP_SMOKE_TIER is set';
  if (process.getuid?.() !== 0) return 'building the stand-in image needs root (debootstrap)';
  for (const tool of ['qemu-system-x86_64', 'qemu-img', 'debootstrap', 'mksquashfs'])
    if (!commandExists(tool)) return `${tool} is not installed`;
  if (!existsSync(join(repoRoot, 'dist', 'bin.js'))) return 'dist/bin.js is missing (npm run build)';
  return undefined;
}

describe.skipIf(skipReason('smoke tier: the CI template smoke job', smokePrerequisite()))(
  "ci/gitlab-ci.yml's smoke job",
  () => {
    it(
      "runs its script against the stand-in image, as the job's runner would",
      async () => {
        // The stand-in (cached under ~/.cache/runner-appliance/standin/, shared with the smoke tier).
        const out = await execAsync('bash', [join(repoRoot, 'test/fixtures/standin/build-standin.sh')]);
        const image = JSON.parse(out.trim().split('\n').pop() ?? '{}') as { kernel: string; rootfs: string };

        // The job as GitLab resolves it (defaults and variables merged by gitlab-ci-local).
        const preview = lint(readFileSync(template, 'utf8'), '--preview');
        expect(preview.status, preview.output).toBe(0);
        const merged = parse(preview.stdout.slice(preview.stdout.search(/^\S+:/m))) as Record<string, Job>;
        const job = merged.smoke;
        const script = job?.script ?? [];
        expect(script.length).toBeGreaterThan(0);

        // The project folder as the build job leaves it: appliance.yaml and its artifacts.
        const project = tempDir('appliance-ci-smoke-');
        copyFileSync(join(repoRoot, 'appliance.yaml'), join(project, 'appliance.yaml'));
        const artifacts = join(project, 'out', 'artifacts');
        mkdirSync(artifacts, { recursive: true });
        for (const [from, name] of [
          [image.kernel, 'bzImage'],
          [image.rootfs, 'rootfs.squashfs'],
        ] as const) {
          try {
            linkSync(from, join(artifacts, name));
          } catch {
            copyFileSync(from, join(artifacts, name));
          }
        }
        writeFileSync(
          join(artifacts, 'manifest.json'),
          `${JSON.stringify({ arch: 'x86_64', files: [{ name: 'bzImage' }, { name: 'rootfs.squashfs' }] })}\n`,
        );
        // `appliance` on PATH, as `npm install -g` leaves it.
        const bin = join(project, '.bin');
        mkdirSync(bin);
        writeFileSync(
          join(bin, 'appliance'),
          `#!/bin/sh\nexec "${process.execPath}" "${join(repoRoot, 'dist', 'bin.js')}" "$@"\n`,
          { mode: 0o755 },
        );
        const variables: Record<string, string> = {};
        for (const [k, v] of Object.entries(job?.variables ?? {}))
          variables[k] = String(v).replaceAll('$CI_PROJECT_DIR', project);
        const env = {
          ...process.env,
          ...variables,
          CI: 'true',
          GITLAB_CI: 'true',
          CI_PROJECT_DIR: project,
          PATH: `${bin}:${process.env.PATH}`,
        };
        let outputs = '';
        for (const line of script) {
          const r = await new Promise<{ code: number | null; output: string }>((resolve) => {
            const child = spawn('bash', ['-eo', 'pipefail', '-c', line], { cwd: project, env });
            let output = '';
            child.stdout.on('data', (d) => {
              output += String(d);
            });
            child.stderr.on('data', (d) => {
              output += String(d);
            });
            child.on('close', (code) => resolve({ code, output }));
          });
          expect(r.code, `$ ${line}\n${r.output}`).toBe(0);
          outputs += r.output;
        }
        expect(outputs).toMatch(/appliance smoke: PASSED/);
        const junit = readFileSync(join(project, 'smoke', 'junit.xml'), 'utf8');
        expect(junit).toContain('<testcase name="docker.run-imported-image"');
        expect(junit).not.toMatch(/<failure/);
        if (!process.env.APPLIANCE_KEEP_TEST_WORK) rmSync(project, { recursive: true, force: true });
      },
      40 * 60_000,
    );
  },
);
