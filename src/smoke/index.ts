export { freePort } from './boot.js';
export { afterUnit, builtinChecks, type CheckContext, configChecks, type SmokeCheck } from './checks.js';
export { junitXml, type TestCase } from './junit.js';
export { type CheckRun, type Exec, runChecks } from './runner.js';
export { dockerActiveSource, runSmoke, type SmokeOptions, type SmokeReport } from './smoke.js';
