import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import type { ApplianceError } from '../../src/errors.js';
import { runCommand } from '../../src/run/index.js';
import { processRunning } from '../helpers.js';

describe('runCommand', () => {
  it('turns a missing tool into a one-line error with the apt package', async () => {
    await expect(runCommand('qemu-img-does-not-exist', [])).rejects.toThrow(
      /host tool 'qemu-img-does-not-exist' not found/,
    );
  });

  it('reports a failure with the command and its exit status', async () => {
    await expect(
      runCommand('sh', ['-c', 'echo boom >&2; exit 7'], { purpose: 'the thing' }),
    ).rejects.toMatchObject({
      message: 'the thing failed with exit status 7',
      details: 'boom',
    });
  });

  it('a timeout kills the whole process group, grandchildren included', async () => {
    const marker = `appliance-test-${process.pid}-${Date.now()}`;
    const started = Date.now();
    // The grandchild's pid as it is printed, and whether it was alive then: a pid that was never
    // running would pass the "gone afterwards" check below without anything being killed.
    let printed = 0;
    let aliveWhilePrinted = false;
    const error = await runCommand('bash', ['-c', `sleep 300 & echo $! ; exec -a ${marker} sleep 301`], {
      timeoutMs: 1000,
      purpose: 'sleeper',
      onLine: (line, stream) => {
        if (stream !== 'stdout' || printed) return;
        printed = Number(line.trim());
        aliveWhilePrinted = processRunning(printed);
      },
    }).then(
      () => undefined,
      (e: ApplianceError) => e,
    );
    expect(error?.message).toBe('sleeper timed out after 1 s');
    expect(Date.now() - started).toBeLessThan(10_000);
    await new Promise((r) => setTimeout(r, 300));
    const grandchild = Number(error?.details?.trim());
    expect(grandchild).toBeGreaterThan(1);
    expect(grandchild).toBe(printed);
    expect(aliveWhilePrinted).toBe(true);
    expect(processRunning(grandchild)).toBe(false);
    // "[a]ppliance…" keeps pgrep from matching its own shell.
    const left = execFileSync('sh', ['-c', `pgrep -f '[${marker[0]}]${marker.slice(1)}' || true`], {
      encoding: 'utf8',
    }).trim();
    expect(left).toBe('');
  });

  it('streams lines to a callback while the command runs', async () => {
    const lines: [string, number][] = [];
    await runCommand('sh', ['-c', 'echo one; sleep 1; echo two'], {
      onLine: (l) => lines.push([l, Date.now()]),
    });
    const ended = Date.now();
    expect(lines.map(([l]) => l)).toEqual(['one', 'two']);
    // "one" came a second before the end, not in one batch once the command had exited.
    expect(ended - (lines[0]?.[1] ?? ended)).toBeGreaterThan(700);
  });
});
