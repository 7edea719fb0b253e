import { spawnSync } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  applianceJsonSchema,
  configReferenceMarkdown,
  defconfigName,
  loadAppliance,
  parseAppliance,
} from '../../src/config/index.js';
import {
  buildTree,
  diffTree,
  externalPackages,
  manifestName,
  packageSymbol,
  renderTree,
  writeTree,
} from '../../src/render/index.js';
import { repoRoot, runCli, runCliAsync, tempDir, testBuildroot } from '../helpers.js';

const config = loadAppliance();

describe('rendered files in the repository', () => {
  it('external/ is exactly the render of the default appliance.yaml', () => {
    const diff = diffTree(join(repoRoot, 'external'), renderTree(config));
    expect(diff, "run 'npm run build && node dist/bin.js render' and commit external/").toEqual({
      changed: [],
      missing: [],
      extra: [],
    });
  });

  it('appliance.schema.json is the schema exported from the config model', () => {
    const committed = JSON.parse(readFileSync(join(repoRoot, 'appliance.schema.json'), 'utf8'));
    expect(committed).toEqual(applianceJsonSchema());
  });

  it('the README configuration reference is the one generated from the schema', () => {
    const readme = readFileSync(join(repoRoot, 'README.md'), 'utf8');
    const section = /<!-- config-reference:start -->\n([\s\S]*?)\n<!-- config-reference:end -->/.exec(
      readme,
    )?.[1];
    expect(section, "run 'node dist/bin.js schema --markdown' and paste it into the README").toBe(
      configReferenceMarkdown(),
    );
    for (const name of Object.keys((applianceJsonSchema() as { properties: object }).properties))
      expect(section).toContain(`| \`${name}\` |`);
  });
});

describe('render', () => {
  // Determinism across processes: test/render/determinism.test.ts.

  it('renders the config values into the overlay and defconfig', () => {
    const c = parseAppliance(
      [
        'name: edge-runner',
        'arch: aarch64',
        'runner: {url: "https://gitlab.example.com", concurrent: 7, privileged: true, volumes: ["/cache", "/srv/a-b:/a:ro"]}',
        'docker: {ipv6: false}',
        'docuum: {threshold: "80%", keep: ["^alpine:", "a b"], minAge: 1d}',
        'dataDisk: {label: ci-data}',
        'buildroot: {symbols: {BR2_PACKAGE_HTOP: true, BR2_TARGET_ROOTFS_TAR: false, BR2_TARGET_GENERIC_ISSUE: "Hello"}}',
        'kernel: {fragment: ["CONFIG_ZRAM=y"]}',
      ].join('\n'),
      join(repoRoot, 'x.yaml'),
    );
    const tree = buildTree(c);
    const text = (p: string) => tree.get(p)?.content.toString() ?? `(missing ${p})`;
    const defconfig = text('configs/edge_runner_aarch64_defconfig');
    expect(defconfig).toContain('BR2_aarch64=y\n');
    expect(defconfig).toContain('BR2_PACKAGE_HTOP=y\n');
    expect(defconfig).toContain('BR2_TARGET_GENERIC_ISSUE="Hello"\n');
    expect(defconfig.match(/BR2_TARGET_GENERIC_ISSUE/g)).toHaveLength(1);
    expect(defconfig).toContain('$(BR2_EXTERNAL_EDGE_RUNNER_PATH)/board/rootfs-overlay');
    expect(text('external.desc')).toMatch(/^name: EDGE_RUNNER$/m);
    const toml = text('board/rootfs-overlay/usr/share/appliance/gitlab-runner/config.toml.template');
    expect(toml).toContain('concurrent = 7');
    expect(toml).toContain('privileged = true');
    expect(toml).toContain('volumes = ["/cache", "/srv/a-b:/a:ro"]');
    expect(toml).toContain('url = "https://gitlab.example.com"');
    const daemon = JSON.parse(text('board/rootfs-overlay/etc/docker/daemon.json'));
    expect(daemon.ipv6).toBe(false);
    expect(daemon.ip6tables).toBe(false);
    expect(daemon['fixed-cidr-v6']).toBeUndefined();
    expect(text('board/rootfs-overlay/usr/lib/systemd/system/docuum.service')).toContain(
      'ExecStart=/usr/bin/docuum --threshold "80%%" --keep "^alpine:" --keep "a b" --min-age 1d --deletion-chunk-size 1',
    );
    expect(text('board/rootfs-overlay/usr/lib/systemd/system/data.mount')).toContain(
      'What=/dev/disk/by-label/ci-data',
    );
    // Docker brings docuum and the runner back when their boot start failed with a late data disk.
    for (const unit of ['docuum.service', 'gitlab-runner.service'])
      expect(text(`board/rootfs-overlay/usr/lib/systemd/system/${unit}`)).toMatch(
        /^WantedBy=multi-user\.target docker\.service$/m,
      );
    expect(text('board/linux.fragment')).toMatch(/CONFIG_ZRAM=y\n$/);
    expect(tree.get('board/post-build.sh')?.mode).toBe(0o755);
    expect(tree.get('board/rootfs-overlay/usr/libexec/appliance/prepare-data')?.mode).toBe(0o755);
    // gitlab-runner-config replaces every @TOKEN@: only the token line may carry it (a comment
    // that named it got the token written into it).
    const runnerToml = text('board/rootfs-overlay/usr/share/appliance/gitlab-runner/config.toml.template');
    expect(runnerToml.split('\n').filter((l) => l.includes('@TOKEN@'))).toEqual(['  token = "@TOKEN@"']);
  });

  it('post-build.sh makes /data, an empty machine-id, ~/.docker in /run and masks networkd-wait-online', () => {
    const dir = tempDir();
    const script = join(dir, 'post-build.sh');
    writeFileSync(script, buildTree(loadAppliance()).get('board/post-build.sh')?.content ?? '');
    const target = join(dir, 'target');
    mkdirSync(join(target, 'etc'), { recursive: true });
    const run = () =>
      spawnSync('sh', [script], { env: { ...process.env, TARGET_DIR: target }, encoding: 'utf8' });
    for (const attempt of [1, 2]) {
      // Twice: Buildroot runs it again on every `make` over the same target folder.
      const r = run();
      expect(r.status, `run ${attempt}: ${r.stderr}`).toBe(0);
    }
    expect(statSync(join(target, 'data')).isDirectory()).toBe(true);
    expect(readFileSync(join(target, 'etc/machine-id'), 'utf8')).toBe('');
    expect(readlinkSync(join(target, 'root/.docker'))).toBe('/run/root-docker');
    expect(readlinkSync(join(target, 'etc/systemd/system/systemd-networkd-wait-online.service'))).toBe(
      '/dev/null',
    );
  });

  it('copies extra overlay folders into the tree', () => {
    const dir = tempDir();
    mkdirSync(join(dir, 'extra/etc'), { recursive: true });
    writeFileSync(join(dir, 'extra/etc/motd'), 'hello\n');
    writeFileSync(join(dir, 'appliance.yaml'), 'overlays: [extra]\n');
    const tree = buildTree(loadAppliance(join(dir, 'appliance.yaml')));
    expect(tree.get('board/overlay-extra/1-extra/etc/motd')?.content.toString()).toBe('hello\n');
    expect(tree.get('configs/runner_appliance_x86_64_defconfig')?.content.toString()).toContain(
      '/board/overlay-extra/1-extra"',
    );
  });

  it('pins hashes from appliance.hashes.json and then enforces hash checks', () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'appliance.yaml'), '');
    const sha = 'a'.repeat(64);
    // Archive names from our package definitions, so a version bump cannot leave the test behind.
    const archive = (name: string): string =>
      externalPackages.find((p) => p.name === name)?.archive ?? `no package ${name}`;
    writeFileSync(
      join(dir, 'appliance.hashes.json'),
      JSON.stringify({
        [archive('docuum')]: sha,
        [archive('gitlab-runner-current')]: 'b'.repeat(64),
      }),
    );
    const tree = renderTree(loadAppliance(join(dir, 'appliance.yaml')));
    expect(tree.get('package/docuum/docuum.hash')?.content.toString()).toContain(
      `sha256  ${sha}  ${archive('docuum')}`,
    );
    expect(tree.get('package/docuum/docuum.mk')?.content.toString()).not.toContain('BR_NO_CHECK_HASH_FOR');
    expect(tree.get('configs/runner_appliance_x86_64_defconfig')?.content.toString()).toContain(
      'BR2_DOWNLOAD_FORCE_CHECK_HASHES=y',
    );
    const unpinned = buildTree(config);
    expect(unpinned.get('package/docuum/docuum.mk')?.content.toString()).toContain(
      'BR_NO_CHECK_HASH_FOR += $(DOCUUM_SOURCE)',
    );
    expect(unpinned.get('configs/runner_appliance_x86_64_defconfig')?.content.toString()).not.toContain(
      'FORCE_CHECK_HASHES',
    );
  });

  it('renders each package folder of src/render/templates/package as Buildroot files, nothing else', () => {
    const folders = readdirSync(join(repoRoot, 'src/render/templates/package')).sort();
    expect(folders).toEqual(externalPackages.map((p) => p.name).sort());
    const tree = buildTree(config);
    for (const { name } of externalPackages) {
      const files = [...tree.keys()].filter((path) => path.startsWith(`package/${name}/`)).sort();
      expect(files).toEqual([
        `package/${name}/Config.in`,
        `package/${name}/${name}.hash`,
        `package/${name}/${name}.mk`,
      ]);
      const text = files.map((f) => tree.get(f)?.content.toString()).join('');
      expect(text).not.toMatch(/<%|%>|undefined/);
    }
  });
});

const { dir: buildroot, skip: noBuildroot } = testBuildroot('Buildroot tier: package archives');

describe.skipIf(noBuildroot)('the packages in Buildroot 2026.02.3', () => {
  it('name the archive Buildroot downloads (the file pin-hashes hashes) and the version it builds', () => {
    const dir = tempDir();
    writeTree(join(dir, 'ext'), renderTree(config));
    const env = { ...process.env, BR2_DL_DIR: join(dir, 'dl') };
    const make = (args: string[]) =>
      spawnSync('make', ['-s', '-C', buildroot, `O=${join(dir, 'o')}`, ...args], { env, encoding: 'utf8' });
    const defconfig = make([`BR2_EXTERNAL=${join(dir, 'ext')}`, defconfigName(config, 'x86_64')]);
    expect(defconfig.status, defconfig.stderr).toBe(0);
    const prefix = (p: (typeof externalPackages)[number]) => packageSymbol(p).replace(/^BR2_PACKAGE_/, '');
    const vars = externalPackages.flatMap((p) => [`${prefix(p)}_SOURCE`, `${prefix(p)}_VERSION`]);
    const r = make(['printvars', `VARS=${vars.join(' ')}`]);
    expect(r.status, r.stderr).toBe(0);
    const got = Object.fromEntries(
      r.stdout
        .trim()
        .split('\n')
        .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
    );
    for (const p of externalPackages) {
      expect(got[`${prefix(p)}_SOURCE`], p.name).toBe(p.archive);
      expect(got[`${prefix(p)}_VERSION`], p.name).toBe(p.version);
    }
  });
});

describe('writing over an existing tree', () => {
  it('keeps files it did not generate and removes only generated files that are gone', () => {
    const out = join(tempDir(), 'ext');
    writeTree(out, buildTree(config));
    writeFileSync(join(out, 'package', 'mine.txt'), 'user file\n');
    const smaller = buildTree(config);
    smaller.delete('board/rootfs-overlay/etc/hostname');
    const r = writeTree(out, smaller);
    expect(r.removed).toEqual(['board/rootfs-overlay/etc/hostname']);
    expect(r.kept).toEqual(['package/mine.txt']);
    expect(readFileSync(join(out, 'package', 'mine.txt'), 'utf8')).toBe('user file\n');
    expect(existsSync(join(out, 'board/rootfs-overlay/etc/hostname'))).toBe(false);
  });

  it('refuses to overwrite an edited generated file unless forced, and changes nothing', () => {
    const out = join(tempDir(), 'ext');
    writeTree(out, buildTree(config));
    const edited = join(out, 'board/post-build.sh');
    writeFileSync(edited, '#!/bin/sh\necho mine\n');
    const changed = buildTree(parseAppliance('name: other-name\n', join(repoRoot, 'x.yaml')));
    expect(() => writeTree(out, changed)).toThrow(
      /were edited since they were rendered \(board\/post-build\.sh\)/,
    );
    expect(readFileSync(edited, 'utf8')).toBe('#!/bin/sh\necho mine\n');
    expect(existsSync(join(out, 'configs/runner_appliance_x86_64_defconfig'))).toBe(true);
    writeTree(out, changed, { force: true });
    expect(readFileSync(edited, 'utf8')).not.toContain('mine');
    expect(existsSync(join(out, 'configs/other_name_x86_64_defconfig'))).toBe(true);
    expect(existsSync(join(out, 'configs/runner_appliance_x86_64_defconfig'))).toBe(false);
  });

  it('refuses a non-empty folder it did not render', () => {
    const out = tempDir();
    writeFileSync(join(out, 'notes.txt'), 'x');
    expect(() => writeTree(out, buildTree(config))).toThrow(/was not rendered by appliance/);
    expect(existsSync(join(out, manifestName))).toBe(false);
  });

  it('refuses to overwrite a foreign file at a generated path', () => {
    const out = join(tempDir(), 'ext');
    writeTree(out, buildTree(config));
    const tree = buildTree(config);
    tree.set('package/extra.txt', { content: Buffer.from('x'), mode: 0o644 });
    writeFileSync(join(out, 'package/extra.txt'), 'foreign');
    expect(() => writeTree(out, tree)).toThrow(
      /was not generated by appliance but the render would overwrite it/,
    );
    expect(readFileSync(join(out, 'package/extra.txt'), 'utf8')).toBe('foreign');
  });

  it('a failed write leaves the previous tree whole and no staging folder behind', () => {
    const parent = tempDir();
    const out = join(parent, 'ext');
    writeTree(out, buildTree(config));
    const before = readFileSync(join(out, manifestName), 'utf8');
    const bad = buildTree(parseAppliance('name: other-name\n', join(repoRoot, 'x.yaml')));
    bad.set('../escape', { content: Buffer.from('x'), mode: 0o644 });
    expect(() => writeTree(out, bad)).toThrow(/could not write/);
    expect(readFileSync(join(out, manifestName), 'utf8')).toBe(before);
    expect(existsSync(join(parent, 'escape'))).toBe(false);
    expect(runCli(['render', '--out', out]).status).toBe(0);
  });

  it('the CLI reports an up-to-date tree and keeps file modes', () => {
    const out = join(tempDir(), 'ext');
    expect(runCli(['render', '--out', out]).status).toBe(0);
    const again = runCli(['render', '--out', out]);
    expect(again.stderr).toMatch(/is up to date/);
    expect(statSync(join(out, 'board/post-build.sh')).mode & 0o777).toBe(0o755);
    chmodSync(join(out, 'board/post-build.sh'), 0o644);
    expect(diffTree(out, buildTree(config)).changed).toEqual(['board/post-build.sh']);
  });
});

describe('render refuses what it must not touch, and leaves nothing behind', () => {
  it('libvirt render refuses a tree made by render, and the other way round (it deleted 35 files)', async () => {
    const dir = tempDir();
    const external = join(dir, 'external');
    expect((await runCliAsync(['render', '--out', external])).status).toBe(0);
    const before = readFileSync(join(external, manifestName), 'utf8');
    const r = await runCliAsync(['libvirt', 'render', '--out', external]);
    expect(r.status).toBe(2);
    expect(r.stderr.trim()).toMatch(
      /^error: .*external holds a tree made by 'appliance render': 'appliance libvirt render' would replace it: choose another --out$/,
    );
    expect(readFileSync(join(external, manifestName), 'utf8')).toBe(before);
    expect(existsSync(join(external, 'external.desc'))).toBe(true);
    const lv = join(dir, 'lv');
    expect((await runCliAsync(['libvirt', 'render', '--out', lv])).status).toBe(0);
    const back = await runCliAsync(['render', '--out', lv]);
    expect(back.status).toBe(2);
    expect(back.stderr).toMatch(/holds a tree made by 'appliance libvirt render'/);
    expect(readdirSync(lv).filter((f) => f.endsWith('.xml'))).toHaveLength(3);
  });

  it('a manifest from before kinds is told by its files', () => {
    const out = join(tempDir(), 'ext');
    writeTree(out, buildTree(config));
    const m = JSON.parse(readFileSync(join(out, manifestName), 'utf8'));
    delete m.kind;
    writeFileSync(join(out, manifestName), JSON.stringify(m));
    const libvirtLike = new Map([['x.xml', { content: Buffer.from('<x/>'), mode: 0o644 as const }]]);
    expect(() => writeTree(out, libvirtLike, { kind: 'libvirt' })).toThrow(/made by 'appliance render'/);
  });

  it('a path too deep for the file system is refused before any folder is made (it left 20)', async () => {
    const dir = tempDir();
    const deep = join(dir, ...Array(21).fill('d'.repeat(190)));
    const r = await runCliAsync(['render', '--out', deep]);
    expect(r.status).toBe(2);
    expect(r.stderr.trim()).toMatch(/^error: the tree's longest path would be \d+ bytes, more than the 4095/);
    expect(readdirSync(dir)).toEqual([]);
  });

  it('a failed write removes the folders it created for the tree', () => {
    const dir = tempDir();
    const bad = buildTree(config);
    bad.set('../escape', { content: Buffer.from('x'), mode: 0o644 });
    expect(() => writeTree(join(dir, 'a', 'b', 'ext'), bad)).toThrow(/could not write/);
    expect(readdirSync(dir)).toEqual([]);
  });

  it('render --out / is refused without walking the file system', async () => {
    const r = await runCliAsync(['render', '--out', '/']);
    expect(r.status).toBe(2);
    expect(r.stderr.trim()).toBe(
      'error: --out / is a system folder that appliance will not write into: choose a new or empty folder',
    );
  });

  it('renders into a bind-mounted folder (renaming a mount point failed with EBUSY)', async (ctx) => {
    const dir = tempDir();
    const source = join(dir, 'source');
    const mnt = join(dir, 'mnt');
    mkdirSync(source);
    mkdirSync(mnt);
    if (spawnSync('mount', ['--bind', source, mnt]).status !== 0) {
      process.stderr.write('\n[skip] bind mount: mount --bind is not allowed here\n');
      ctx.skip();
    }
    try {
      const first = await runCliAsync(['render', '--out', mnt]);
      expect(first.status, first.stderr).toBe(0);
      expect(diffTree(mnt, buildTree(config))).toEqual({ changed: [], missing: [], extra: [] });
      writeFileSync(join(mnt, 'package', 'mine.txt'), 'kept\n');
      const other = join(dir, 'other.yaml');
      writeFileSync(other, 'name: other-name\n');
      const second = await runCliAsync(['render', '--config', other, '--out', mnt]);
      expect(second.status, second.stderr).toBe(0);
      expect(existsSync(join(mnt, 'configs/other_name_x86_64_defconfig'))).toBe(true);
      expect(existsSync(join(mnt, 'configs/runner_appliance_x86_64_defconfig'))).toBe(false);
      expect(readFileSync(join(mnt, 'package', 'mine.txt'), 'utf8')).toBe('kept\n');
      expect(readdirSync(mnt).filter((f) => f.startsWith('.appliance-') && f !== manifestName)).toEqual([]);
      expect(readdirSync(dir).sort()).toEqual(['mnt', 'other.yaml', 'source']);
    } finally {
      spawnSync('umount', [mnt]);
    }
  });
});
