/**
 * The budget in the rendered overlay (daemon.json's builder.gc, docuum's threshold, journald's
 * cap, the volume cleanup's idle time), and the volume cleanup script run for real against a
 * fake `docker` on PATH that records its calls.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseAppliance } from '../../src/config/index.js';
import { buildTree } from '../../src/render/files.js';
import { repoRoot, tempDir } from '../helpers.js';

const overlay = 'board/rootfs-overlay';

describe('the budget in the rendered overlay', () => {
  const render = (yaml: string) => {
    const tree = buildTree(parseAppliance(yaml, join(repoRoot, 'x.yaml')));
    return (p: string) => tree.get(`${overlay}/${p}`)?.content.toString() ?? `(missing ${p})`;
  };

  it('derives docuum and BuildKit figures from a size budget, and renders journal and idle settings', () => {
    const text = render('dataDisk: {size: 2G, budget: 1G, volumeMaxIdle: 36h}\njournal: {maxUse: 32M}\n');
    const daemon = JSON.parse(text('etc/docker/daemon.json'));
    expect(daemon.builder).toEqual({ gc: { enabled: true, defaultKeepStorage: '256MB' } });
    expect(text('usr/lib/systemd/system/docuum.service')).toContain(
      'ExecStart=/usr/bin/docuum --threshold "384 MiB" --deletion-chunk-size 1',
    );
    const journald = text('etc/systemd/journald.conf.d/50-appliance.conf');
    expect(journald).toMatch(/^Storage=volatile$/m);
    expect(journald).toMatch(/^RuntimeMaxUse=32M$/m);
    const service = text('usr/lib/systemd/system/appliance-volume-cleanup.service');
    expect(service).toMatch(/^Environment=VOLUME_MAX_IDLE_SECONDS=129600$/m);
    expect(service).toMatch(/^ExecStart=\/usr\/libexec\/appliance\/volume-cleanup$/m);
    expect(text('usr/lib/systemd/system/appliance-volume-cleanup.timer')).toMatch(
      /^OnUnitInactiveSec=5min$/m,
    );
    expect(text('usr/lib/systemd/system-preset/50-appliance.preset')).toMatch(
      /^enable appliance-volume-cleanup\.timer$/m,
    );
  });

  it('a percentage budget gives docuum a percentage of the disk; an explicit threshold wins', () => {
    let text = render('dataDisk: {size: 40G, budget: 60%}\n');
    expect(text('usr/lib/systemd/system/docuum.service')).toContain('--threshold "22.5%%"');
    // 60% of 40 GiB = 24 GiB; a quarter of it is 6 GiB.
    expect(JSON.parse(text('etc/docker/daemon.json')).builder.gc.defaultKeepStorage).toBe('6144MB');
    text = render('dataDisk: {size: 40G, budget: 60%}\ndocuum: {threshold: "10 GB"}\n');
    expect(text('usr/lib/systemd/system/docuum.service')).toContain('--threshold "10 GB"');
  });

  it('the committed external/ tree carries the default budget', () => {
    const daemon = JSON.parse(
      readFileSync(join(repoRoot, 'external', overlay, 'etc/docker/daemon.json'), 'utf8'),
    );
    expect(daemon.builder.gc.defaultKeepStorage).toBe('4096MB');
    expect(
      readFileSync(join(repoRoot, 'external', overlay, 'usr/lib/systemd/system/docuum.service'), 'utf8'),
    ).toContain('--threshold "30%%"');
  });
});

const script = join(repoRoot, 'rootfs-overlay/usr/libexec/appliance/volume-cleanup');

/** A fake docker: volume lists from files in $FAKE, `volume rm` refused for names in $FAKE/refuse. */
const fakeDocker = `#!/bin/sh
echo "$*" >>"$FAKE/calls"
case "$*" in
"volume ls -q --filter dangling=false") cat "$FAKE/used" ;;
"volume ls -q --filter dangling=true") cat "$FAKE/unused" ;;
"events "*) cat "$FAKE/events" ;;
"volume rm "*)
	if grep -qx "$3" "$FAKE/refuse"; then echo "Error response from daemon: remove $3: volume is in use" >&2; exit 1; fi
	grep -vx "$3" "$FAKE/unused" >"$FAKE/unused.new"; mv "$FAKE/unused.new" "$FAKE/unused" ;;
*) echo "fake docker: unexpected $*" >&2; exit 99 ;;
esac
`;

describe('volume-cleanup (the script in the overlay, with a fake docker)', () => {
  const setup = () => {
    const dir = tempDir('volume-cleanup-');
    const bin = join(dir, 'bin');
    spawnSync('mkdir', ['-p', bin]);
    writeFileSync(join(bin, 'docker'), fakeDocker);
    chmodSync(join(bin, 'docker'), 0o755);
    for (const f of ['used', 'unused', 'events', 'refuse', 'calls']) writeFileSync(join(dir, f), '');
    const put = (f: string, lines: string[]) =>
      writeFileSync(join(dir, f), lines.map((l) => `${l}\n`).join(''));
    const run = (now: number, maxIdle = 3600) =>
      spawnSync('sh', [script], {
        encoding: 'utf8',
        env: {
          PATH: `${bin}:/usr/bin:/bin`,
          FAKE: dir,
          TMPDIR: dir,
          VOLUME_MAX_IDLE_SECONDS: String(maxIdle),
          VOLUME_STATE: join(dir, 'data/appliance/volumes-last-used'),
          VOLUME_NOW: String(now),
        },
      });
    const state = () => readFileSync(join(dir, 'data/appliance/volumes-last-used'), 'utf8');
    const calls = () => readFileSync(join(dir, 'calls'), 'utf8');
    return { dir, put, run, state, calls };
  };

  it('removes only unused volumes idle for longer than the limit, counting first sight and mounts as use', () => {
    const t = setup();
    const t0 = 1_000_000;
    t.put('used', ['running-vol']);
    t.put('unused', ['runner-abc-project-1-concurrent-0-cache-3c3f', 'old-unused']);
    let r = t.run(t0);
    expect(r.status, r.stderr).toBe(0);
    // First sight counts as use: nothing is removed, every volume is recorded.
    expect(t.calls()).not.toMatch(/volume rm/);
    expect(t.calls()).not.toMatch(/^events/m); // no previous run to look back to
    expect(t.state()).toMatch(/^running-vol 1000000$/m);
    expect(t.state()).toMatch(/^old-unused 1000000$/m);
    expect(r.stdout).toMatch(/removed 0 volume\(s\), 0 could not be removed, 3 kept/);

    // Half an hour later: the cache volume was mounted by a job in between (an event).
    t.put('events', ['runner-abc-project-1-concurrent-0-cache-3c3f']);
    r = t.run(t0 + 1800);
    expect(r.status, r.stderr).toBe(0);
    expect(t.calls()).toMatch(
      /^events --since 1000000 --until 1001800 --filter type=volume --filter event=mount/m,
    );
    expect(t.state()).toMatch(/^runner-abc-project-1-concurrent-0-cache-3c3f 1001800$/m);

    // An hour after the first run: old-unused is idle for 3600 s and goes; the running one stays,
    // and so does the cache volume (used 1800 s ago). A volume in use is never asked to go.
    t.put('events', []);
    r = t.run(t0 + 3600);
    expect(r.status, r.stderr).toBe(0);
    expect(t.calls().match(/^volume rm .*/gm)).toEqual(['volume rm old-unused']);
    expect(r.stdout).toMatch(/removed old-unused \(last used 1 h ago\)/);
    expect(t.state()).not.toMatch(/old-unused/);
    expect(t.state()).toMatch(/^running-vol 1003600$/m);
    expect(t.state()).toMatch(/^#last-run 1003600$/m);

    // Much later the cache volume goes too; the one a container uses never does.
    r = t.run(t0 + 90_000);
    expect(t.calls().match(/^volume rm .*/gm)).toEqual([
      'volume rm old-unused',
      'volume rm runner-abc-project-1-concurrent-0-cache-3c3f',
    ]);
    expect(t.calls()).not.toMatch(/volume rm running-vol/);
  });

  it('a volume Docker refuses to remove (a container took it meanwhile) is kept and reported', () => {
    const t = setup();
    t.put('unused', ['taken', 'free']);
    t.put('refuse', ['taken']);
    t.run(100);
    const r = t.run(100 + 7200);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(
      /could not remove taken: Error response from daemon: remove taken: volume is in use/,
    );
    expect(r.stdout).toMatch(/removed 1 volume\(s\), 1 could not be removed, 1 kept/);
    expect(t.state()).toMatch(/^taken 100$/m);
    expect(t.state()).not.toMatch(/^free /m);
  });

  it('an unwritable state file is reported, and the removal still happens (a full disk)', () => {
    const t = setup();
    t.put('unused', ['old']);
    t.run(0);
    // A folder where the new state would be written: writing fails as it does on a full disk.
    const state = join(t.dir, 'data/appliance/volumes-last-used');
    spawnSync('mkdir', ['-p', `${state}.tmp/x`]);
    const r = t.run(10_000);
    expect(r.status, r.stderr).toBe(0);
    expect(t.calls()).toMatch(/^volume rm old$/m);
    expect(r.stderr).toMatch(/could not write .*volumes-last-used/);
    expect(r.stdout).toMatch(/removed 1 volume\(s\)/);
    expect(readFileSync(state, 'utf8')).toMatch(/^old 0$/m); // the old state is left as it was
  });

  it('fails (and removes nothing) when docker cannot list volumes', () => {
    const t = setup();
    writeFileSync(join(t.dir, 'bin', 'docker'), '#!/bin/sh\necho "$*" >>"$FAKE/calls"\nexit 1\n');
    const r = t.run(0);
    expect(r.status).not.toBe(0);
    expect(t.calls()).not.toMatch(/volume rm/);
    expect(existsSync(join(t.dir, 'data/appliance/volumes-last-used'))).toBe(false);
  });
});

const trimScript = join(repoRoot, 'rootfs-overlay/usr/libexec/appliance/build-cache-trim');

/**
 * A fake docker for build-cache-trim: the build cache is $FAKE/records, one "age-seconds bytes
 * [in-use]" line per record; `buildx du` prints their total as Docker does (decimal units), and
 * `builder prune --all --force [--filter until=AGE]` removes the records not in use (older than AGE).
 */
const fakeBuildx = `#!/bin/sh
echo "$*" >>"$FAKE/calls"
case "$*" in
"buildx du")
	awk '{ t += $2 } END { printf "ID\\tRECLAIMABLE\\tSIZE\\tLAST ACCESSED\\nShared:\\t\\t%.1fMB\\nPrivate:\\t20.58kB\\nReclaimable:\\t%.1fMB\\nTotal:\\t\\t%.1fMB\\n", t / 1e6, t / 1e6, t / 1e6 }' "$FAKE/records" ;;
"builder prune --all --force") awk '$3 == "in-use"' "$FAKE/records" >"$FAKE/r.new"; mv "$FAKE/r.new" "$FAKE/records" ;;
"builder prune --all --force --filter until="*)
	age=\${6#until=}; n=\${age%[hm]}; case "$age" in *h) s=$((n * 3600)) ;; *m) s=$((n * 60)) ;; esac
	awk -v s="$s" '$1 < s || $3 == "in-use"' "$FAKE/records" >"$FAKE/r.new"; mv "$FAKE/r.new" "$FAKE/records" ;;
*) echo "fake docker: unexpected $*" >&2; exit 99 ;;
esac
`;

describe('build-cache-trim (the script in the overlay, with a fake docker)', () => {
  const MB = 1e6;
  const setup = (records: string[]) => {
    const dir = tempDir('build-cache-trim-');
    const bin = join(dir, 'bin');
    spawnSync('mkdir', ['-p', bin]);
    writeFileSync(join(bin, 'docker'), fakeBuildx);
    chmodSync(join(bin, 'docker'), 0o755);
    writeFileSync(join(dir, 'records'), records.map((l) => `${l}\n`).join(''));
    writeFileSync(join(dir, 'calls'), '');
    const run = (keep: number) =>
      spawnSync('sh', [trimScript], {
        encoding: 'utf8',
        env: { PATH: `${bin}:/usr/bin:/bin`, FAKE: dir, BUILD_CACHE_KEEP_BYTES: String(keep) },
      });
    const left = () => readFileSync(join(dir, 'records'), 'utf8').trim().split('\n').filter(Boolean);
    const prunes = () => readFileSync(join(dir, 'calls'), 'utf8').match(/^builder prune.*$/gm) ?? [];
    return { run, left, prunes };
  };

  it('under the share: prunes nothing and says nothing', () => {
    const t = setup([`60 ${200 * MB}`]);
    const r = t.run(256 * 1024 ** 2);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toBe('');
    expect(t.prunes()).toEqual([]);
  });

  it('over the share: removes the least recently used records first, and stops once under it', () => {
    // A week-old 300 MB record, a 2 h old 150 MB one, a fresh 100 MB one: 550 MB, share 256 MiB.
    const t = setup([`700000 ${300 * MB}`, `7200 ${150 * MB}`, `30 ${100 * MB}`]);
    const r = t.run(256 * 1024 ** 2);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^build cache: 524 MiB, over its 256 MiB share of the budget$/m);
    // 168h takes the week-old record (250 MB = 238 MiB left: under the share).
    expect(t.prunes()).toEqual(['builder prune --all --force --filter until=168h']);
    expect(r.stdout).toMatch(/^removed the records unused for 168h: 238 MiB left$/m);
    expect(t.left()).toEqual([`7200 ${150 * MB}`, `30 ${100 * MB}`]);
  });

  it('as a last step removes every record no build uses; one in use stays, and is reported', () => {
    const t = setup([`30 ${200 * MB}`, `10 ${300 * MB} in-use`]);
    const r = t.run(256 * 1024 ** 2);
    expect(r.status, r.stderr).toBe(0);
    expect(t.prunes().at(-1)).toBe('builder prune --all --force');
    expect(t.prunes()).toHaveLength(8);
    expect(t.left()).toEqual([`10 ${300 * MB} in-use`]);
    expect(r.stdout).toMatch(/^removed every record no build is using: 286 MiB left$/m);
    expect(r.stdout).toMatch(/^build cache still 286 MiB: the rest is in use by running builds$/m);
  });

  it('fails, pruning nothing, when the size cannot be read (Docker down, or output it does not know)', () => {
    const empty = setup([]);
    expect(empty.run(1).status).toBe(0); // an empty cache: "Total: 0.0MB"
    const dir = tempDir('build-cache-trim-down-');
    writeFileSync(join(dir, 'docker'), '#!/bin/sh\necho "Cannot connect to the Docker daemon" >&2\nexit 1\n');
    chmodSync(join(dir, 'docker'), 0o755);
    const r = spawnSync('sh', [trimScript], {
      encoding: 'utf8',
      env: { PATH: `${dir}:/usr/bin:/bin`, BUILD_CACHE_KEEP_BYTES: '1' },
    });
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/cannot read the build cache size from docker buildx du/);
    expect(readFileSync(join(dir, 'docker'), 'utf8')).not.toMatch(/prune/);
    const unset = spawnSync('sh', [trimScript], { encoding: 'utf8', env: { PATH: '/usr/bin:/bin' } });
    expect(unset.status).not.toBe(0);
    expect(unset.stderr).toMatch(/BUILD_CACHE_KEEP_BYTES is not set/);
  });
});
