/**
 * Test files only: it imports vitest's hooks, which a globalSetup module (test/prebuild.ts
 * imports helpers.ts) must not load.
 */
import { rmSync } from 'node:fs';
import { beforeEach } from 'vitest';

/**
 * For a tier's afterAll: removes its work folder unless one of the suite's tests failed (the
 * error names files there) or APPLIANCE_KEEP_TEST_WORK is set. Call it inside the describe: it
 * registers the hook that notes a failure.
 */
export function workFolderRemover(): (dir: string | undefined) => void {
  let failed = false;
  beforeEach(({ onTestFailed }) => {
    onTestFailed(() => {
      failed = true;
    });
  });
  return (dir) => {
    if (dir && !failed && !process.env.APPLIANCE_KEEP_TEST_WORK)
      rmSync(dir, { recursive: true, force: true });
  };
}
