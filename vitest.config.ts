import { defineConfig } from 'vitest/config';

/**
 * Two lanes that run at the same time, each one file at a time:
 * - `vm`: the test files that boot a guest under QEMU (TCG on these machines). One guest at a time:
 *   two TCG guests on a 2-core CI machine slow each other past their boot deadlines.
 * - `host`: everything else (unit tests, the Buildroot, kernel, install and examples tiers), which
 *   runs meanwhile on the host's CPU instead of waiting for the guests.
 * The lanes are different pools on purpose: vitest 3 runs files of one pool in one queue, so two
 * `forks` projects would still wait for each other.
 */
const vmLane = [
  'test/smoke/smoke.test.ts',
  'test/smoke/budget.test.ts',
  'test/libvirt/libvirt.test.ts',
  'test/libvirt/*-tier.test.ts',
  'test/install/gitlab-ci.test.ts',
];

export default defineConfig({
  test: {
    testTimeout: 120_000,
    hookTimeout: 600_000,
    reporters: ['default'],
    projects: [
      {
        extends: true,
        test: {
          name: 'vm',
          include: vmLane,
          // A cold run builds the arm64 stand-in at idle priority meanwhile (test/prebuild.ts).
          globalSetup: ['test/prebuild.ts'],
          pool: 'forks',
          poolOptions: { forks: { singleFork: true } },
        },
      },
      {
        extends: true,
        test: {
          name: 'host',
          include: ['test/**/*.test.ts'],
          exclude: vmLane,
          pool: 'threads',
          poolOptions: { threads: { singleThread: true } },
        },
      },
    ],
  },
});
