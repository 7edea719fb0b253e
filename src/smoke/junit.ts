/** The smoke report as JUnit XML (the Ant/Jenkins format CI systems read). */
import { create } from 'xmlbuilder2';

export interface TestCase {
  name: string;
  seconds: number;
  status: 'passed' | 'failed' | 'skipped';
  message?: string;
  output?: string;
}

export function junitXml(
  suite: string,
  cases: TestCase[],
  properties: Record<string, string>,
  timestamp: string,
): string {
  const failures = cases.filter((c) => c.status === 'failed').length;
  const skipped = cases.filter((c) => c.status === 'skipped').length;
  const time = cases.reduce((t, c) => t + c.seconds, 0).toFixed(3);
  const doc = create({ version: '1.0', encoding: 'UTF-8' });
  const root = doc.ele('testsuites', {
    name: suite,
    tests: String(cases.length),
    failures: String(failures),
    errors: '0',
    time,
  });
  const ts = root.ele('testsuite', {
    name: suite,
    tests: String(cases.length),
    failures: String(failures),
    errors: '0',
    skipped: String(skipped),
    time,
    timestamp,
    hostname: 'localhost',
  });
  const props = ts.ele('properties');
  for (const [name, value] of Object.entries(properties)) props.ele('property', { name, value });
  for (const c of cases) {
    const tc = ts.ele('testcase', { name: c.name, classname: suite, time: c.seconds.toFixed(3) });
    if (c.status === 'failed')
      tc.ele('failure', { message: c.message ?? 'failed', type: 'failure' }).txt(c.output ?? '');
    else if (c.status === 'skipped') tc.ele('skipped', { message: c.message ?? 'skipped' });
    if (c.status !== 'failed' && c.output) tc.ele('system-out').txt(c.output);
  }
  return `${doc.end({ prettyPrint: true })}\n`;
}
