/**
 * Health, host side without libvirt: the agent's replies and the guest's state file are parsed,
 * a stale verdict is not believed, and readHealth goes through a fake `virsh` that
 * answers like qemu-agent-command does (success JSON, or an error on stderr) and stays bounded.
 */
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parseAppliance } from '../../src/config/index.js';
import { guestAgentChannel, healthStateFile } from '../../src/guest/index.js';
import {
  explainAgentError,
  formatVmStatus,
  healthFromState,
  parseAgentReply,
  parseHealthState,
} from '../../src/libvirt/health.js';
import { connection, domainXml, parseLibvirtXml, readHealth } from '../../src/libvirt/index.js';
import { repoRoot, tempDir } from '../helpers.js';

describe('the domain XML', () => {
  it("gives every domain the guest agent's virtio-serial channel, on a socket libvirt chooses", () => {
    const config = parseAppliance('name: edge\n', join(repoRoot, 'x.yaml'));
    for (const arch of ['x86_64', 'aarch64'] as const) {
      const xml = domainXml(config, {
        arch,
        accel: 'tcg',
        kernel: '/srv/k',
        rootfs: '/srv/r',
        dataDisk: '/srv/d',
        credentials: [],
        network: { type: 'network', name: 'n' },
        serialLog: '/var/log/x.log',
      });
      const channels = parseLibvirtXml(xml, 'domain', 'x')
        .find((n) => n.node.nodeName === 'devices', false, true)
        ?.filter((n) => n.node.nodeName === 'channel');
      expect(channels).toHaveLength(1);
      expect(channels?.[0]?.toString()).toBe(
        `<channel type="unix"><target type="virtio" name="${guestAgentChannel}"/></channel>`,
      );
    }
  });
});

describe('agent replies', () => {
  it('takes "return" from a successful reply', () => {
    expect(parseAgentReply(0, '{"return":1000}\n', '')).toEqual({ ok: true, value: 1000 });
    expect(parseAgentReply(0, '{"return":{"count":3,"buf-b64":"YWJj","eof":true}}', '')).toEqual({
      ok: true,
      value: { count: 3, 'buf-b64': 'YWJj', eof: true },
    });
  });
  it("takes virsh's error line from stderr on failure", () => {
    const r = parseAgentReply(
      1,
      '',
      'error: Failed to run command\nerror: Guest agent is not responding: QEMU guest agent is not connected\n',
    );
    expect(r).toEqual({
      ok: false,
      error: 'Guest agent is not responding: QEMU guest agent is not connected',
    });
  });
  it('refuses a reply that is not JSON or has no return', () => {
    expect(parseAgentReply(0, 'garbage', '').ok).toBe(false);
    expect(parseAgentReply(0, '{"error":{"class":"GenericError","desc":"nope"}}', '')).toEqual({
      ok: false,
      error: 'nope',
    });
  });
  it('explains the usual errors in words', () => {
    expect(explainAgentError('Requested operation is not valid: domain is not running')).toBe(
      'the VM is not running',
    );
    expect(explainAgentError('Guest agent is not responding: QEMU guest agent is not connected')).toMatch(
      /guest agent does not answer/,
    );
    expect(
      explainAgentError(
        "internal error: unable to execute QEMU agent command 'guest-file-open': Failed to open file '/run/appliance/health.json' (mode: 'r'): No such file or directory",
      ),
    ).toMatch(/no health verdict yet/);
    expect(explainAgentError("Failed to get domain 'x'")).toBe('no such VM');
  });
});

describe('the state file', () => {
  const good = {
    healthy: true,
    reasons: [],
    since: '2026-12-01T10:00:00Z',
    checked: '2026-12-01T10:05:00Z',
    bootId: 'abc',
  };
  it('parses the verdict', () => {
    expect(parseHealthState(JSON.stringify(good))).toEqual(good);
    expect(parseHealthState('{"healthy":false,"reasons":["docker does not answer",3]}')).toEqual({
      healthy: false,
      reasons: ['docker does not answer'],
      since: undefined,
      checked: undefined,
      bootId: undefined,
    });
  });
  it('refuses what is not a verdict', () => {
    expect(() => parseHealthState('')).toThrow(/not JSON/);
    expect(() => parseHealthState('[]')).toThrow(/healthy/);
    expect(() => parseHealthState('{"healthy":"yes"}')).toThrow(/boolean "healthy"/);
  });
  it('believes a fresh verdict and not a stale one (guest clock against guest clock)', () => {
    const checked = Date.parse(good.checked);
    expect(healthFromState(good, checked + 10_000)).toMatchObject({ healthy: true, reachable: true });
    const stale = healthFromState(good, checked + 300_000);
    expect(stale.healthy).toBe(false);
    expect(stale.reasons[0]).toMatch(/300 s old/);
    expect(healthFromState({ healthy: false, reasons: [] }).reasons).toHaveLength(1);
  });
});

describe('readHealth through a fake virsh', () => {
  let dir: string;
  let oldPath: string | undefined;
  const name = 'edge';
  const conn = connection('qemu:///system', 'appliance');

  /** A fake virsh: answers per agent command from files in `dir`, logs each call. */
  function fakeVirsh(): void {
    const script = `#!/bin/sh
dir=${JSON.stringify(dir)}
echo "$*" >> "$dir/calls"
json=""; for a in "$@"; do json="$a"; done
cmd=$(printf '%s' "$json" | sed -n 's/.*"execute":"\\([a-z-]*\\)".*/\\1/p')
if [ -f "$dir/$cmd.err" ]; then cat "$dir/$cmd.err" >&2; exit 1; fi
if [ -f "$dir/$cmd.sleep" ]; then sleep "$(cat "$dir/$cmd.sleep")"; fi
cat "$dir/$cmd.out"
`;
    writeFileSync(join(dir, 'virsh'), script);
    chmodSync(join(dir, 'virsh'), 0o755);
  }
  function state(s: object, nowMs: number): void {
    writeFileSync(join(dir, 'guest-get-time.out'), `{"return":${nowMs * 1e6}}\n`);
    writeFileSync(join(dir, 'guest-file-open.out'), '{"return":1000}\n');
    const b64 = Buffer.from(JSON.stringify(s)).toString('base64');
    writeFileSync(join(dir, 'guest-file-read.out'), `{"return":{"count":1,"buf-b64":"${b64}","eof":true}}\n`);
    writeFileSync(join(dir, 'guest-file-close.out'), '{"return":{}}\n');
  }

  beforeEach(() => {
    dir = tempDir('appliance-health-');
    fakeVirsh();
    oldPath = process.env.PATH;
    process.env.PATH = `${dir}:${oldPath}`;
  });
  afterEach(() => {
    process.env.PATH = oldPath;
  });

  it('reads the verdict with open, read and close of the state file, with a bounded agent timeout', async () => {
    const now = Date.parse('2026-12-01T10:05:05Z');
    state(
      { healthy: true, reasons: [], since: '2026-12-01T10:00:00Z', checked: '2026-12-01T10:05:00Z' },
      now,
    );
    const h = await readHealth(conn, name);
    expect(h).toEqual({
      healthy: true,
      reasons: [],
      since: '2026-12-01T10:00:00Z',
      checked: '2026-12-01T10:05:00Z',
      reachable: true,
    });
    const calls = readFileSync(join(dir, 'calls'), 'utf8').trim().split('\n');
    expect(calls.map((c) => /"execute":"([a-z-]+)"/.exec(c)?.[1])).toEqual([
      'guest-get-time',
      'guest-file-open',
      'guest-file-read',
      'guest-file-close',
    ]);
    for (const c of calls)
      expect(c).toMatch(/^-q -c qemu:\/\/\/system qemu-agent-command --timeout \d+ edge /);
    expect(calls[1]).toContain(JSON.stringify(healthStateFile));
  });

  it('an agent that does not answer is unhealthy and unreachable, with the reason', async () => {
    writeFileSync(
      join(dir, 'guest-get-time.err'),
      'error: Guest agent is not responding: QEMU guest agent is not connected\n',
    );
    const h = await readHealth(conn, name);
    expect(h).toMatchObject({ healthy: false, reachable: false });
    expect(h.detail).toMatch(/guest agent does not answer/);
  });

  it('a missing state file is unreachable with "no verdict yet"; the guest\'s unhealthy verdict keeps its reasons', async () => {
    const now = Date.parse('2026-12-01T10:05:05Z');
    state({ healthy: false, reasons: ['docker does not answer'], checked: '2026-12-01T10:05:00Z' }, now);
    expect(await readHealth(conn, name)).toMatchObject({
      healthy: false,
      reachable: true,
      reasons: ['docker does not answer'],
    });
    writeFileSync(
      join(dir, 'guest-file-open.err'),
      "error: internal error: unable to execute QEMU agent command 'guest-file-open': Failed to open file '/run/appliance/health.json' (mode: 'r'): No such file or directory\n",
    );
    const h = await readHealth(conn, name);
    expect(h).toMatchObject({ healthy: false, reachable: false });
    expect(h.detail).toMatch(/no health verdict yet/);
  });
});

describe('vm status for people', () => {
  const base = { name: 'edge', uri: 'qemu:///system', defined: true };
  it('says the state, the verdict and since when, the reasons when unhealthy, and the image', () => {
    expect(
      formatVmStatus({
        ...base,
        state: 'running',
        healthy: true,
        reasons: [],
        since: '2026-12-01T10:00:00Z',
        reachable: true,
        image: 'ab'.repeat(32),
      }),
    ).toBe(
      `edge on qemu:///system: running, healthy since 2026-12-01T10:00:00Z\n  image: rootfs sha256 ${'ab'.repeat(32)}\n`,
    );
    expect(
      formatVmStatus({
        ...base,
        state: 'running',
        healthy: false,
        reasons: ['docker does not answer'],
        since: '2026-12-01T10:05:00Z',
        reachable: true,
        image: null,
      }),
    ).toBe(
      'edge on qemu:///system: running, not healthy since 2026-12-01T10:05:00Z\n  - docker does not answer\n',
    );
    expect(
      formatVmStatus({
        ...base,
        state: 'shut off',
        healthy: false,
        reasons: ['the VM is shut off'],
        reachable: false,
      }),
    ).toBe('edge on qemu:///system: shut off, health unknown\n');
    expect(formatVmStatus({ ...base, defined: false, state: 'undefined' })).toBe(
      'edge on qemu:///system: not defined\n',
    );
  });
});
