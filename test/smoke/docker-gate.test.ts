/**
 * The Docker gate of the smoke's Docker checks, run for real in the guest's kinds of shell (bash:
 * the stand-in's root shell; BusyBox ash: Buildroot's /bin/sh; dash) with fake `docker` and
 * `systemctl` on PATH: the request made before Docker is up returns the moment Docker answers and
 * the container runs right after it; a Docker that fails while the request waits on the socket
 * ends the check at once with exit 3 (the judge skips it) and leaves no CLI behind; a request made
 * before anything listened is made again once Docker is active.
 */
import { spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { builtinChecks } from '../../src/smoke/index.js';
import { processRunning, tempDir } from '../helpers.js';

const shells = [
  ['bash', '/bin/bash'],
  ['dash', '/bin/dash'],
  ['busybox ash', '/bin/busybox'],
].filter(([, path]) => existsSync(path as string)) as [string, string][];

const work = tempDir('appliance-docker-gate-');
afterAll(() => rmSync(work, { recursive: true, force: true }));

/**
 * Fake tools in `dir`: `docker` logs its call and its PID, then waits while `socket` says hold
 * (at most 20 s), fails when it says closed, and answers when it says open; `systemctl` answers
 * `show -p Job --value docker.service` from `job` and `is-active docker.service` from `state`.
 */
function fakeTools(dir: string): void {
  const bin = join(dir, 'bin');
  mkdirSync(bin, { recursive: true });
  writeFileSync(
    join(bin, 'docker'),
    `#!/bin/sh
echo "$1 $$" >>"${dir}/calls"
i=0
while [ $i -lt 400 ]; do
	case $(cat "${dir}/socket") in
	open) break ;;
	closed) echo "Cannot connect to the Docker daemon" >&2; exit 1 ;;
	esac
	sleep 0.05; i=$((i + 1))
done
[ "$1" = run ] && echo smoke-ok
exit 0
`,
  );
  writeFileSync(
    join(bin, 'systemctl'),
    `#!/bin/sh
case "$*" in
"show -p Job --value docker.service") cat "${dir}/job" ;;
"is-active docker.service") cat "${dir}/state" ;;
*) echo "fake systemctl: $*" >&2; exit 1 ;;
esac
`,
  );
  chmodSync(join(bin, 'docker'), 0o755);
  chmodSync(join(bin, 'systemctl'), 0o755);
}

const set = (dir: string, files: Record<string, string>) => {
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), `${text}\n`);
};

/** Runs the check's command in `shell` (as sshd would: `shell -c command`), the image on stdin. */
function run(shell: string, dir: string, command: string) {
  const args = shell.endsWith('busybox') ? ['sh', '-c', command] : ['-c', command];
  const child = spawn(shell, args, {
    env: { ...process.env, PATH: `${join(dir, 'bin')}:/usr/bin:/bin`, TMPDIR: dir },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  child.stdin.end('image bytes');
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => {
    stdout += d;
  });
  child.stderr.on('data', (d) => {
    stderr += d;
  });
  const started = Date.now();
  return new Promise<{ code: number | null; stdout: string; stderr: string; seconds: number }>((resolve) =>
    child.on('close', (code) => resolve({ code, stdout, stderr, seconds: (Date.now() - started) / 1000 })),
  );
}

const calls = (dir: string) =>
  existsSync(join(dir, 'calls'))
    ? readFileSync(join(dir, 'calls'), 'utf8')
        .trim()
        .split('\n')
        .map((l) => l.split(' '))
    : [];

const command = builtinChecks.find((c) => c.name === 'docker.run-imported-image')?.command ?? '';

describe.each(shells)('the Docker gate of docker.run-imported-image under %s', (label, shell) => {
  const case_ = (name: string) => {
    const dir = join(work, `${label.replace(' ', '-')}-${name}`);
    fakeTools(dir);
    return dir;
  };

  it('returns when Docker answers the request made before it was up, then runs the container', async () => {
    const dir = case_('answers');
    set(dir, { socket: 'hold', job: '7', state: 'activating' });
    const result = run(shell, dir, command);
    await new Promise((r) => setTimeout(r, 700));
    expect(calls(dir).map(([verb]) => verb)).toEqual(['import']);
    set(dir, { socket: 'open', job: '', state: 'active' });
    const r = await result;
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('smoke-ok');
    expect(calls(dir).map(([verb]) => verb)).toEqual(['import', 'run']);
    // Answered at once, not at the watcher's next poll of systemd.
    expect(r.seconds).toBeLessThan(3);
  });

  it('ends with exit 3 and "docker.service is failed" when Docker fails under a waiting request, killing it', async () => {
    const dir = case_('fails');
    set(dir, { socket: 'hold', job: '7', state: 'activating' });
    const result = run(shell, dir, command);
    await new Promise((r) => setTimeout(r, 700));
    set(dir, { job: '', state: 'failed' });
    const r = await result;
    expect(r.code).toBe(3);
    expect(r.stderr.trim().split('\n').pop()).toBe('docker.service is failed');
    expect(r.stdout).not.toContain('smoke-ok');
    const made = calls(dir);
    expect(made.map(([verb]) => verb)).toEqual(['import']);
    const pid = made[0]?.[1];
    // The request that waited on the socket was ended, not left behind.
    expect(processRunning(Number(pid))).toBe(false);
    expect(r.seconds).toBeLessThan(10);
  });

  it('makes the request again once Docker is active when nothing listened at first', async () => {
    const dir = case_('retries');
    set(dir, { socket: 'closed', job: '7', state: 'activating' });
    const result = run(shell, dir, command);
    await new Promise((r) => setTimeout(r, 700));
    set(dir, { socket: 'open', job: '', state: 'active' });
    const r = await result;
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('smoke-ok');
    expect(calls(dir).map(([verb]) => verb)).toEqual(['import', 'import', 'run']);
  });
});

describe('the Docker gate: shells', () => {
  it('is tested under at least bash and one POSIX sh', () => {
    expect(shells.length, `shells found: ${shells.map(([l]) => l).join(', ')}`).toBeGreaterThanOrEqual(2);
  });
});
