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
    const error = await runCommand('bash', ['-c', `sleep 300 & echo $! ; exec -a ${marker} sleep 301`], {
      timeoutMs: 1000,
      purpose: 'sleeper',
    }).then(
      () => undefined,
      (e: ApplianceError) => e,
    );
    expect(error?.message).toBe('sleeper timed out after 1 s');
    expect(Date.now() - started).toBeLessThan(10_000);
    await new Promise((r) => setTimeout(r, 300));
    const grandchild = Number(error?.details?.trim());
    expect(grandchild).toBeGreaterThan(1);
    expect(processRunning(grandchild)).toBe(false);
    // "[a]ppliance…" keeps pgrep from matching its own shell.
    const left = execFileSync('sh', ['-c', `pgrep -f '[${marker[0]}]${marker.slice(1)}' || true`], {
      encoding: 'utf8',
    }).trim();
    expect(left).toBe('');
  });

  it('streams lines to a callback', async () => {
    const lines: string[] = [];
    await runCommand('sh', ['-c', 'echo one; echo two'], { onLine: (l) => lines.push(l) });
    expect(lines).toEqual(['one', 'two']);
    expect(processRunning(process.pid)).toBe(true);
  });
});
