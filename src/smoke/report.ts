/** The smoke's report files: JUnit XML, the boot timeline (JSON) and the summary (text). */
import { writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { smokeSerialLogName } from '../guest/index.js';
import { junitXml, type TestCase } from './junit.js';

export interface ReportFiles {
  junit: string;
  serial: string;
  timeline: string;
  summary: string;
}

export function reportFiles(outDir: string, junit?: string): ReportFiles {
  const out = resolve(outDir);
  return {
    junit: resolve(junit ?? join(out, 'junit.xml')),
    serial: join(out, smokeSerialLogName),
    timeline: join(out, 'timeline.json'),
    summary: join(out, 'summary.txt'),
  };
}

/** Milestones in boot order, whatever order they were reached in. */
export const milestoneOrder = ['kernel', 'systemd', 'ssh', 'docker-active', 'docker', 'multi-user'] as const;

export interface Timeline {
  accel: string;
  milestones: Record<string, number>;
  /** How `milestones['docker-active']` was measured. */
  dockerActiveSource?: string;
  /** Seconds from the start of `appliance smoke` to its report, without --hold. */
  wallSeconds?: number;
  qemuRssKiB?: number;
  guestMemoryKiB?: number;
  idleSeconds?: number;
  systemdAnalyze?: string;
  /** After a failed check or with --hold: `systemd-analyze blame` and `critical-chain`. */
  blame?: string;
  criticalChain?: string;
  /** Seconds from the start of `appliance smoke` to QEMU's start (preparation). */
  qemuStartedAfter?: number;
  /** Each check's command: [sent, answered] in seconds from QEMU start. */
  checks?: Record<string, [number, number]>;
  error?: string;
}

export function writeTimeline(path: string, t: Timeline): void {
  const milestones: Record<string, number> = {};
  for (const name of milestoneOrder)
    if (t.milestones[name] !== undefined) milestones[name] = t.milestones[name];
  writeFileSync(path, `${JSON.stringify({ ...t, milestones }, null, 2)}\n`);
}

export function writeReports(
  files: ReportFiles,
  r: {
    accel: string;
    passed: boolean;
    cases: TestCase[];
    milestones: Record<string, number>;
    properties: Record<string, string>;
    startedAt: number;
    seconds: number;
  },
): void {
  writeFileSync(
    files.junit,
    junitXml(
      'appliance.smoke',
      r.cases,
      { accel: r.accel, ...r.properties },
      new Date(r.startedAt).toISOString().replace(/\.\d+Z$/, ''),
    ),
  );
  const milestones = milestoneOrder
    .filter((k) => r.milestones[k] !== undefined)
    .map((k) => `${k} ${(r.milestones[k] as number).toFixed(1)} s`);
  const summary = [
    `appliance smoke: ${r.passed ? 'PASSED' : 'FAILED'} (${r.accel.toUpperCase()}, ${r.seconds.toFixed(0)} s)`,
    `milestones: ${milestones.join(', ')}`,
    ...r.cases.map(
      (c) =>
        `  ${c.status === 'passed' ? 'ok  ' : c.status === 'skipped' ? 'skip' : 'FAIL'}  ${c.name}${c.message ? `: ${c.message}` : ''}`,
    ),
    `report: ${files.junit}`,
    `serial log: ${files.serial}`,
  ].join('\n');
  writeFileSync(files.summary, `${summary}\n`);
}
